"""Export a trained run as a program that runs without jaxseg:
``python -m jaxseg.export --run RUN --format stablehlo|onnx --out FILE``.

The exported function takes uint8 RGB images at the run's image size, NHWC, any batch size,
applies the run's brightness and contrast enhancement (a 256-entry lookup table) and the
network, whose encoder scales its input itself, and returns float32 probabilities of the
run's target, (batch, size, size), or of a 3-class run's background, cytoplasm and nucleus,
(batch, size, size, 3). Bring an image to that size first as training did
(`cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)`). CLAHE runs in OpenCV on
the host and cannot be exported.

- ``stablehlo``: `jax.export` serialisation, weights inside, lowered for CPU and CUDA
  (``--platforms``); `jax.export.deserialize` loads it and ``.call(images)`` runs it, with
  jax alone.
- ``onnx``: through jax2onnx (``pip install -e ".[onnx]"``); checked on export by running a
  random batch through onnxruntime and JAX, the largest difference printed.

Beside FILE, FILE.json records the target, classes, the output's shape and meaning, image
size, preprocessing, how a pixel's class is decided (threshold or argmax), backbone and the
jaxseg and jax versions. Neither file is ever written over.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseg.cli import ArgumentParser, command
from jaxseg.config import Config
from jaxseg.data.enhance import lookup_table
from jaxseg.data.masks import CELL, CLASS_NAMES, TARGET_CLASSES
from jaxseg.engine import probabilities
from jaxseg.errors import JaxsegError, write_failure
from jaxseg.inference import TrainedModel
from jaxseg.outputs import write_atomically

FORMATS = ("stablehlo", "onnx")
# What a StableHLO export runs on: JAX lowers it for each without needing the device.
PLATFORMS = ("cpu", "cuda")
THRESHOLD = 0.5  # what evaluation and `jaxseg.predict` call the target


def _load(run: Path) -> tuple[Config, nnx.Module]:
  """The run's config and its best checkpoint as an eval-mode network in the portable kernels
  (`jaxseg.models.kernels`): an export runs on any platform it is lowered for."""
  trained = TrainedModel(run, kernels="xla")
  return trained.config, trained.network()


def serving_function(config: Config, network: nnx.Module) -> Callable[[jax.Array], jax.Array]:
  """uint8 RGB images (B, H, W, 3) -> target probabilities (B, H, W), or class probabilities
  (B, H, W, 3) of a 3-class run, as `jaxseg.predict` computes them from images already at the
  run's size."""
  if config.enhance.clahe:
    raise JaxsegError("enhance.clahe: CLAHE runs in OpenCV on the host and cannot be exported; "
                      "export a run trained without it")
  table = jnp.asarray(lookup_table(config.enhance)) if config.enhance.active else None
  graph, state = nnx.split(network)

  def serve(images: jax.Array) -> jax.Array:
    if table is not None:
      images = table[images.astype(jnp.int32)]
    model = nnx.merge(graph, state)
    model.eval()  # whatever mode ``network`` was left in: BatchNorm statistics, no dropout
    return probabilities(model(images.astype(jnp.float32)))

  return serve


def input_spec(config: Config, batch) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct((batch, config.image_size, config.image_size, 3), jnp.uint8)


def export_stablehlo(config: Config, network: nnx.Module,
                     platforms: tuple[str, ...] = PLATFORMS) -> bytes:
  """The serialised `jax.export.Exported` of `serving_function`, batch size symbolic."""
  batch, = jax.export.symbolic_shape("batch")
  exported = jax.export.export(jax.jit(serving_function(config, network)), platforms=platforms)(
    input_spec(config, batch))
  return bytes(exported.serialize())


def export_onnx(config: Config, network: nnx.Module, *, check_batch: int = 2,
                seed: int = 0) -> tuple[bytes, float]:
  """The ONNX model of `serving_function` (batch size symbolic) and the largest difference
  between onnxruntime and JAX on a random batch of ``check_batch`` images."""
  try:
    import jax2onnx
    import onnxruntime
  except ImportError as error:
    raise JaxsegError(f"--format onnx needs jax2onnx and onnxruntime ({error}): "
                      "pip install -e \".[onnx]\"") from None
  function = serving_function(config, _without_dropout(network))
  try:
    model = jax2onnx.to_onnx(function, [input_spec(config, "batch")],
                             model_name=f"jaxseg_{config.backbone}_{config.target}")
  except Exception as error:  # jax2onnx names the JAX operation it has no rule for
    raise JaxsegError(f"jax2onnx cannot convert the {config.backbone} model: "
                      f"{_one_line(error)}") from None
  data = model.SerializeToString()
  images = np.random.default_rng(seed).integers(
    0, 256, (check_batch, config.image_size, config.image_size, 3), dtype=np.uint8)
  onnxruntime.set_default_logger_severity(3)  # errors only: no shape-merge warnings
  try:
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    ours = session.run(None, {session.get_inputs()[0].name: images})[0]
  except Exception as error:  # onnxruntime's message names the node and its operation
    raise JaxsegError(f"onnxruntime rejects the ONNX model jax2onnx made of the "
                      f"{config.backbone} model: {_one_line(error)}") from None
  difference = float(np.abs(ours - np.asarray(jax.jit(function)(images))).max())
  return data, difference


