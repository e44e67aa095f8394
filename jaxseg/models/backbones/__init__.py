"""Hand-written Flax ports of the Keras ImageNet encoders, by name.

Every encoder takes raw RGB pixels (float, 0..255, NHWC), applies its own Keras
preprocessing, and returns five feature maps at strides 2, 4, 8, 16 and 32. Class
attributes tell the rest of jaxseg what it needs to know:

- ``keras_application``: the ``keras.applications`` constructor it ports;
- ``keras_feature_layers``: the Keras layers whose outputs are the five feature maps;
- ``feature_channels``: their channel counts;
- ``needs_center``: the decoder adds a centre block on the deepest map (VGG's is a pool).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

# In the paper's order (Tables 1 and 2).
ENCODER_NAMES = ("vgg19", "resnet50", "mobilenet", "efficientnetb2", "densenet121")
ENCODERS: dict[str, type[nnx.Module]] = {}


# Every registered encoder returns its feature maps at these strides.
FEATURE_STRIDES = (2, 4, 8, 16, 32)


def register(name: str):
  def add(cls):
    cls.feature_strides = FEATURE_STRIDES
    ENCODERS[name] = cls
    return cls

  return add


def encoder_class(name: str) -> type[nnx.Module]:
  """The port of encoder ``name``; its class attributes describe the Keras model it ports."""
  _import_ports()
  if name not in ENCODERS:
    raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODER_NAMES)}")
  return ENCODERS[name]


def create_encoder(name: str, *, rngs: nnx.Rngs, dtype=jnp.float32) -> nnx.Module:
  """The encoder ``name``, randomly initialised, computing in ``dtype``."""
  return encoder_class(name)(dtype=dtype, rngs=rngs)


def _import_ports() -> None:
  # Each port registers itself on import; importing here keeps `encoder_class` the one entry.
  from jaxseg.models.backbones import densenet, efficientnet, mobilenet, resnet, vgg  # noqa: F401
