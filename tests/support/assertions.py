"""Assertions shared by the layer tests."""

import jax.numpy as jnp
import numpy as np
from flax import nnx


def assert_same_outputs_and_gradients(layer, reference, x, dtype, params=("kernel", "bias")):
  """``layer`` and ``reference`` (same variables) agree on ``x``: outputs, a loss, and its
  gradients with respect to the input and ``params``."""
  def loss_and_grads(layer):
    loss = lambda layer, x: jnp.sum(jnp.sin(layer(x).astype(jnp.float32)))
    return nnx.value_and_grad(loss, argnums=(0, 1))(layer, x)

  (loss, (grads, x_grad)), (loss_ref, (grads_ref, x_grad_ref)) = map(loss_and_grads,
                                                                     (layer, reference))
  tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(layer(x).astype(np.float32), reference(x).astype(np.float32),
                             atol=tolerance, rtol=tolerance)
  np.testing.assert_allclose(loss, loss_ref, rtol=tolerance)
  np.testing.assert_allclose(x_grad, x_grad_ref, atol=tolerance, rtol=tolerance)
  for name in params:
    np.testing.assert_allclose(grads[name][...], grads_ref[name][...], atol=tolerance,
                               rtol=tolerance)
