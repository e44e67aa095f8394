"""Print a Markdown table of parameter counts: each Keras encoder, its port, and the U-Nets.

  python tools/parameter_table.py

Counts hold every variable: trainable weights, BatchNorm statistics and EfficientNet's
input normalisation; Keras's count of samples behind that normalisation is no parameter and
is left out. The Keras models are built without weights (weights=None): no download needed.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax
import numpy as np
from flax import nnx

from jaxseg.config import Config
from jaxseg.models import build_model
from jaxseg.models.backbones import ENCODERS, create_encoder
from jaxseg.models.unet import UNET_DEPTHS
from jaxseg.weights import keras_application


def keras_count(name: str) -> int:
  application = keras_application(name)
  model = application(include_top=False, weights=None, input_shape=(None, None, 3))
  return sum(int(np.prod(w.shape)) for w in model.weights if w.name.split("/")[-1] != "count")


def size(state) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))


def counts(build) -> tuple[int, int]:
  """(all variables, trainable parameters) of the module ``build()`` makes, built abstractly."""
  module = nnx.eval_shape(build)
  return size(nnx.state(module)), size(nnx.state(module, nnx.Param))


def main() -> None:
  print("| backbone | Keras encoder (include_top=False) | port encoder | U-Net total "
        "| U-Net trainable |")
  print("|---|---:|---:|---:|---:|")
  for depth in UNET_DEPTHS:
    total, trainable = counts(lambda: build_model(Config(unet_depth=depth)))
    print(f"| unet (filters 64, depth {depth}) | - | - | {total:,} | {trainable:,} |")
  differing = []
  for name in ENCODERS:
    port, _ = counts(lambda: create_encoder(name, rngs=nnx.Rngs(0)))
    reference = keras_count(name)
    if port != reference:
      differing.append(name)
    total, trainable = counts(lambda: build_model(Config(backbone=name, weights="none")))
    print(f"| {name} | {reference:,} | {port:,} | {total:,} | {trainable:,} |", flush=True)
  if differing:
    raise SystemExit(f"the port's count differs from Keras's for {', '.join(differing)}")


if __name__ == "__main__":
  main()
