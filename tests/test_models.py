import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxseg.config import Config
from jaxseg.errors import JaxsegError
from jaxseg.models import build_model, layers
from jaxseg.models.layers import UpConv2x2, batch_norm, conv, depthwise_conv, max_pool
from jaxseg.models.unet import PaperEncoder


def parameter_count(module) -> int:
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


def variable_count(module) -> int:
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module)))


def double_conv_parameters(cin, cout):
  # Two 3x3 convs without bias (BatchNorm follows), and each BatchNorm's scale and bias.
  return 9 * cin * cout + 9 * cout * cout + 4 * cout


@pytest.mark.parametrize("depth, decoder_widths, variables", [
  (5, [1024, 512, 256, 128, 64], 82_447_041),  # the paper's; README's parameter table
  (4, [512, 256, 128, 64], 31_049_409),        # the classic U-Net
])
def test_paper_unet_widths(depth, decoder_widths, variables):
  model = nnx.eval_shape(lambda: build_model(Config(unet_filters=64, unet_depth=depth)))
  widths = [64, 128, 256, 512, 1024]
  assert model.encoder.feature_channels[:5] == tuple(widths)
  assert [b.conv.second.conv.out_features for b in model.blocks] == decoder_widths
  expected = sum(double_conv_parameters(cin, cout) for cin, cout in zip([3, *widths[:-1]], widths))
  if depth == 5:  # the central block of two 1024-filter convs on the fifth pool
    expected += double_conv_parameters(1024, 1024)
  x_features = 1024
  for features in decoder_widths:
    # 2x2 transposed conv with bias, then a double conv on it and the skip of equal width.
    expected += 4 * x_features * features + features + double_conv_parameters(2 * features, features)
    x_features = features
  expected += 64 + 1  # 1x1 head
  assert parameter_count(model) == expected
  assert variable_count(model) == variables  # BatchNorm's running averages included


