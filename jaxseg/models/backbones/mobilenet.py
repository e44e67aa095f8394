"""MobileNet v1, alpha 1.0 (keras.applications.MobileNet), ported layer for layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models import layers
from jaxseg.models.backbones.base import KerasEncoder

# (pointwise filters, stride) of `_depthwise_conv_block` 1 to 13.
BLOCKS = (
  (64, 1),
  (128, 2),
  (128, 1),
  (256, 2),
  (256, 1),
  (512, 2),
  (512, 1),
  (512, 1),
  (512, 1),
  (512, 1),
  (512, 1),
  (1024, 2),
  (1024, 1),
)
# The blocks whose outputs are features at strides 2 (after conv1), 4, 8, 16 and 32.
FEATURE_BLOCKS = (1, 3, 5, 11, 13)


def tf_preprocess(x: jax.Array) -> jax.Array:
  """Keras's `tf` preprocessing: pixels 0..255 to -1..1."""
  return jnp.asarray(x, jnp.float32) / 127.5 - 1.0


class DepthwiseConvBlock(nnx.Module):
  """Keras's `_depthwise_conv_block`: depthwise 3x3, BN, ReLU6, pointwise 1x1, BN, ReLU6."""

  def __init__(self, in_features: int, filters: int, *, strides: int, block_id: int, dtype, rngs):
    self.strides = strides
    # Keras pads ((0, 1), (0, 1)) itself before a strided depthwise conv, then uses VALID.
    padding = "SAME" if strides == 1 else "VALID"
    dw, pw = f"conv_dw_{block_id}", f"conv_pw_{block_id}"
    self.conv_dw = layers.depthwise_conv(
      in_features, 3, strides=strides, padding=padding, keras_name=dw, dtype=dtype, rngs=rngs
    )
    self.conv_dw_bn = layers.batch_norm(in_features, keras_name=f"{dw}_bn", dtype=dtype, rngs=rngs)
    self.conv_pw = layers.conv(
      in_features, filters, 1, use_bias=False, keras_name=pw, dtype=dtype, rngs=rngs
    )
    self.conv_pw_bn = layers.batch_norm(filters, keras_name=f"{pw}_bn", dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.strides != 1:
      x = layers.zero_pad(x, ((0, 1), (0, 1)))
    x = nnx.relu6(self.conv_dw_bn(self.conv_dw(x)))
    return nnx.relu6(self.conv_pw_bn(self.conv_pw(x)))


class MobileNet(KerasEncoder):
  """MobileNet v1 (alpha 1.0, depth multiplier 1) without its classifier."""

  keras_application = "MobileNet"
  keras_feature_layers = tuple(f"conv_pw_{block}_relu" for block in FEATURE_BLOCKS)
  feature_channels = tuple(BLOCKS[block - 1][0] for block in FEATURE_BLOCKS)

  def __init__(self, *, dtype=jnp.float32, rngs: nnx.Rngs):
    # Keras's `_conv_block`: a stride-2 3x3 conv with TensorFlow SAME padding, BN, ReLU6.
    self.conv1 = layers.conv(
      3, 32, 3, strides=2, use_bias=False, keras_name="conv1", dtype=dtype, rngs=rngs
    )
    self.conv1_bn = layers.batch_norm(32, keras_name="conv1_bn", dtype=dtype, rngs=rngs)
    self.blocks = nnx.List()
    in_features = 32
    for block_id, (filters, strides) in enumerate(BLOCKS, start=1):
      block = DepthwiseConvBlock(
        in_features, filters, strides=strides, block_id=block_id, dtype=dtype, rngs=rngs
      )
      self.blocks.append(block)
      in_features = filters

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
    """Raw RGB pixels (0..255, NHWC) to the five feature maps; ``rngs`` is unused (no dropout)."""
    x = nnx.relu6(self.conv1_bn(self.conv1(tf_preprocess(x))))
    features = []
    for block_id, block in enumerate(self.blocks, start=1):
      x = block(x)
      if block_id in FEATURE_BLOCKS:
        features.append(x)
    return features
