"""U-Nets: the paper's plain U-Net, and a U-Net decoder on any registered encoder.

Both are one `UNet`: an encoder that returns feature maps at known strides, an optional
centre block, and a decoder that doubles the resolution per block, concatenating the
encoder map of that stride where there is one, up to the input resolution. The plain
U-Net's encoder is `PaperEncoder` (section 2.3 of the paper); the pretrained ones come
from `jaxseg.models.backbones`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models import layers
from jaxseg.models.registry import DECODERS, UNET_DEPTHS

# segmentation_models' decoder widths, of both decoders on an encoder.
DECODER_FILTERS = (256, 128, 64, 32, 16)
PRIOR = 0.1  # initial probability of the target, or of each foreground class, at every pixel


class DoubleConv(nnx.Module):
  """Two conv + BN + ReLU blocks; spatial dropout after the second, as in the paper."""

  def __init__(self, in_features: int, features: int, *, dropout: float, dtype, rngs: nnx.Rngs):
    self.first = layers.ConvBNReLU(in_features, features, dtype=dtype, rngs=rngs)
    self.second = layers.ConvBNReLU(features, features, dropout=dropout, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    return self.second(self.first(x), rngs=rngs)


class PaperEncoder(nnx.Module):
  """The paper's encoder (section 2.3): double convs of 64-128-256-512-1024 filters, 2x2 max pools.

  ``depth`` counts the poolings. 5 is the paper's: a pool ends each of the five modules, so
  the deepest map (stride 32, 7x7 at 224) is a pool, and `UNet` adds the central block of
  two 1024-filter convs on it, as it does on VGG's. 4 is the classic U-Net: the fifth double
  conv, after the fourth pool, is its centre. ``base_filters`` scales every width (64 is
  the paper's; 16 trains on a CPU in minutes). Input is raw RGB 0..255, scaled to 0..1.
  """

  def __init__(self, *, depth: int = 5, base_filters: int = 64, dropout: float = 0.0,
               dtype=jnp.float32, rngs: nnx.Rngs):
    if depth not in UNET_DEPTHS:
      raise ValueError(f"unet_depth {depth}: choose 5 (the paper's) or 4 (the classic U-Net)")
    widths = [base_filters * 2**i for i in range(5)]
    self.needs_center = depth == 5
    self.feature_strides = tuple(2**i for i in range(depth + 1))
    # At depth 5 the deepest map is the fifth pool, as wide as the module it ends.
    self.feature_channels = tuple(widths + widths[-1:]) if self.needs_center else tuple(widths)
    self.stages = nnx.List([
      DoubleConv(cin, cout, dropout=dropout, dtype=dtype, rngs=rngs)
      for cin, cout in zip([3, *widths[:-1]], widths)
    ])

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
    x = x / 255.0
    features = []
    for i, stage in enumerate(self.stages):
      if i > 0:
        x = layers.max_pool(x, 2)
      x = stage(x, rngs=rngs)
      features.append(x)
    if self.needs_center:
      features.append(layers.max_pool(x, 2))  # the fifth module's pool
    return features


class DecoderBlock(nnx.Module):
  """Upsample by 2 (``paper``: 2x2 transposed conv; ``smp``: nearest), concatenate the skip,
  double conv."""

  def __init__(self, in_features: int, skip_features: int, features: int, *, decoder: str,
               dropout: float, dtype, rngs: nnx.Rngs):
    if decoder == "paper":
      self.up = layers.UpConv2x2(in_features, features, dtype=dtype, rngs=rngs)
      up_features = features
    elif decoder == "smp":
      self.up = None
      up_features = in_features
    else:
      raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
    self.conv = DoubleConv(up_features + skip_features, features, dropout=dropout, dtype=dtype,
                           rngs=rngs)

  def __call__(self, x, skip=None, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    if self.up is None:
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    else:
      x = self.up(x)
    if skip is not None:
      x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
    return self.conv(x, rngs=rngs)


class UNet(nnx.Module):
  """Encoder, optional centre block, decoder up to the input resolution, 1x1 conv head.

  Returns logits (float32, NHWC with ``out_channels`` channels): one channel is a binary
  target's, for a sigmoid; more are classes, background first, for a softmax over them. Both
  are applied by the loss and at prediction, where they are numerically safer. Inputs of any
  height and width work: they are padded (edge pixels repeated) to a multiple of the deepest
  stride and the logits cropped back.
  """

  def __init__(self, encoder: nnx.Module, *, decoder_filters: Sequence[int], decoder: str,
               dropout: float, out_channels: int = 1, dtype=jnp.float32, rngs: nnx.Rngs):
    self.encoder = encoder
    strides = encoder.feature_strides
    channels = encoder.feature_channels
    deepest = channels[-1]
    # A double conv of the same width on a pool: segmentation_models' centre block on VGG's
    # last pool, and the paper's central block of two 1024-filter convs.
    self.center = (
      DoubleConv(deepest, deepest, dropout=0.0, dtype=dtype, rngs=rngs)
      if encoder.needs_center else None
    )
    x_features = deepest
    skip_channels = dict(zip(strides, channels))
    blocks = []
    stride = strides[-1]
    for features in decoder_filters[: _num_upsamplings(stride)]:
      stride //= 2
      blocks.append(DecoderBlock(x_features, skip_channels.get(stride, 0), features,
                                 decoder=decoder, dropout=dropout, dtype=dtype, rngs=rngs))
      x_features = features
    if stride != 1:
      raise ValueError(f"{len(decoder_filters)} decoder widths cannot undo stride {strides[-1]}")
    self.blocks = nnx.List(blocks)
    self.head = layers.conv(x_features, out_channels, 1, kernel_init=layers.KERAS_KERNEL_INIT,
                            dtype=dtype, rngs=rngs)
    # Start from a 10% foreground prior, not 50% (or a third of each class): while every pixel
    # reads 0.5 the soft Jaccard loss pulls the background down only weakly, and small targets
    # learn late.
    self.head.bias[...] = _prior_logits(out_channels)
    self.max_stride = strides[-1]

  def __call__(self, images: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    height, width = images.shape[1:3]
    pad_h, pad_w = -height % self.max_stride, -width % self.max_stride
    if pad_h or pad_w:
      images = jnp.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    features = self.encoder(images, rngs=rngs)
    skips = dict(zip(self.encoder.feature_strides, features))
    x = features[-1]
    if self.center is not None:
      x = self.center(x, rngs=rngs)
    stride = self.max_stride
    for block in self.blocks:
      stride //= 2
      x = block(x, skips.get(stride), rngs=rngs)
    logits = self.head(x).astype(jnp.float32)
    return logits[:, :height, :width]


def _prior_logits(channels: int) -> jax.Array:
  """Logits giving the target probability `PRIOR` under a sigmoid (one channel), or each
  foreground class `PRIOR` and the background the rest under a softmax."""
  if channels == 1:
    return jnp.full((1,), math.log(PRIOR / (1 - PRIOR)))
  return jnp.log(jnp.array([1 - (channels - 1) * PRIOR] + [PRIOR] * (channels - 1)))


def _num_upsamplings(stride: int) -> int:
  return stride.bit_length() - 1