def test_paper_unet_bottleneck_is_7x7_at_224():
  def shapes():  # traced abstractly: shapes without the arithmetic
    model = build_model(Config(unet_filters=4))
    model.eval()
    images = jnp.zeros((1, 224, 224, 3))
    features = model.encoder(images)
    return features, model.center(features[-1]), model(images)

  features, center, logits = jax.eval_shape(shapes)
  assert [f.shape[1:3] for f in features] == [(224 // s,) * 2 for s in (1, 2, 4, 8, 16, 32)]
  assert center.shape == (1, 7, 7, 64)  # 4 x 16: the paper's 1024 at 64
  assert logits.shape == (1, 224, 224, 1)


def test_plain_unet_and_decoder_start_from_keras_initialisers():
  """glorot_uniform kernels, zero biases, as Keras (the paper's framework) starts them."""
  model = build_model(Config(unet_filters=8))
  convs = [m for _, m in nnx.iter_modules(model) if isinstance(m, (nnx.Conv, nnx.ConvTranspose))]
  assert any(isinstance(m, nnx.ConvTranspose) for m in convs) and model.center is not None
  for layer in convs:
    kernel = np.asarray(layer.kernel[...], np.float64)
    *window, fan_in, fan_out = kernel.shape
    variance = 2 / (np.prod(window) * (fan_in + fan_out))
    # A uniform sample's variance has relative spread sqrt(0.8 / n): allow five of them.
    tolerance = 5 * np.sqrt(0.8 / kernel.size)
    assert np.mean(kernel**2) / variance == pytest.approx(1, abs=tolerance), layer
    assert np.abs(kernel).max() <= np.sqrt(3 * variance)  # uniform's bound: not a normal
    if layer.bias is not None and layer is not model.head:
      assert not np.any(layer.bias[...])
  # The output layer keeps its 10% foreground prior.
  np.testing.assert_allclose(model.head.bias[...], np.log(0.1 / 0.9), rtol=1e-6)


@pytest.mark.parametrize("ours, flax_initializer", [
  (layers.KERAS_KERNEL_INIT, nnx.initializers.glorot_uniform()),
  (layers.LECUN_NORMAL, nnx.initializers.lecun_normal()),
], ids=["glorot_uniform", "lecun_normal"])
def test_initialisers_compiled_unoptimised_draw_flax_numbers(ours, flax_initializer):
  key = jax.random.key(7)
  for shape in [(3, 3, 8, 16), (1, 1, 4, 12), (2, 2, 16, 8)]:
    np.testing.assert_allclose(ours(key, shape), flax_initializer(key, shape), rtol=1e-5,
                               atol=1e-7, err_msg=str(shape))
  assert ours(key, (3, 3, 4, 4), jnp.bfloat16).dtype == jnp.bfloat16
  # Traced, as in nnx.eval_shape, they are part of the caller's program.
  assert jax.eval_shape(lambda k: ours(k, (3, 3, 4, 4)), key).shape == (3, 3, 4, 4)


@pytest.mark.parametrize("depth", [5, 4])
def test_unet_output_matches_input_size_even_when_not_a_multiple_of_its_stride(depth):
  model = build_model(Config(unet_filters=4, unet_depth=depth))
  model.eval()
  for height, width in ((32, 48), (30, 45)):
    logits = model(jnp.zeros((2, height, width, 3)))
    assert logits.shape == (2, height, width, 1)
    assert logits.dtype == jnp.float32


def test_bf16_compute_keeps_float32_parameters():
  model = build_model(Config(unet_filters=4, precision="bf16"))
  assert {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}
  model.eval()
  features = model.encoder(jnp.ones((1, 16, 16, 3)))
  assert features[0].dtype == jnp.bfloat16


def test_paper_encoder_strides():
  encoder = PaperEncoder(base_filters=4, rngs=nnx.Rngs(0))
  features = encoder(jnp.zeros((1, 32, 32, 3)))
  assert [f.shape[1] for f in features] == [32 // s for s in encoder.feature_strides]


def test_unet_depth_is_five_or_four():
  with pytest.raises(ValueError, match="unet_depth 3"):
    PaperEncoder(depth=3, base_filters=4, rngs=nnx.Rngs(0))
  with pytest.raises(JaxsegError, match="--unet-depth 3: choose from 4, 5"):
    Config(unet_depth=3).validate()


def test_configs_from_before_unet_depth_read_as_four_poolings():
  saved = Config().to_dict()
  assert saved["unet_depth"] == 5
  del saved["unet_depth"]  # as config.json was written before the field
  assert Config.from_dict(saved).unet_depth == 4


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


@pytest.mark.parametrize("kernel_size, strides, padding, multiplier, dtype", [
  (3, 1, "SAME", 1, jnp.float32),             # MobileNet's stride-1 blocks
  (3, 2, "VALID", 1, jnp.float32),            # MobileNet's strided blocks (padded before)
  (5, 2, "SAME", 1, jnp.float32),             # EfficientNet's 5x5 strided blocks
  (3, 1, ((1, 2), (0, 1)), 2, jnp.float32),   # uneven padding, a depth multiplier
  (3, 2, "SAME", 1, jnp.bfloat16),
])
def test_depthwise_conv_as_taps_computes_the_grouped_conv_and_its_gradients(
    kernel_size, strides, padding, multiplier, dtype):
  """On a CPU the depthwise conv is a sum over its taps: it gives what the grouped conv gives,
  with the same variables, forward and backward."""
  assert jax.default_backend() == "cpu"  # where the taps replace the convolution
  layer = depthwise_conv(6, kernel_size, depth_multiplier=multiplier, strides=strides,
                         padding=padding, use_bias=True, dtype=dtype, rngs=nnx.Rngs(0))
  layer.bias[...] = jax.random.normal(jax.random.key(1), (6 * multiplier,))
  reference = nnx.Conv(6, 6 * multiplier, (kernel_size, kernel_size), strides=strides,
                       padding=padding, feature_group_count=6, dtype=dtype, rngs=nnx.Rngs(0))
  reference.kernel[...], reference.bias[...] = layer.kernel[...], layer.bias[...]
  x = jax.random.normal(jax.random.key(2), (2, 11, 10, 6))
  assert layer(x).shape == reference(x).shape and layer(x).dtype == dtype
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batch_norm_training_pass_gives_flax_outputs_statistics_and_gradients(dtype):
  """On a CPU BatchNorm's training pass has a hand-written gradient: it gives what
  nnx.BatchNorm gives, outputs, running statistics and gradients, with the same variables."""
  assert jax.default_backend() == "cpu"  # where the hand-written gradient is used
  layer = batch_norm(6, momentum=0.9, dtype=dtype, rngs=nnx.Rngs(0))
  reference = nnx.BatchNorm(6, epsilon=1e-3, momentum=0.9, dtype=dtype,
                            param_dtype=jnp.float32, rngs=nnx.Rngs(0))
  keys = jax.random.split(jax.random.key(1), 5)
  for name, key in zip(("scale", "bias", "mean", "var"), keys):
    values = jax.random.uniform(key, (6,), minval=0.5, maxval=2.0)
    getattr(layer, name)[...] = getattr(reference, name)[...] = values
  x = 3.0 * jax.random.normal(keys[4], (2, 5, 7, 6)) + 2.0  # far from normalised
  graph, state = nnx.split(layer)
  traced = jax.make_jaxpr(lambda state, x: nnx.merge(graph, state)(x))(state, x)
  assert "custom_vjp_call" in str(traced)  # the hand-written gradient, not Flax's code
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

  for grad, grad_ref in zip(loss(layers._normalize), loss(reference), strict=True):
    np.testing.assert_allclose(grad, grad_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("strides, padding, size, dtype", [
  (1, "SAME", (11, 10), jnp.float32),    # DenseNet's, MobileNet's and EfficientNet's 1x1 convs
  (2, "VALID", (11, 10), jnp.float32),   # ResNet50's strided 1x1 convs, odd sizes
  (2, "SAME", (8, 9), jnp.bfloat16),
  (1, ((1, 0), (0, 1)), (5, 6), jnp.float32),  # padded: left to the convolution
])
def test_pointwise_conv_as_matmul_computes_the_conv_and_its_gradients(strides, padding, size,
                                                                      dtype):
  """On a CPU a 1x1 conv is a matmul over channels: it gives what the convolution gives, with
  the same variables, forward and backward."""
  assert jax.default_backend() == "cpu"  # where the matmul replaces the convolution
  layer = conv(6, 5, 1, strides=strides, padding=padding, dtype=dtype, rngs=nnx.Rngs(0))
  assert layer.conv_general_dilated is not jax.lax.conv_general_dilated
  layer.bias[...] = jax.random.normal(jax.random.key(1), (5,))
  reference = nnx.Conv(6, 5, (1, 1), strides=strides, padding=padding, dtype=dtype,
                       rngs=nnx.Rngs(0))
  reference.kernel[...], reference.bias[...] = layer.kernel[...], layer.bias[...]
  x = jax.random.normal(jax.random.key(2), (2, *size, 6))
  assert layer(x).shape == reference(x).shape and layer(x).dtype == dtype
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


@pytest.mark.parametrize("strides", [1, 2])
def test_pointwise_conv_and_its_gradients_are_two_dimensional_matmuls(strides):
  """Forward and backward, every matmul of a 1x1 conv on a CPU multiplies pixels by channels
  as a 2-D matrix: XLA's CPU backend runs a 4-D einsum's gradients far slower (change 18 of
  docs/cpu-performance.md)."""
  layer = conv(6, 5, 1, strides=strides, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (2, 11, 10, 6))
  graphdef, variables = nnx.split(layer)
  loss = lambda variables, x: jnp.sum(jnp.sin(nnx.merge(graphdef, variables)(x)))
  program = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(variables, x).as_text()
  dots = [line for line in program.splitlines() if "dot_general" in line]
  assert len(dots) == 3  # forward, input gradient, kernel gradient
  for line in dots:
    shapes = re.findall(r"tensor<([\dx]+)xf32>", line)
    assert len(shapes) == 3 and all(shape.count("x") == 1 for shape in shapes), line


@pytest.mark.parametrize("kernel_size, strides, padding, size, dtype", [
  (3, 1, "SAME", (11, 10), jnp.float32),   # the U-Nets', VGG19's, DenseNet121's 3x3 convs
  (3, 2, "SAME", (19, 18), jnp.float32),   # MobileNet's and EfficientNet's strided stems
  (7, 2, "VALID", (23, 22), jnp.float32),  # ResNet50's stem (padded before)
  (3, 1, ((1, 2), (0, 1)), (9, 10), jnp.float32),  # uneven padding
  (3, 1, "SAME", (8, 9), jnp.bfloat16),
])
def test_spatial_conv_on_larger_images_is_xlas_convolution_forward_and_backward(
    kernel_size, strides, padding, size, dtype):
  """On a CPU a 3x3 or 7x7 conv whose output has more than `PATCHES_MAX_PIXELS` pixels stays
  XLA's convolution, gradients included: no loop, no hand-written gradient."""
  assert jax.default_backend() == "cpu"
  layer, reference, x = conv_and_reference(32, kernel_size, strides, padding, size, dtype)
  assert layer(x).shape[1] * layer(x).shape[2] > layers.PATCHES_MAX_PIXELS
  backward = str(jax.make_jaxpr(jax.grad(lambda x: layer(x).astype(jnp.float32).sum()))(x))
  assert "conv_general_dilated" in backward
  assert "scan" not in backward and "custom" not in backward
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


@pytest.mark.parametrize("kernel_size, strides, padding, size, dtype", [
  (3, 1, "SAME", (8, 8), jnp.float32),    # ResNet50's and VGG19's last stages, at most 8x8
  (3, 2, "SAME", (9, 10), jnp.float32),
  (3, 1, ((1, 2), (0, 1)), (5, 6), jnp.float32),  # uneven padding
  (5, 1, "VALID", (9, 8), jnp.float32),
  (3, 1, "SAME", (4, 4), jnp.bfloat16),
])
def test_small_image_conv_as_patches_matmul_computes_the_conv_and_its_gradients(
    kernel_size, strides, padding, size, dtype):
  """On a CPU a conv whose output has at most `PATCHES_MAX_PIXELS` pixels is one matmul over
  its input's patches: no convolution left, the same outputs and gradients."""
  assert jax.default_backend() == "cpu"
  layer, reference, x = conv_and_reference(4, kernel_size, strides, padding, size, dtype)
  for program in (jax.make_jaxpr(layer)(x),
                  jax.make_jaxpr(jax.grad(lambda x: layer(x).astype(jnp.float32).sum()))(x)):
    assert "conv_general_dilated" not in str(program)
  assert_same_outputs_and_gradients(layer, reference, x, dtype)


def conv_and_reference(features, kernel_size, strides, padding, size, dtype):
  """`conv` from 6 channels to ``features``, an ``nnx.Conv`` with its variables, an input."""
  layer = conv(6, features, kernel_size, strides=strides, padding=padding, dtype=dtype,
               rngs=nnx.Rngs(0))
  layer.bias[...] = jax.random.normal(jax.random.key(1), (features,))
  reference = nnx.Conv(6, features, (kernel_size, kernel_size), strides=strides,
                       padding=padding, dtype=dtype, rngs=nnx.Rngs(0))
  reference.kernel[...], reference.bias[...] = layer.kernel[...], layer.bias[...]
  x = jax.random.normal(jax.random.key(2), (2, *size, 6))
  assert layer(x).shape == reference(x).shape and layer(x).dtype == dtype
  return layer, reference, x
