"""The U-Nets: the paper's widths and shapes, Keras's initialisers, any input size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxseg.config import Config
from jaxseg.errors import JaxsegError
from jaxseg.models import build_model, layers
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
