"""Convert a Keras application's ImageNet weights into a jaxseg weights file (.npz).

  python -m jaxseg.convert_weights --backbone NAME [--keras-weights FILE] [--out PATH]

Without --keras-weights, Keras downloads its ImageNet weights (network access needed); with
it, FILE is a weights file that the Keras application loads, such as Keras's own download
(densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5). Before writing, the port loaded
with the converted weights must compute the Keras model's five feature maps on a random
image. Only Keras on its JAX backend is needed, not TensorFlow. The default output is the
cache file that ``python -m jaxseg.train --weights imagenet`` reads.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import os
import warnings
from pathlib import Path

import numpy as np
from flax import nnx

from jaxseg.cli import ArgumentParser, command
from jaxseg.config import default_cache_dir
from jaxseg.errors import JaxsegError
from jaxseg.models.backbones import ENCODERS, create_encoder
from jaxseg.weights.keras import (
  WeightsMismatchError,
  keras_application,
  keras_features,
  keras_layer_weights,
  load_layer_weights,
)
from jaxseg.weights.store import imagenet_weights_path, save_weights

CHECK_SHAPE = (1, 96, 160, 3)  # non-square, a multiple of 32
TOLERANCE = 1e-4  # largest feature difference, relative to the largest Keras feature


def parse_args(argv):
  parser = ArgumentParser(prog="python -m jaxseg.convert_weights", description=__doc__.splitlines()[0])
  parser.add_argument("--backbone", required=True, help=", ".join(ENCODERS))
  parser.add_argument("--keras-weights", type=Path, metavar="FILE",
                      help="Keras weights file (default: Keras downloads the ImageNet weights)")
  parser.add_argument("--not-imagenet", action="store_true",
                      help="FILE holds other weights than ImageNet's: for EfficientNet, "
                           "training then leaves out Keras's ImageNet-only input rescaling")
  parser.add_argument("--out", type=Path,
                      help="converted file (default: the ImageNet weights in the jaxseg cache)")
  args = parser.parse_args(argv)
  if args.backbone not in ENCODERS:
    raise JaxsegError(f"--backbone {args.backbone!r}: choose from {', '.join(ENCODERS)}")
  if args.keras_weights is not None and not args.keras_weights.is_file():
    raise JaxsegError(f"--keras-weights {args.keras_weights}: file not found")
  if args.not_imagenet and (args.keras_weights is None or args.out is None):
    raise JaxsegError("--not-imagenet needs --keras-weights FILE and --out PATH "
                      "(the default output is the cache's ImageNet weights)")
  return args


def keras_model(backbone: str, weights_file: Path | None):
  """The Keras application without its top, with ImageNet's weights or those of the file."""
  application = keras_application(backbone)
  weights = "imagenet" if weights_file is None else str(weights_file)
  try:
    with warnings.catch_warnings():
      # MobileNet warns that any input size but its own loads the 224x224 weights: we want those.
      warnings.filterwarnings("ignore", message=".*input_shape.* is undefined or non-square")
      return application(include_top=False, weights=weights, input_shape=(None, None, 3))
  except Exception as error:
    if weights_file is None and "URL fetch failure" in str(error):
      raise JaxsegError(f"cannot download ImageNet weights (no network?); "
                        f"pass --keras-weights FILE ({error})") from None
    if weights_file is not None and isinstance(error, (OSError, ValueError)):
      reason = " ".join(str(error).split())
      raise JaxsegError(f"{weights_file}: Keras {application.__name__} cannot load it "
                        f"({reason})") from None
    raise


def largest_difference(encoder, model, backbone: str) -> float:
  """Largest feature-map difference between port and Keras, relative to Keras's largest."""
  images = np.random.default_rng(0).uniform(0, 255, CHECK_SHAPE).astype(np.float32)
  encoder.eval()
  ported = encoder(images)
  expected = keras_features(model, backbone, images)
  return max(float(np.max(np.abs(np.asarray(p) - e)) / np.max(np.abs(e)))
             for p, e in zip(ported, expected, strict=True))


@command
def main(argv=None) -> None:
  args = parse_args(argv)
  # Keras on its JAX backend, no TensorFlow needed; read when Keras is first imported.
  os.environ.setdefault("KERAS_BACKEND", "jax")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  source = "imagenet" if args.keras_weights is None else args.keras_weights.name
  encoder = create_encoder(args.backbone, rngs=nnx.Rngs(0))
  model = keras_model(args.backbone, args.keras_weights)
  weights = keras_layer_weights(model)
  try:
    load_layer_weights(encoder, weights)
  except WeightsMismatchError as error:
    raise JaxsegError(f"{source}: {error}") from None
  if hasattr(encoder, "use_imagenet_rescale") and args.keras_weights is None:
    # Keras adds EfficientNet's extra ImageNet rescaling for weights="imagenet" only, not for
    # a file of the same weights: mirror the model that was built. Training turns it on
    # from the file's "imagenet" entry.
    encoder.use_imagenet_rescale()
  difference = largest_difference(encoder, model, args.backbone)
  if not difference <= TOLERANCE:
    raise JaxsegError(f"{args.backbone}: the port with these weights differs from Keras by "
                      f"{difference:.2e} of the largest feature (allowed {TOLERANCE:.0e})")
  out = args.out or imagenet_weights_path(default_cache_dir(), args.backbone)
  meta = {"backbone": args.backbone, "source": source, "imagenet": not args.not_imagenet}
  save_weights(out, weights, meta)
  count = sum(int(np.size(w)) for named in weights.values() for w in named.values())
  print(f"{out}: {args.backbone} weights from {source}, {count:,} values, "
        f"feature maps within {difference:.1e} of Keras")

