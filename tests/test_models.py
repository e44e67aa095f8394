import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseg.config import Config
from jaxseg.models import build_model
from jaxseg.models.unet import PaperEncoder


def parameter_count(module) -> int:
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_paper_unet_widths():
  model = build_model(Config(unet_filters=64))
  assert model.encoder.feature_channels == (64, 128, 256, 512, 1024)
  assert [b.conv.second.conv.out_features for b in model.blocks] == [512, 256, 128, 64]
  # Conv 3x3 without bias (BN follows) + BN scale/bias, per double conv; 2x2 transposed convs.
  def double(cin, cout):
    return 9 * cin * cout + 9 * cout * cout + 4 * cout
  widths = [64, 128, 256, 512, 1024]
  expected = sum(double(cin, cout) for cin, cout in zip([3, *widths[:-1]], widths))
  for deep, shallow in zip(widths[:0:-1], widths[-2::-1]):
    expected += 4 * deep * shallow + shallow + double(2 * shallow, shallow)
  expected += 64 + 1  # 1x1 head
  assert parameter_count(model) == expected


def test_unet_output_matches_input_size_even_when_not_a_multiple_of_16():
  model = build_model(Config(unet_filters=4))
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
