"""Models by name, and the one factory that builds them: `build_model(config)`.

``unet`` is the paper's plain U-Net; every other name is a U-Net decoder on a ported Keras
encoder of `jaxseg.models.backbones` (their family, one name each).
"""

from __future__ import annotations

from flax import nnx

from jaxseg.config import Config
from jaxseg.models.backbones import ENCODERS, create_encoder, encoder_class
from jaxseg.models.unet import DECODER_FILTERS, DECODERS, PaperEncoder, UNet

MODELS = ("unet", *ENCODERS)


def build_model(config: Config, *, load_weights: bool = True) -> UNet:
  """The network of ``config``, initialised from ``config.seed``; with ``load_weights``, the
  encoder weights that ``config.weights`` names are loaded into it.

  Everything that shapes the network comes from ``config``, so the config a run folder saves
  rebuilds the network it trained; evaluation and prediction then restore the checkpoint's
  variables into it (``load_weights=False``).
  """
  rngs = nnx.Rngs(params=config.seed)
  dtype = config.compute_dtype
  if config.backbone == "unet":
    encoder = PaperEncoder(depth=config.unet_depth, base_filters=config.unet_filters,
                           dropout=config.dropout, dtype=dtype, rngs=rngs)
    filters = encoder.feature_channels[-2::-1]
  else:
    encoder = create_encoder(config.backbone, dtype=dtype, rngs=rngs)
    filters = DECODER_FILTERS
  model = UNet(encoder, decoder_filters=filters, decoder=config.decoder, dropout=config.dropout,
               dtype=dtype, rngs=rngs)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.BatchNorm):
      module.momentum = config.batchnorm_momentum
  if load_weights and config.backbone != "unet":
    from jaxseg.weights.store import load_encoder_weights  # it imports the ports

    load_encoder_weights(model.encoder, config)
  return model


__all__ = ["DECODERS", "ENCODERS", "MODELS", "UNet", "build_model", "create_encoder",
           "encoder_class"]
