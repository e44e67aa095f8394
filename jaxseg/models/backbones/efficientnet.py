"""EfficientNet, ported layer for layer from ``keras.applications.efficientnet``.

The Keras family scales one architecture (``DEFAULT_BLOCKS_ARGS``) by a width and a depth
coefficient; `EfficientNet` builds it from the coefficients that a subclass sets, so another
member (B0..B7) is a subclass with Keras's coefficients and feature channels.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models import layers
from jaxseg.models.backbones.base import KerasEncoder

# Keras's DEFAULT_BLOCKS_ARGS, one entry per stage before width and depth scaling, less the
# keys every stage shares: id_skip=True and se_ratio=0.25.
DEFAULT_BLOCKS_ARGS = (
  dict(kernel_size=3, repeats=1, filters_in=32, filters_out=16, expand_ratio=1, strides=1),
  dict(kernel_size=3, repeats=2, filters_in=16, filters_out=24, expand_ratio=6, strides=2),
  dict(kernel_size=5, repeats=2, filters_in=24, filters_out=40, expand_ratio=6, strides=2),
  dict(kernel_size=3, repeats=3, filters_in=40, filters_out=80, expand_ratio=6, strides=2),
  dict(kernel_size=5, repeats=3, filters_in=80, filters_out=112, expand_ratio=6, strides=1),
  dict(kernel_size=5, repeats=4, filters_in=112, filters_out=192, expand_ratio=6, strides=2),
  dict(kernel_size=3, repeats=1, filters_in=192, filters_out=320, expand_ratio=6, strides=1),
)
SE_RATIO = 0.25
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def correct_pad(x: jax.Array, kernel_size: int) -> layers.Padding:
  """Keras's ``imagenet_utils.correct_pad``: the zero padding before a VALID stride-2 conv."""
  adjust = (1 - x.shape[1] % 2, 1 - x.shape[2] % 2)
  correct = kernel_size // 2
  return ((correct - adjust[0], correct), (correct - adjust[1], correct))


class Block(nnx.Module):
  """Keras's ``block``: expand, depthwise conv, squeeze-excite, project, drop-connect + skip."""

  def __init__(
    self,
    filters_in: int,
    filters_out: int,
    *,
    kernel_size: int,
    strides: int,
    expand_ratio: int,
    drop_rate: float,
    name: str,
    dtype,
    rngs: nnx.Rngs,
  ):
    self.name = name
    self.kernel_size = kernel_size
    self.strides = strides
    filters = filters_in * expand_ratio
    common = dict(dtype=dtype, rngs=rngs)
    if expand_ratio != 1:
      self.expand_conv = layers.conv(
        filters_in, filters, 1, use_bias=False, keras_name=f"{name}_expand_conv", **common
      )
      self.expand_bn = layers.batch_norm(filters, keras_name=f"{name}_expand_bn", **common)
    else:
      self.expand_conv = self.expand_bn = None
    self.dwconv = layers.depthwise_conv(
      filters,
      kernel_size,
      strides=strides,
      padding="VALID" if strides == 2 else "SAME",
      keras_name=f"{name}_dwconv",
      **common,
    )
    self.bn = layers.batch_norm(filters, keras_name=f"{name}_bn", **common)
    filters_se = max(1, int(filters_in * SE_RATIO))
    self.se_reduce = layers.conv(filters, filters_se, 1, keras_name=f"{name}_se_reduce", **common)
    self.se_expand = layers.conv(filters_se, filters, 1, keras_name=f"{name}_se_expand", **common)
    self.project_conv = layers.conv(
      filters, filters_out, 1, use_bias=False, keras_name=f"{name}_project_conv", **common
    )
    self.project_bn = layers.batch_norm(filters_out, keras_name=f"{name}_project_bn", **common)
    self.residual = strides == 1 and filters_in == filters_out
    # Drop-connect: Keras's Dropout with noise_shape (None, 1, 1, 1) drops whole examples.
    has_drop = self.residual and drop_rate > 0
    self.drop = nnx.Dropout(drop_rate, broadcast_dims=(1, 2, 3)) if has_drop else None

  def __call__(self, inputs: jax.Array, *, rngs: nnx.Rngs | None = None):
    """The block's output and its expand activation (None without an expand conv)."""
    expanded = None
    x = inputs
    if self.expand_conv is not None:
      x = expanded = nnx.swish(self.expand_bn(self.expand_conv(x)))
    if self.strides == 2:
      x = layers.zero_pad(x, correct_pad(x, self.kernel_size))
    x = nnx.swish(self.bn(self.dwconv(x)))
    se = jnp.mean(x, axis=(1, 2), keepdims=True)
    se = nnx.sigmoid(self.se_expand(nnx.swish(self.se_reduce(se))))
    x = self.project_bn(self.project_conv(x * se))
    if self.residual:
      if self.drop is not None:
        x = self.drop(x, rngs=rngs)
      x = x + inputs
    return x, expanded


