"""What every encoder port tells the rest of jaxseg about the Keras model it ports."""

from __future__ import annotations

from flax import nnx


class KerasEncoder(nnx.Module):
  """A hand-written port of a ``keras.applications`` model without its top.

  It takes raw RGB pixels (float, 0..255, NHWC), applies the Keras model's own input
  preprocessing, and returns five feature maps at ``feature_strides``. Subclasses set:

  - ``keras_application``: the ``keras.applications`` constructor ported;
  - ``keras_feature_layers``: the Keras layers whose outputs are the five feature maps;
  - ``feature_channels``: their channel counts;
  - ``needs_center``: the decoder adds a centre block on the deepest map (VGG's is a pool).
  """

  feature_strides = (2, 4, 8, 16, 32)
  keras_application: str
  keras_feature_layers: tuple[str, ...]
  feature_channels: tuple[int, ...]
  needs_center = False
