"""Layers with one form on every backend: the decoder's up-convolution and max pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.layers import UpConv2x2, max_pool
from tests.support.assertions import assert_same_outputs_and_gradients


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_upconv_computes_the_transposed_conv_and_its_gradients(dtype):
  """The decoder's 2x2 upsampling as a matmul gives what nnx.ConvTranspose gives, with the
  same variables, forward and backward."""
  up = UpConv2x2(6, 4, dtype=dtype, rngs=nnx.Rngs(0))
  up.bias[...] = jax.random.normal(jax.random.key(1), (4,))
  reference = nnx.ConvTranspose(6, 4, (2, 2), strides=(2, 2), dtype=dtype, rngs=nnx.Rngs(0))
  reference.kernel[...], reference.bias[...] = up.kernel[...], up.bias[...]
  x = jax.random.normal(jax.random.key(2), (2, 3, 5, 6))
  assert up(x).shape == (2, 6, 10, 4) and up(x).dtype == dtype
  assert_same_outputs_and_gradients(up, reference, x, dtype)


@pytest.mark.parametrize("size, strides, shape", [
  (2, 2, (2, 7, 9, 3)),   # U-Net's and VGG19's pools, odd sizes: the last row and column dropped
  (3, 2, (2, 11, 10, 3)),  # ResNet50's and DenseNet121's overlapping 3x3 pool
])
def test_max_pool_computes_the_pooling_window_and_its_gradient(size, strides, shape):
  """Pooling as maxima of strided slices gives what nnx.max_pool gives, forward and backward."""
  x = jax.random.normal(jax.random.key(0), shape)
  reference = lambda x: nnx.max_pool(x, (size, size), strides=(strides, strides), padding="VALID")
  np.testing.assert_array_equal(max_pool(x, size, strides), reference(x))
  weights = jax.random.normal(jax.random.key(1), reference(x).shape)
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) * weights))(x)
  # Overlapping windows add their gradients in another order: equal up to rounding.
  np.testing.assert_allclose(grad(lambda x: max_pool(x, size, strides)), grad(reference),
                             rtol=1e-6)
