"""VGG19 (keras.applications.VGG19), ported layer for layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models import layers
from jaxseg.models.backbones.base import KerasEncoder

# Keras's `caffe` preprocessing: BGR channel order, ImageNet mean subtracted, no scaling.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

# (filters, number of 3x3 convs) of each block; a 2x2 max pool ends every block.
BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def caffe_preprocess(x: jax.Array) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)[..., ::-1]
  return x - jnp.asarray(CAFFE_BGR_MEAN, jnp.float32)


class VGG19(KerasEncoder):
  """VGG19 without its classifier; features are the last conv of blocks 2-5 and block5_pool."""

  keras_application = "VGG19"
  keras_feature_layers = (
    "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4", "block5_pool"
  )
  feature_channels = (128, 256, 512, 512, 512)
  needs_center = True

  def __init__(self, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.blocks = nnx.List()
    in_features = 3
    for block, (filters, depth) in enumerate(BLOCKS, start=1):
      convs = nnx.List()
      for index in range(1, depth + 1):
        name = f"block{block}_conv{index}"
        convs.append(layers.conv(in_features, filters, 3, keras_name=name, dtype=dtype, rngs=rngs))
        in_features = filters
      self.blocks.append(convs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
    """Raw RGB pixels (0..255, NHWC) to the five feature maps; ``rngs`` is unused (no dropout)."""
    x = caffe_preprocess(x)
    features = []
    for convs in self.blocks:
      for conv in convs:
        x = nnx.relu(conv(x))
      features.append(x)
      x = layers.max_pool(x, 2)
    # Block 1's last conv is at stride 1, so not a feature; the deepest map is block5_pool.
    return features[1:] + [x]
