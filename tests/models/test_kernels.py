"""Both forms of the convolutions and BatchNorm (`jaxseg.models.kernels`) compute what XLA's
own operations and Flax's layers compute, forward and backward, on any backend; the CPU
forms are the programs they are meant to be, and a model's forms follow the setting alone."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxseg.config import Config
from jaxseg.models import build_model, kernels
from jaxseg.models.layers import batch_norm, conv, depthwise_conv
from tests.support.assertions import assert_same_outputs_and_gradients

FORMS = kernels.KERNELS


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kernel_size, strides, padding, multiplier, dtype", [
  (3, 1, "SAME", 1, jnp.float32),             # MobileNet's stride-1 blocks
  (3, 2, "VALID", 1, jnp.float32),            # MobileNet's strided blocks (padded before)
  (5, 2, "SAME", 1, jnp.float32),             # EfficientNet's 5x5 strided blocks
  (3, 1, ((1, 2), (0, 1)), 2, jnp.float32),   # uneven padding, a depth multiplier
  (3, 2, "SAME", 1, jnp.bfloat16),
])
def test_depthwise_conv_computes_the_grouped_conv_and_its_gradients(
    form, kernel_size, strides, padding, multiplier, dtype):
  """In the CPU form the depthwise conv is a sum over its taps: it gives what the grouped conv
  gives, with the same variables, forward and backward."""
  layer = kernels.use(depthwise_conv(6, kernel_size, depth_multiplier=multiplier,
                                     strides=strides, padding=padding, use_bias=True,
                                     dtype=dtype, rngs=nnx.Rngs(0)), form)
  layer.bias[...] = jax.random.normal(jax.random.key(1), (6 * multiplier,))
  reference = nnx.Conv(6, 6 * multiplier, (kernel_size, kernel_size), strides=strides,
                       padding=padding, feature_group_count=6, dtype=dtype, rngs=nnx.Rngs(0))
  reference.kernel[...], reference.bias[...] = layer.kernel[...], layer.bias[...]
  x = jax.random.normal(jax.random.key(2), (2, 11, 10, 6))
  assert layer(x).shape == reference(x).shape and layer(x).dtype == dtype
  program = str(jax.make_jaxpr(layer)(x))
  assert ("conv_general_dilated" in program) is (form == "xla")
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batch_norm_training_pass_gives_flax_outputs_statistics_and_gradients(form, dtype):
  """BatchNorm's training pass, with the CPU form's hand-written gradient or autodiff's, gives
  what nnx.BatchNorm gives, outputs, running statistics and gradients, with the same
  variables."""
  layer = kernels.use(batch_norm(6, momentum=0.9, dtype=dtype, rngs=nnx.Rngs(0)), form)
  reference = nnx.BatchNorm(6, epsilon=1e-3, momentum=0.9, dtype=dtype,
                            param_dtype=jnp.float32, rngs=nnx.Rngs(0))
  keys = jax.random.split(jax.random.key(1), 5)
  for name, key in zip(("scale", "bias", "mean", "var"), keys):
    values = jax.random.uniform(key, (6,), minval=0.5, maxval=2.0)
    getattr(layer, name)[...] = getattr(reference, name)[...] = values
  x = 3.0 * jax.random.normal(keys[4], (2, 5, 7, 6)) + 2.0  # far from normalised
  graph, state = nnx.split(layer)
  traced = jax.make_jaxpr(lambda state, x: nnx.merge(graph, state)(x))(state, x)
  assert ("custom_vjp_call" in str(traced)) is (form == "cpu")  # the hand-written gradient
  assert_same_outputs_and_gradients(layer, reference, x, dtype, params=("scale", "bias"))
  for name in ("mean", "var"):  # updated alike by the calls above
    np.testing.assert_allclose(getattr(layer, name)[...], getattr(reference, name)[...],
                               rtol=1e-5)


def test_batch_norm_gradient_through_the_batch_statistics():
  """The hand-written gradient also carries what reaches the batch mean and variance it
  returns (their users in jaxseg stop it, but a caller may not)."""
  x = 3.0 * jax.random.normal(jax.random.key(0), (2, 5, 7, 6)) + 2.0
  scale, bias = jnp.linspace(0.5, 2.0, 6), jnp.linspace(-1.0, 1.0, 6)

  def reference(x, scale, bias, epsilon):
    mean = x.mean((0, 1, 2))
    var = jnp.maximum(jnp.square(x).mean((0, 1, 2)) - jnp.square(mean), 0.0)
    return (x - mean) * lax.rsqrt(var + epsilon) * scale + bias, mean, var

  def loss(normalize):
    def f(x, scale, bias):
      y, mean, var = normalize(x, scale, bias, 1e-3)
      return jnp.sum(jnp.sin(y)) + jnp.sum(jnp.cos(mean)) + jnp.sum(jnp.sqrt(var))
    return jax.grad(f, argnums=(0, 1, 2))(x, scale, bias)

  for grad, grad_ref in zip(loss(kernels.normalize_by_hand), loss(reference), strict=True):
    np.testing.assert_allclose(grad, grad_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("strides, padding, size, dtype", [
  (1, "SAME", (11, 10), jnp.float32),    # DenseNet's, MobileNet's and EfficientNet's 1x1 convs
  (2, "VALID", (11, 10), jnp.float32),   # ResNet50's strided 1x1 convs, odd sizes
  (2, "SAME", (8, 9), jnp.bfloat16),
  (1, ((1, 0), (0, 1)), (5, 6), jnp.float32),  # padded: left to the convolution
])
def test_pointwise_conv_computes_the_conv_and_its_gradients(form, strides, padding, size, dtype):
  """In the CPU form a 1x1 conv is a matmul over channels: it gives what the convolution
  gives, with the same variables, forward and backward."""
  layer = kernels.use(conv(6, 5, 1, strides=strides, padding=padding, dtype=dtype,
                           rngs=nnx.Rngs(0)), form)
  assert (layer.conv_general_dilated is lax.conv_general_dilated) is (form == "xla")
  layer.bias[...] = jax.random.normal(jax.random.key(1), (5,))
  reference = nnx.Conv(6, 5, (1, 1), strides=strides, padding=padding, dtype=dtype,
                       rngs=nnx.Rngs(0))
  reference.kernel[...], reference.bias[...] = layer.kernel[...], layer.bias[...]
  x = jax.random.normal(jax.random.key(2), (2, *size, 6))
  assert layer(x).shape == reference(x).shape and layer(x).dtype == dtype
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


@pytest.mark.parametrize("strides", [1, 2])
def test_pointwise_conv_and_its_gradients_are_two_dimensional_matmuls(strides):
  """Forward and backward, every matmul of a 1x1 conv in the CPU form multiplies pixels by
  channels as a 2-D matrix: XLA's CPU backend runs a 4-D einsum's gradients far slower
  ("1x1 convolutions as matmuls" in docs/performance.md)."""
  layer = kernels.use(conv(6, 5, 1, strides=strides, rngs=nnx.Rngs(0)), "cpu")
  x = jax.random.normal(jax.random.key(2), (2, 11, 10, 6))
  graphdef, variables = nnx.split(layer)
  loss = lambda variables, x: jnp.sum(jnp.sin(nnx.merge(graphdef, variables)(x)))
  program = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(variables, x).as_text()
  dots = [line for line in program.splitlines() if "dot_general" in line]
  assert len(dots) == 3  # forward, input gradient, kernel gradient
  for line in dots:
    shapes = re.findall(r"tensor<([\dx]+)xf32>", line)
    assert len(shapes) == 3 and all(shape.count("x") == 1 for shape in shapes), line


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kernel_size, strides, padding, size, dtype", [
  (3, 1, "SAME", (11, 10), jnp.float32),   # the U-Nets', VGG19's, DenseNet121's 3x3 convs
  (3, 2, "SAME", (19, 18), jnp.float32),   # MobileNet's and EfficientNet's strided stems
  (7, 2, "VALID", (23, 22), jnp.float32),  # ResNet50's stem (padded before)
  (3, 1, ((1, 2), (0, 1)), (9, 10), jnp.float32),  # uneven padding
  (3, 1, "SAME", (8, 9), jnp.bfloat16),
])
def test_spatial_conv_on_larger_images_is_xlas_convolution_forward_and_backward(
    form, kernel_size, strides, padding, size, dtype):
  """A 3x3 or 7x7 conv whose output has more than `PATCHES_MAX_PIXELS` pixels stays XLA's
  convolution in both forms, gradients included: no loop, no hand-written gradient."""
  layer, reference, x = conv_and_reference(form, 32, kernel_size, strides, padding, size, dtype)
  assert layer(x).shape[1] * layer(x).shape[2] > kernels.PATCHES_MAX_PIXELS
  backward = str(jax.make_jaxpr(jax.grad(lambda x: layer(x).astype(jnp.float32).sum()))(x))
  assert "conv_general_dilated" in backward
  assert "scan" not in backward and "custom" not in backward
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kernel_size, strides, padding, size, dtype", [
  (3, 1, "SAME", (8, 8), jnp.float32),    # ResNet50's and VGG19's last stages, at most 8x8
  (3, 2, "SAME", (9, 10), jnp.float32),
  (3, 1, ((1, 2), (0, 1)), (5, 6), jnp.float32),  # uneven padding
  (5, 1, "VALID", (9, 8), jnp.float32),
  (3, 1, "SAME", (4, 4), jnp.bfloat16),
])
def test_small_image_conv_computes_the_conv_and_its_gradients(
    form, kernel_size, strides, padding, size, dtype):
  """In the CPU form a conv whose output has at most `PATCHES_MAX_PIXELS` pixels is one matmul
  over its input's patches, no convolution left; in both forms the same outputs and
  gradients."""
  layer, reference, x = conv_and_reference(form, 4, kernel_size, strides, padding, size, dtype)
  for program in (jax.make_jaxpr(layer)(x),
                  jax.make_jaxpr(jax.grad(lambda x: layer(x).astype(jnp.float32).sum()))(x)):
    assert ("conv_general_dilated" in str(program)) is (form == "xla")
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


def conv_and_reference(form, features, kernel_size, strides, padding, size, dtype):
  """`conv` from 6 channels to ``features`` in ``form``, an ``nnx.Conv`` with its variables,
  an input."""
  layer = kernels.use(conv(6, features, kernel_size, strides=strides, padding=padding,
                           dtype=dtype, rngs=nnx.Rngs(0)), form)
  layer.bias[...] = jax.random.normal(jax.random.key(1), (features,))
  reference = nnx.Conv(6, features, (kernel_size, kernel_size), strides=strides,
                       padding=padding, dtype=dtype, rngs=nnx.Rngs(0))
  reference.kernel[...], reference.bias[...] = layer.kernel[...], layer.bias[...]
  x = jax.random.normal(jax.random.key(2), (2, *size, 6))
  assert layer(x).shape == reference(x).shape and layer(x).dtype == dtype
  return layer, reference, x


def test_a_model_in_either_form_has_the_same_variables_and_outputs():
  """The setting changes the layers' operations only: the same variables (a checkpoint of one
  restores into the other) and the same logits, whatever backend this runs on."""
  config = Config(backbone="mobilenet", weights="none")  # every kind of layer with a CPU form
  networks = {form: build_model(config, kernels=form) for form in FORMS}
  states = {form: nnx.state(network) for form, network in networks.items()}
  assert jax.tree.structure(states["xla"]) == jax.tree.structure(states["cpu"])
  for a, b in zip(jax.tree.leaves(states["xla"]), jax.tree.leaves(states["cpu"]), strict=True):
    np.testing.assert_array_equal(a, b)
  images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), maxval=255.0)
  logits = {}
  for form, network in networks.items():
    network.eval()
    logits[form] = network(images)
  np.testing.assert_allclose(logits["cpu"], logits["xla"], rtol=1e-4, atol=1e-4)


def test_the_cpu_forms_leave_no_trace_in_a_portable_model():
  """A model built with the portable kernels, as export and FLOP counting build it, holds no
  CPU form, wherever it is built."""
  network = build_model(Config(backbone="mobilenet", weights="none"))
  for _, module in nnx.iter_modules(network):
    if isinstance(module, nnx.Conv):
      assert module.conv_general_dilated is lax.conv_general_dilated
    elif isinstance(module, nnx.BatchNorm):
      assert module.training_normalize is None
