"""DenseNet (Huang et al., 2017), ported layer for layer from keras.applications.densenet."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models import layers
from jaxseg.models.backbones.base import KerasEncoder

# Conv blocks in each of the four dense blocks; Keras's DenseNet169 and 201 differ only here.
DENSE_BLOCKS = {121: (6, 12, 24, 16)}
GROWTH_RATE = 32
EPSILON = 1.001e-5
# Keras "torch" preprocessing: pixels to 0..1, then ImageNet mean and std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _batch_norm(features, name, dtype, rngs):
  return layers.batch_norm(features, epsilon=EPSILON, keras_name=name, dtype=dtype, rngs=rngs)


class ConvBlock(nnx.Module):
  """BN-ReLU-1x1 conv to 4 * growth, BN-ReLU-3x3 conv to growth, concatenated to the input."""

  def __init__(self, in_features: int, name: str, *, dtype, rngs: nnx.Rngs):
    width = 4 * GROWTH_RATE
    self.bn0 = _batch_norm(in_features, f"{name}_0_bn", dtype, rngs)
    self.conv1 = layers.conv(
      in_features, width, 1, use_bias=False, keras_name=f"{name}_1_conv", dtype=dtype, rngs=rngs
    )
    self.bn1 = _batch_norm(width, f"{name}_1_bn", dtype, rngs)
    self.conv2 = layers.conv(
      width, GROWTH_RATE, 3, use_bias=False, keras_name=f"{name}_2_conv", dtype=dtype, rngs=rngs
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv1(nnx.relu(self.bn0(x)))
    y = self.conv2(nnx.relu(self.bn1(y)))
    return jnp.concatenate([x, y], axis=-1)


class DenseBlock(nnx.Module):
  """``num_blocks`` conv blocks, each adding GROWTH_RATE channels."""

  def __init__(self, in_features: int, num_blocks: int, name: str, *, dtype, rngs: nnx.Rngs):
    self.blocks = nnx.List(
      ConvBlock(in_features + i * GROWTH_RATE, f"{name}_block{i + 1}", dtype=dtype, rngs=rngs)
      for i in range(num_blocks)
    )
    self.out_features = in_features + num_blocks * GROWTH_RATE

  def __call__(self, x: jax.Array) -> jax.Array:
    for block in self.blocks:
      x = block(x)
    return x


class Transition(nnx.Module):
  """BN-ReLU-1x1 conv halving the channels; the 2x2 average pool is left to the caller."""

  def __init__(self, in_features: int, name: str, *, dtype, rngs: nnx.Rngs):
    self.out_features = in_features // 2
    self.bn = _batch_norm(in_features, f"{name}_bn", dtype, rngs)
    self.conv = layers.conv(
      in_features,
      self.out_features,
      1,
      use_bias=False,
      keras_name=f"{name}_conv",
      dtype=dtype,
      rngs=rngs,
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.conv(nnx.relu(self.bn(x)))


class DenseNet(KerasEncoder):
  """Keras's DenseNet without its top; returns the stem ReLU, the transition convs before
  their pools (strides 4, 8, 16) and the final ReLU (stride 32)."""

  def __init__(self, dense_blocks: tuple[int, ...], *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv1_conv = layers.conv(
      3,
      64,
      7,
      strides=2,
      padding="VALID",
      use_bias=False,
      keras_name="conv1_conv",
      dtype=dtype,
      rngs=rngs,
    )
    self.conv1_bn = _batch_norm(64, "conv1_bn", dtype, rngs)
    features = 64
    self.dense_blocks = nnx.List()
    self.transitions = nnx.List()
    for i, num_blocks in enumerate(dense_blocks):
      stage = i + 2  # Keras names the dense blocks conv2..conv5, after the stem's conv1
      block = DenseBlock(features, num_blocks, f"conv{stage}", dtype=dtype, rngs=rngs)
      self.dense_blocks.append(block)
      features = block.out_features
      if i < len(dense_blocks) - 1:  # no transition after the last dense block
        transition = Transition(features, f"pool{stage}", dtype=dtype, rngs=rngs)
        self.transitions.append(transition)
        features = transition.out_features
    self.bn = _batch_norm(features, "bn", dtype, rngs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
    x = (x.astype(jnp.float32) / 255.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    x = self.conv1_conv(layers.zero_pad(x, ((3, 3), (3, 3))))
    x = nnx.relu(self.conv1_bn(x))
    features = [x]
    x = layers.max_pool(layers.zero_pad(x, ((1, 1), (1, 1))), 3, strides=2)
    for block, transition in zip(self.dense_blocks, self.transitions):
      x = transition(block(x))
      features.append(x)
      x = layers.avg_pool(x, 2)
    x = self.dense_blocks[-1](x)
    features.append(nnx.relu(self.bn(x)))
    return features


class DenseNet121(DenseNet):
  keras_application = "DenseNet121"
  keras_feature_layers = ("conv1_relu", "pool2_conv", "pool3_conv", "pool4_conv", "relu")
  feature_channels = (64, 128, 256, 512, 1024)

  def __init__(self, *, dtype=jnp.float32, rngs: nnx.Rngs):
    super().__init__(DENSE_BLOCKS[121], dtype=dtype, rngs=rngs)