def _one_line(error: Exception, limit: int = 300) -> str:
  return f"{type(error).__name__}: {' '.join(str(error).split())[:limit]}"


def _without_dropout(network: nnx.Module) -> nnx.Module:
  """A copy of ``network`` without its dropout layers (the identity in evaluation):
  jax2onnx swaps `nnx.Dropout.__call__` for one that takes no ``rngs``."""
  network = nnx.clone(network)
  for _, module in nnx.iter_modules(network):
    for name, value in list(vars(module).items()):
      if isinstance(value, nnx.Dropout):
        setattr(module, name, None)  # the layers skip a missing dropout
  return network


def metadata(config: Config, form: str) -> dict:
  """What a program that runs the export needs to know, written beside it as JSON."""
  size = config.image_size
  output = {"dtype": "float32", "shape": ["batch", size, size],
            "meaning": f"probability of {config.target} per pixel"}
  decision = {"threshold": THRESHOLD}
  if config.target == CELL:
    output = {"dtype": "float32", "shape": ["batch", size, size, len(CLASS_NAMES)],
              "meaning": "probability of each class per pixel (softmax): channel i is class i",
              "channels": list(CLASS_NAMES)}
    decision = {"decision": "argmax over the last axis: each pixel's most probable class"}
  return {
    "format": form,
    "input": {"dtype": "uint8", "shape": ["batch", size, size, 3], "layout": "NHWC, RGB"},
    "output": output,
    "target": config.target,
    "classes": {name: value for value, name in enumerate(CLASS_NAMES)},
    # The classes each binary target covers; a 3-class run scores both of them.
    "target_classes": ({name: list(classes) for name, classes in TARGET_CLASSES.items()}
                       if config.target == CELL else list(TARGET_CLASSES[config.target])),
    "image_size": [size, size],
    "preprocessing": {
      "before": "resize to image_size by area averaging (cv2.INTER_AREA)",
      "inside": ["brightness and contrast lookup table", "the encoder's input scaling"],
      "brightness": config.enhance.brightness,
      "contrast": config.enhance.contrast,
    },
    **decision,
    "backbone": config.backbone,
    "decoder": config.decoder,
    "unet_filters": config.unet_filters,
    "precision": config.precision,
    "versions": {"jaxseg": _version("jaxseg"), "jax": jax.__version__},
  }


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def sidecar(out: Path) -> Path:
  return out.with_name(out.name + ".json")


def check_outputs(out: Path, run: Path) -> None:
  """Refuse before any work: an existing FILE or FILE.json, or FILE inside the run folder."""
  if out.resolve().is_relative_to(Path(run).resolve()):
    raise JaxsegError(f"--out {out}: inside the run folder {run}, which export reads; "
                      "choose a path outside it")
  for path in (out, sidecar(out)):
    if path.exists():
      raise JaxsegError(f"--out {out}: {path} exists; export never writes over a file")


def _write_new(path: Path, data: bytes) -> None:
  try:
    write_atomically(path, data, replace=False)  # never over a file, even one made meanwhile
  except OSError as error:
    raise JaxsegError(f"--out {path}: cannot write it: {write_failure(path, error)}") from None


def export_run(run: Path, form: str, out: Path, platforms: tuple[str, ...] = PLATFORMS) -> dict:
  """Export the best checkpoint of ``run`` into ``out`` and ``out``.json; the metadata."""
  if form not in FORMATS:
    raise JaxsegError(f"--format {form!r}: choose from {', '.join(FORMATS)}")
  check_outputs(out, run)
  config, network = _load(run)
  info = metadata(config, form)
  if form == "stablehlo":
    data = export_stablehlo(config, network, platforms)
    info["platforms"] = list(platforms)
  else:
    data, difference = export_onnx(config, network)
    info["onnxruntime_max_abs_difference"] = difference
    print(f"jaxseg.export: onnxruntime against JAX on a random batch: largest difference "
          f"{difference:.2e}")
  _write_new(out, data)
  try:
    _write_new(sidecar(out), (json.dumps(info, indent=2) + "\n").encode())
  except JaxsegError:
    out.unlink()  # an export without its description is not kept
    raise
  return info


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.export", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--run", type=Path, required=True, help="a run folder of jaxseg.train")
  parser.add_argument("--format", choices=FORMATS, default="stablehlo")
  parser.add_argument("--out", type=Path, required=True,
                      help="the file to write (a new one); FILE.json beside it")
  parser.add_argument("--platforms", default=",".join(PLATFORMS),
                      help="stablehlo: where it may run, separated by commas: cpu, cuda, rocm, tpu")
  return parser.parse_args(argv)


@command(compilation_cache=True)
def main(argv=None) -> dict:
  args = parse_args(argv)
  platforms = tuple(name for name in args.platforms.split(",") if name)
  unknown = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
  if unknown or not platforms:
    raise JaxsegError(f"--platforms {args.platforms!r}: choose from cpu, cuda, rocm, tpu")
  info = export_run(args.run, args.format, args.out, platforms)
  print(f"jaxseg.export: {info['backbone']} {info['target']} model, "
        f"{info['image_size'][0]}x{info['image_size'][1]} uint8 RGB in, probabilities out: "
        f"{args.out} ({args.out.stat().st_size / 2**20:.1f} MiB), {sidecar(args.out)}")
  return info

