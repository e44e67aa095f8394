"""Throughput of the engine's steps: ``python -m jaxseg.bench --backbone all --precision bf16``.

For each backbone, batch size and precision it times the jitted steps that training and
prediction use (`jaxseg.engine.Steps`): the train step (forward, soft Jaccard loss, gradient,
Adam update) with augmentation off, so that it measures the model, and the probability step.
Batches are random, made once and placed on the devices before timing. Reported: compile
time of the train step (lower + compile) and its first call, images/s of both steps, FLOPs
per image from XLA's cost analysis, achieved TFLOP/s against one bf16 matmul timed by the
same command, and peak device memory. ``--peer smp,keras`` times the same shapes in
segmentation_models_pytorch and in a Keras 3 U-Net, where installed, and adds jaxseg/peer.
jaxseg and its peers take turns, run by run, so that a host whose speed drifts (a shared
machine, a CPU that throttles) slows both sides of a ratio alike.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg import engine
from jaxseg.bench.peers import PEERS, check_target, load_peers
from jaxseg.bench.timing import (
  PHASES,
  Program,
  Timing,
  jitted_program,
  measure_together,
  peak_memory_bytes,
  round_ratio,
  steps_per_second,
  xla_flops,
)
from jaxseg.cli import ArgumentParser, command
from jaxseg.config import COMPUTE_DTYPES, Config
from jaxseg.data.augment import Augment
from jaxseg.data.masks import CELL, CLASS_NAMES, RUN_TARGETS
from jaxseg.errors import JaxsegError, refuse_existing
from jaxseg.models import DECODERS, MODELS
from jaxseg.platform import compiler_options, resolve_kernels

NO_AUGMENT = Augment(rotate_prob=0.0, hflip_prob=0.0, vflip_prob=0.0, scale_prob=0.0)
PRECISIONS = tuple(COMPUTE_DTYPES)


def random_batch(batch_size: int, image_size: int, seed: int = 0, *,
                 target: str = "nuclei") -> tuple[np.ndarray, np.ndarray]:
  """Images and masks of the training pipeline's shapes and dtypes (uint8 RGB; uint8 0/1 of a
  binary target, class values of ``cell``)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
  values = len(CLASS_NAMES) if target == CELL else 2
  masks = rng.integers(0, values, (batch_size, image_size, image_size), dtype=np.uint8)
  return images, masks


def jaxseg_steps(config: Config, images: np.ndarray, masks: np.ndarray) -> tuple:
  """The engine's train and probability steps for ``config``, as `jaxseg.train` builds them,
  the placed state and each step's inputs: the arguments of `jitted_program`."""
  # A learning-rate schedule's values do not change a step's cost: any length serves.
  model, state = engine.build(config, resolve_kernels(config.kernels), steps_per_epoch=1)
  steps = engine.Steps(model, config.augment, config.batch_size)
  images, masks = steps.batch(images, masks)
  key = jax.random.key(config.seed)
  return (steps.train, steps.probabilities, steps.place(state), (images, masks, key), (images,))


