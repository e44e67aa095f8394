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


def load_encoder_weights(encoder, backbone: str, spec: str, cache_dir: Path) -> str:
  """Load ``spec`` (imagenet, none or a file) into ``encoder``; returns what was used."""
  if spec == "none":
    return "none (random initialisation)"
  if spec == "imagenet":
    path = imagenet_weights_path(cache_dir, backbone)
    if not path.exists():
      warnings.warn(
        f"no converted ImageNet weights for {backbone} at {path}; training from random "
        f"initialisation. To get them, on a machine with network access run: "
        f"python tools/convert_weights.py --backbone {backbone} --out {path}",
        stacklevel=2,
      )
      return "none (ImageNet weights not found, random initialisation)"
  else:
    path = Path(spec).expanduser()
    if not path.exists():
      raise JaxsegError(f"--weights {spec}: file not found")
  weights, meta = read_weights(path)
  if meta.get("backbone", backbone) != backbone:
    raise JaxsegError(f"{path}: weights of {meta['backbone']}, not {backbone}")
  try:
    load_layer_weights(encoder, weights)
  except WeightsMismatchError as error:
    raise JaxsegError(f"{path}: {error}") from None
  if meta.get("imagenet") and hasattr(encoder, "imagenet_rescale"):
    # Keras EfficientNet divides by sqrt(ImageNet std) once more when it loads these weights.
    encoder.imagenet_rescale = True
  return f"{meta.get('source', 'converted')} ({path})"