class EfficientNet(KerasEncoder):
  """Keras's ``EfficientNet`` without its top, scaled by the subclass's coefficients.

  ``input_scale`` multiplies the normalised input per channel: 1 as Keras builds the model
  for ``weights=None``, 1/sqrt(ImageNet std) (`use_imagenet_rescale`) as Keras inserts it
  after Normalization when it loads ImageNet weights. A variable, not a graph switch, so a
  checkpoint carries it and every model restored from one computes what was trained.
  """

  width_coefficient: float
  depth_coefficient: float
  keras_feature_layers: tuple[str, ...]

  def __init__(
    self,
    *,
    drop_connect_rate: float = 0.2,
    depth_divisor: int = 8,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    def round_filters(filters: int, divisor: int = depth_divisor) -> int:
      filters *= self.width_coefficient
      new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
      # Make sure that rounding down does not lose more than 10%.
      if new_filters < 0.9 * filters:
        new_filters += divisor
      return int(new_filters)

    def round_repeats(repeats: int) -> int:
      return int(math.ceil(self.depth_coefficient * repeats))

    common = dict(dtype=dtype, rngs=rngs)
    self.input_scale = layers.Constant(jnp.ones((3,), jnp.float32))
    self.normalization = layers.Normalization(3, keras_name="normalization")
    stem_filters = round_filters(32)
    self.stem_conv = layers.conv(
      3,
      stem_filters,
      3,
      strides=2,
      padding="VALID",
      use_bias=False,
      keras_name="stem_conv",
      **common,
    )
    self.stem_bn = layers.batch_norm(stem_filters, keras_name="stem_bn", **common)

    self.blocks = nnx.List()
    total = float(sum(round_repeats(args["repeats"]) for args in DEFAULT_BLOCKS_ARGS))
    for i, args in enumerate(DEFAULT_BLOCKS_ARGS):
      filters_in = round_filters(args["filters_in"])
      filters_out = round_filters(args["filters_out"])
      strides = args["strides"]
      for j in range(round_repeats(args["repeats"])):
        # Only the first block of a stage changes stride and width.
        if j > 0:
          strides, filters_in = 1, filters_out
        self.blocks.append(
          Block(
            filters_in,
            filters_out,
            kernel_size=args["kernel_size"],
            strides=strides,
            expand_ratio=args["expand_ratio"],
            drop_rate=drop_connect_rate * len(self.blocks) / total,
            name=f"block{i + 1}{chr(j + 97)}",
            **common,
          )
        )

    top_filters = round_filters(1280)
    self.top_conv = layers.conv(
      filters_out, top_filters, 1, use_bias=False, keras_name="top_conv", **common
    )
    self.top_bn = layers.batch_norm(top_filters, keras_name="top_bn", **common)

  def use_imagenet_rescale(self) -> None:
    self.input_scale[...] = jnp.asarray([1 / math.sqrt(std) for std in IMAGENET_STDDEV_RGB],
                                        jnp.float32)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
    """Five feature maps (strides 2..32) of raw RGB pixels, float 0..255, NHWC."""
    # Keras's Rescaling multiplies by the float32 1/255 (a division rounds differently).
    x = self.normalization(jnp.asarray(x, jnp.float32) * (1.0 / 255.0))
    x = x * self.input_scale[...]
    x = layers.zero_pad(x, correct_pad(x, 3))
    x = nnx.swish(self.stem_bn(self.stem_conv(x)))
    features = []
    for block in self.blocks:
      x, expanded = block(x, rngs=rngs)
      if f"{block.name}_expand_activation" in self.keras_feature_layers:
        features.append(expanded)
    features.append(nnx.swish(self.top_bn(self.top_conv(x))))
    return features


class EfficientNetB2(EfficientNet):
  keras_application = "EfficientNetB2"
  keras_feature_layers = (
    "block2a_expand_activation",
    "block3a_expand_activation",
    "block4a_expand_activation",
    "block6a_expand_activation",
    "top_activation",
  )
  feature_channels = (96, 144, 288, 720, 1408)
  width_coefficient = 1.1
  depth_coefficient = 1.2
