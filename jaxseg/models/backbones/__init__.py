"""Hand-written Flax ports of the Keras ImageNet encoders, by name.

Each is a `KerasEncoder`: its class attributes name the Keras application it ports, the
layers whose outputs are its five feature maps, and their channels.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxseg.models.backbones.base import KerasEncoder
from jaxseg.models.backbones.densenet import DenseNet121
from jaxseg.models.backbones.efficientnet import EfficientNetB2
from jaxseg.models.backbones.mobilenet import MobileNet
from jaxseg.models.backbones.resnet import ResNet50
from jaxseg.models.backbones.vgg import VGG19

# By the names of `jaxseg.models.registry.ENCODERS`, which are the Keras applications'.
ENCODERS: dict[str, type[KerasEncoder]] = {
  port.keras_application.lower(): port
  for port in (VGG19, ResNet50, MobileNet, EfficientNetB2, DenseNet121)
}


def encoder_class(name: str) -> type[KerasEncoder]:
  """The port of encoder ``name``; its class attributes describe the Keras model it ports."""
  if name not in ENCODERS:
    raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
  return ENCODERS[name]


def create_encoder(name: str, *, rngs: nnx.Rngs, dtype=jnp.float32) -> KerasEncoder:
  """The encoder ``name``, randomly initialised, computing in ``dtype``."""
  return encoder_class(name)(dtype=dtype, rngs=rngs)
