"""Converted weight files (``.npz``, no TensorFlow or Keras needed to read) and their cache.

A file holds ``{layer}/{weight}`` arrays, as `keras_layer_weights` reads them from a Keras
model, and a ``__meta__`` JSON entry (backbone, source).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from jaxseg.errors import JaxsegError
from jaxseg.weights.keras import LayerWeights, WeightsMismatchError, load_layer_weights

META_KEY = "__meta__"


def imagenet_weights_path(cache_dir: Path, backbone: str) -> Path:
  return Path(cache_dir) / "weights" / f"{backbone}_imagenet.npz"


def save_weights(path: Path, weights: LayerWeights, meta: dict) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {f"{layer}/{name}": value for layer, named in weights.items()
            for name, value in named.items()}
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez(tmp, **arrays, **{META_KEY: np.array(json.dumps(meta))})
  tmp.replace(path)


def read_weights(path: Path) -> tuple[dict, dict]:
  """``({layer: {weight: array}}, meta)`` from a converted file."""
  try:
    with np.load(path) as data:
      meta = json.loads(str(data[META_KEY])) if META_KEY in data else {}
      weights: dict[str, dict[str, np.ndarray]] = {}
      for key in data.files:
        if key != META_KEY:
          layer, name = key.rsplit("/", 1)
          weights.setdefault(layer, {})[name] = data[key]
  except (OSError, ValueError) as error:
    raise JaxsegError(f"{path}: not a converted weights file ({error})") from None
  return weights, meta


def weights_file(config) -> Path | None:
  """The converted file that ``config.weights`` names, or None for random initialisation
  (``none``, or ``imagenet`` before its weights have been converted into the cache)."""
  if config.weights == "none" or config.backbone == "unet":
    return None
  if config.weights == "imagenet":
    path = imagenet_weights_path(config.cache_path, config.backbone)
    return path if path.exists() else None
  path = Path(config.weights).expanduser()
  if not path.is_file():
    raise JaxsegError(f"--weights {config.weights}: file not found")
  return path


def describe_weights(config) -> str:
  """What `load_encoder_weights` loads for ``config``, in words, for config.json and summaries."""
  if config.backbone == "unet":
    return "none (the plain U-Net has no pretrained encoder)"
  path = weights_file(config)
  if path is not None:
    return f"{read_weights(path)[1].get('source', 'converted')} ({path})"
  if config.weights == "imagenet":
    return "none (ImageNet weights not found, random initialisation)"
  return "none (random initialisation)"


def load_encoder_weights(encoder, config) -> None:
  """Load the weights that ``config.weights`` names into ``encoder``; warn where ImageNet
  weights are asked for but have not been converted."""
  path = weights_file(config)
  if path is None:
    if config.weights == "imagenet" and config.backbone != "unet":
      warnings.warn(
        f"no converted ImageNet weights for {config.backbone} at "
        f"{imagenet_weights_path(config.cache_path, config.backbone)}; training from random "
        f"initialisation. To get them, on a machine with network access run: "
        f"python -m jaxseg.convert_weights --backbone {config.backbone}",
        stacklevel=2,
      )
    return
  weights, meta = read_weights(path)
  if meta.get("backbone", config.backbone) != config.backbone:
    raise JaxsegError(f"{path}: weights of {meta['backbone']}, not {config.backbone}")
  try:
    load_layer_weights(encoder, weights)
  except WeightsMismatchError as error:
    raise JaxsegError(f"{path}: {error}") from None
  if meta.get("imagenet") and hasattr(encoder, "use_imagenet_rescale"):
    # Keras EfficientNet divides by sqrt(ImageNet std) once more when it loads these weights.
    encoder.use_imagenet_rescale()
