"""Models by name: ``unet`` (the paper's plain U-Net) or a U-Net on a ported encoder."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxseg.models.backbones import ENCODER_NAMES, create_encoder, encoder_class
from jaxseg.models.unet import DECODER_FILTERS, PaperEncoder, UNet

BACKBONES = ("unet", *ENCODER_NAMES)
# Decoder shapes: the paper's (transposed convs, as its Figure 3 draws) and
# segmentation_models' (nearest upsampling), both 256-128-64-32-16 wide on an encoder.
DECODERS = {"paper": "transpose", "smp": "nearest"}


def create_model(
  backbone: str,
  *,
  unet_filters: int = 64,
  unet_depth: int = 5,
  decoder: str = "paper",
  dropout: float = 0.1,
  batchnorm_momentum: float = 0.99,
  dtype=jnp.float32,
  rngs: nnx.Rngs,
) -> UNet:
  """A U-Net for ``backbone`` with one output channel (logits of the binary target)."""
  if decoder not in DECODERS:
    raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
  if backbone == "unet":
    encoder = PaperEncoder(depth=unet_depth, base_filters=unet_filters, dropout=dropout,
                           dtype=dtype, rngs=rngs)
    filters = encoder.feature_channels[-2::-1]
  else:
    encoder = create_encoder(backbone, dtype=dtype, rngs=rngs)
    filters = DECODER_FILTERS
  model = UNet(encoder, decoder_filters=filters, upsampling=DECODERS[decoder], dropout=dropout,
               dtype=dtype, rngs=rngs)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.BatchNorm):
      module.momentum = batchnorm_momentum
  return model


__all__ = ["BACKBONES", "DECODERS", "create_encoder", "create_model", "encoder_class", "UNet"]
