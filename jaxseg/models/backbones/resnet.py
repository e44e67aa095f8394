"""ResNet50, ported layer for layer from ``keras.applications.ResNet50``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models import layers
from jaxseg.models.backbones.base import KerasEncoder

EPSILON = 1.001e-5
# Caffe preprocessing: BGR channel means of ImageNet, on 0..255 pixels.
BGR_MEAN = (103.939, 116.779, 123.68)
# (bottleneck filters, blocks, stride of the first block) for the stacks conv2..conv5.
STACKS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


class Block(nnx.Module):
  """Keras ``residual_block_v1``: 1x1 -> 3x3 -> 1x1 bottleneck added to a shortcut, then ReLU."""

  def __init__(
    self,
    in_features: int,
    filters: int,
    *,
    stride: int = 1,
    conv_shortcut: bool = False,
    name: str,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    def conv(cin, cout, kernel_size, index, **kwargs):
      return layers.conv(
        cin, cout, kernel_size, keras_name=f"{name}_{index}_conv", dtype=dtype, rngs=rngs, **kwargs
      )

    def bn(features, index):
      return layers.batch_norm(
        features, epsilon=EPSILON, keras_name=f"{name}_{index}_bn", dtype=dtype, rngs=rngs
      )

    out_features = 4 * filters
    if conv_shortcut:
      self.shortcut_conv = conv(in_features, out_features, 1, 0, strides=stride, padding="VALID")
      self.shortcut_bn = bn(out_features, 0)
    else:
      self.shortcut_conv = self.shortcut_bn = None
    # Keras strides the first 1x1 conv, not the 3x3 as torchvision does.
    self.conv1 = conv(in_features, filters, 1, 1, strides=stride, padding="VALID")
    self.bn1 = bn(filters, 1)
    self.conv2 = conv(filters, filters, 3, 2)
    self.bn2 = bn(filters, 2)
    self.conv3 = conv(filters, out_features, 1, 3, padding="VALID")
    self.bn3 = bn(out_features, 3)

  def __call__(self, x: jax.Array) -> jax.Array:
    shortcut = x
    if self.shortcut_conv is not None:
      shortcut = self.shortcut_bn(self.shortcut_conv(x))
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = nnx.relu(self.bn2(self.conv2(x)))
    x = self.bn3(self.conv3(x))
    return nnx.relu(shortcut + x)


def stack(in_features, filters, blocks, *, stride, name, dtype, rngs) -> nnx.List:
  """Keras ``stack_residual_blocks_v1``: a block with a conv shortcut, then identity blocks."""
  first = Block(
    in_features,
    filters,
    stride=stride,
    conv_shortcut=True,
    name=f"{name}_block1",
    dtype=dtype,
    rngs=rngs,
  )
  rest = [
    Block(4 * filters, filters, name=f"{name}_block{i}", dtype=dtype, rngs=rngs)
    for i in range(2, blocks + 1)
  ]
  return nnx.List([first, *rest])


class ResNet50(KerasEncoder):
  """ResNet50 v1 with Keras's caffe preprocessing; features after conv1 and each stack."""

  keras_application = "ResNet50"
  keras_feature_layers = (
    "conv1_relu",
    "conv2_block3_out",
    "conv3_block4_out",
    "conv4_block6_out",
    "conv5_block3_out",
  )
  feature_channels = (64, 256, 512, 1024, 2048)

  def __init__(self, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv1 = layers.conv(
      3, 64, 7, strides=2, padding="VALID", keras_name="conv1_conv", dtype=dtype, rngs=rngs
    )
    self.bn1 = layers.batch_norm(64, epsilon=EPSILON, keras_name="conv1_bn", dtype=dtype, rngs=rngs)
    self.stacks = nnx.List()
    in_features = 64
    for index, (filters, blocks, stride) in enumerate(STACKS, start=2):
      name = f"conv{index}"
      self.stacks.append(
        stack(in_features, filters, blocks, stride=stride, name=name, dtype=dtype, rngs=rngs)
      )
      in_features = 4 * filters

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
    # ``rngs`` is unused: ResNet50 has no dropout, but every encoder takes the same arguments.
    x = x.astype(jnp.float32)[..., ::-1] - jnp.asarray(BGR_MEAN, jnp.float32)
    x = self.conv1(layers.zero_pad(x, ((3, 3), (3, 3))))
    x = nnx.relu(self.bn1(x))
    features = [x]
    x = layers.max_pool(layers.zero_pad(x, ((1, 1), (1, 1))), 3, strides=2)
    for blocks in self.stacks:
      for block in blocks:
        x = block(x)
      features.append(x)
    return features
