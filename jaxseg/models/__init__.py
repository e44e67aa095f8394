"""Models by name, and the one factory that builds them: `build_model(config, kernels=...)`.

``unet`` is the paper's plain U-Net; every other name is a U-Net decoder on a ported Keras
encoder of `jaxseg.models.backbones` (`jaxseg.models.registry` names them all).
"""

from __future__ import annotations

from flax import nnx

from jaxseg.models import kernels as _kernels
from jaxseg.models.backbones import ENCODERS, create_encoder, encoder_class
from jaxseg.models.registry import DECODERS, MODELS
from jaxseg.models.unet import DECODER_FILTERS, PaperEncoder, UNet


def build_model(config, *, kernels: str = "xla") -> UNet:
  """The network of ``config`` (a `jaxseg.config.Config`), initialised at random from
  ``config.seed``, its layers in the forms of ``kernels`` (`jaxseg.models.kernels`).

  Everything that shapes the network comes from ``config``, so the config a run folder saves
  rebuilds the network it trained; pretrained encoder weights and checkpoints are loaded into
  it by the callers (`jaxseg.engine`). Under ``nnx.eval_shape`` no initialiser runs.
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
               out_channels=config.out_channels, dtype=dtype, rngs=rngs)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.BatchNorm):
      module.momentum = config.batchnorm_momentum
  return _kernels.use(model, kernels)


__all__ = ["DECODERS", "ENCODERS", "MODELS", "UNet", "build_model", "create_encoder",
           "encoder_class"]