def portable_flops(config: Config, images: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
  """FLOPs of one train step and one probability step of ``config`` on these batches, by XLA's
  cost analysis of the steps with the portable kernels (`jaxseg.models.kernels`), the same on
  every backend: the CPU forms compute the same, some with a loop over kernel taps, whose body
  the analysis counts once. Lowered from shapes alone: nothing is initialised or compiled."""
  model, state = engine.build(config, "xla", abstract=True, steps_per_epoch=1)
  steps = engine.Steps(model, config.augment, config.batch_size)
  state = steps.placement(state)
  images, masks = steps.batch(images, masks)
  key = jax.random.key(config.seed)
  return (xla_flops(steps.train.lower(state, images, masks, key)),
          xla_flops(steps.probabilities.lower(state, images)))


def jaxseg_program(config: Config, images: np.ndarray, masks: np.ndarray) -> Program:
  """The engine's train and probability steps for ``config``, compiled and called once, with
  the devices' peak memory after those calls (before any peer allocates on them)."""
  program = jitted_program(*jaxseg_steps(config, images, masks), config.batch_size,
                           portable_flops(config, images, masks))
  program.fields["peak_memory_bytes"] = peak_memory_bytes()
  return program


def matmul_peak_tflops(size: int, timing: Timing) -> float:
  """TFLOP/s of one square bf16 matmul on one device: the chip's practical matrix peak."""
  a, b = jax.random.normal(jax.random.key(0), (2, size, size), jnp.bfloat16)
  matmul = jax.jit(jnp.matmul)
  return 2 * size**3 * steps_per_second(lambda: matmul(a, b), jax.block_until_ready, timing) / 1e12


def add_rates(result: dict, peak_tflops: float) -> dict:
  """Achieved TFLOP/s of each step and its share of the devices' bf16 matmul peak."""
  for step in ("train", "infer"):
    gflop, rate = result.get(f"{step}_gflop_per_image"), result.get(f"{step}_images_per_s")
    tflops = gflop * rate / 1e3 if gflop and rate else None
    result[f"{step}_tflops"] = tflops
    result[f"{step}_peak_share"] = tflops / (peak_tflops * jax.device_count()) if tflops else None
  return result


def run(args: argparse.Namespace, timing: Timing) -> dict:
  """Every configuration of ``args``; the JSON file, if any, is rewritten after each row."""
  check_target(args.peer, args.target)
  peers, versions = load_peers(args.peer, "jaxseg.bench")
  matmul_size = args.matmul_size or (2048 if jax.devices()[0].platform == "cpu" else 8192)
  peak = matmul_peak_tflops(matmul_size, timing)
  print(f"jaxseg.bench: {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"bf16 matmul {matmul_size}^3: {peak:.3g} TFLOP/s; augmentation off", flush=True)
  base = Config(unet_filters=args.unet_filters, decoder=args.decoder, image_size=args.image_size,
                target=args.target, augment=NO_AUGMENT, weights="none")
  result = {
    "command": "python -m jaxseg.bench " + " ".join(args.argv),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "environment": environment(versions),
    "settings": {
      "image_size": base.image_size, "decoder": base.decoder, "unet_filters": base.unet_filters,
      "target": base.target, "output_channels": base.out_channels,
      "dropout": base.dropout, "learning_rate": base.learning_rate, "weights": "random",
      "augmentation": "off", "steps": timing.steps, "repeats": timing.repeats,
      "warmup": timing.warmup,
    },
    "matmul_peak": {"size": matmul_size, "dtype": "bfloat16", "tflops": peak},
    "rows": [],
  }
  print_header(list(peers))
  for backbone in args.backbone:
    for batch_size in args.batch_size:
      for precision in args.precision:
        config = base.replace(backbone=backbone, batch_size=batch_size, precision=precision)
        row = measure_row(config, peers, peak, timing)
        gc.collect()  # free this configuration's executables and buffers before the next
        print_row(row, list(peers))
        record_row(result, row, args.json)
  return result


def measure_row(config: Config, peers: dict, peak: float, timing: Timing) -> dict:
  """jaxseg and each peer on one configuration, timed in turns (`measure_together`), so that
  ``ratio`` (jaxseg's images/s over the peer's, `round_ratio`) compares runs of the same
  moments. A peer's failure to set up (out of memory, say) is recorded in its place; jaxseg's
  is raised."""
  images, masks = random_batch(config.batch_size, config.image_size, target=config.target)
  programs = {"jaxseg": jaxseg_program(config, images, masks)}
  row = {"backbone": config.backbone, "batch_size": config.batch_size,
         "precision": config.precision, "jaxseg": programs["jaxseg"].fields, "peers": {},
         "ratio": {}}
  try:
    for name, peer in peers.items():
      if not peer.supports(config.backbone):
        continue
      try:
        programs[name] = peer.program(config.backbone, images, masks,
                                      precision=config.precision)
      except Exception as error:  # a foreign library may fail in any way
        row["peers"][name] = {"error": f"{type(error).__name__}: {error}"}
        print(f"jaxseg.bench: peer {name} failed on {config.backbone}: {error}", file=sys.stderr)
    measure_together(programs, timing)
  finally:
    for program in programs.values():
      program.close()
  add_rates(row["jaxseg"], peak)
  for name, program in programs.items():
    if name != "jaxseg":
      row["peers"][name] = add_rates(program.fields, peak)
      row["ratio"][name] = {phase: round_ratio(row["jaxseg"], program.fields, phase)
                            for phase in PHASES}
  return row


def record_row(result: dict, row: dict, path: Path | None) -> None:
  """Add ``row`` to ``result`` with the load average now, and rewrite the JSON file, if any:
  a run cut short still leaves the rows it finished."""
  result["rows"].append(row)
  result["environment"]["load_average"]["end"] = os.getloadavg()[0]
  if path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def environment(peer_versions: dict) -> dict:
  import flax
  import optax

  device = jax.devices()[0]
  return {
    "platform": device.platform,
    "device_kind": device.device_kind,
    "device_count": jax.device_count(),
    "cpu": cpu_model(),
    # Other work on the host slows every number: the 1-minute load before and after.
    "load_average": {"start": os.getloadavg()[0], "end": None},
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": importlib.metadata.version("jaxlib"),
    "flax": flax.__version__,
    "optax": optax.__version__,
    "numpy": np.__version__,
    "peers": peer_versions,
    # Allocator and compiler settings, which both libraries in this process run under.
    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    # jaxseg's steps', in the kernels a bench run resolves for this platform
    "kernels": resolve_kernels("auto"),
    "compiler_options": compiler_options(resolve_kernels("auto")),
  }


def cpu_model() -> str:
  cpuinfo = Path("/proc/cpuinfo")
  if cpuinfo.exists():
    for line in cpuinfo.read_text().splitlines():
      if line.startswith("model name"):
        return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
  return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


# Table columns: heading, field, format. Each peer adds its images/s and the ratios.
COLUMNS = (
  ("compile s", "compile_s", "{:.1f}".format),
  ("1st call s", "first_call_s", "{:.2f}".format),
  ("train img/s", "train_images_per_s", "{:.1f}".format),
  ("infer img/s", "infer_images_per_s", "{:.1f}".format),
  ("train GF/img", "train_gflop_per_image", "{:.3g}".format),
  ("infer GF/img", "infer_gflop_per_image", "{:.3g}".format),
  ("train TF/s", "train_tflops", "{:.3g}".format),
  ("% peak", "train_peak_share", "{:.1%}".format),
  ("peak MiB", "peak_memory_bytes", lambda v: f"{v / 2**20:.0f}"),
)
PEER_COLUMNS = (("train img/s", "train_images_per_s", "{:.1f}".format),
                ("infer img/s", "infer_images_per_s", "{:.1f}".format))
RATIO = "{:.2f}".format


def _cell(value, fmt, width: int) -> str:
  return f"{'-' if value is None else fmt(value):>{width}}"


def print_header(peers: list[str]) -> None:
  head = f"{'backbone':15s}{'batch':>6s}{'prec':>6s}" + "".join(f"{h:>13s}" for h, _, _ in COLUMNS)
  for name in peers:
    head += "".join(f"{name + ' ' + h:>19s}" for h, _, _ in PEER_COLUMNS)
    head += f"{'x ' + name + ' train':>15s}{'x ' + name + ' infer':>15s}"
  print(head, flush=True)


def print_row(row: dict, peers: list[str]) -> None:
  """One configuration; ``-`` where a value is missing (no peer for the plain U-Net)."""
  line = f"{row['backbone']:15s}{row['batch_size']:6d}{row['precision']:>6s}"
  line += "".join(_cell(row["jaxseg"][field], fmt, 13) for _, field, fmt in COLUMNS)
  for name in peers:
    peer, ratio = row["peers"].get(name, {}), row["ratio"].get(name, {})
    line += "".join(_cell(peer.get(field), fmt, 19) for _, field, fmt in PEER_COLUMNS)
    line += "".join(_cell(ratio.get(step), RATIO, 15) for step in ("train", "infer"))
  print(line, flush=True)


def _names(choices):
  def parse(text: str) -> list[str]:
    names = list(choices) if text == "all" else [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in choices]
    if unknown:
      raise argparse.ArgumentTypeError(f"{unknown[0]!r}: choose from all, {', '.join(choices)}")
    return names
  return parse


def _positive_ints(text: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v]
  except ValueError:
    values = []
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers separated by commas")
  return values


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.bench", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--backbone", type=_names(MODELS), default="all",
                      help="all, or names separated by commas")
  parser.add_argument("--batch-size", type=_positive_ints, default="18,64")
  parser.add_argument("--precision", type=_names(PRECISIONS), default="fp32,bf16")
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--decoder", choices=DECODERS, default="paper",
                      help="smp: the decoder in segmentation_models' shape, the peers' work")
  parser.add_argument("--unet-filters", type=int, default=64, help="plain U-Net's first width")
  parser.add_argument("--target", choices=RUN_TARGETS, default="nuclei",
                      help="cell: the 3-class model (a 3-channel head, the softmax loss); both "
                      "binary targets cost the same")
  parser.add_argument("--steps", type=int, default=Timing.steps, help="steps per timed run")
  parser.add_argument("--repeats", type=int, default=Timing.repeats,
                      help="timed runs; the median counts")
  parser.add_argument("--warmup", type=int, default=Timing.warmup, help="untimed steps first")
  parser.add_argument("--peer", type=_names(PEERS), default="", help="smp, keras or both")
  parser.add_argument("--matmul-size", type=int,
                      help="side of the bf16 matmul that measures the peak (8192; 2048 on CPU)")
  parser.add_argument("--json", type=Path, help="write the results here")
  args = parser.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  return args


@command
def main(argv=None) -> dict:
  args = parse_args(argv)
  refuse_existing("--json", args.json, "jaxseg.bench")
  # Allocate GPU memory as needed, so that peak memory means something and a torch peer in
  # this process finds room; JAX reads it when it first touches a device.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  if min(args.steps, args.repeats) < 1 or args.warmup < 0:
    raise JaxsegError("--steps and --repeats must be at least 1, --warmup at least 0")
  result = run(args, Timing(steps=args.steps, repeats=args.repeats, warmup=args.warmup))
  if args.json:
    print(f"jaxseg.bench: wrote {args.json}")
  return result

