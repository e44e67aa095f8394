"""Where a train step spends its time: ``python -m jaxseg.bench.profile --backbone vgg19``.

It compiles the engine's train step as `jaxseg.bench` does (random batch, random weights),
runs ``--warmup`` untraced steps, then ``--steps`` steps under `jax.profiler.trace` and reads
the trace back: XLA's operations (the thunks its CPU runtime runs) by time spent in them,
grouped by kind (convolution, fusion, copy, ...) and by the thread pool that ran them; the
steps' wall time beside the time at least one operation ran (the rest is host work, dispatch
and waiting); and per step the process's user and system CPU seconds, minor page faults and
threads. Settings are the preset's (``quick`` unless ``--preset``) with any setting flag of
`jaxseg.train` on top (``--backbone vgg19 --batch-size 8``); augmentation is part of the step
as in training. Method and results: docs/performance.md.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import collections
import json
import os
import re
import resource
import tempfile
import time
from pathlib import Path

import jax

from jaxseg import flags
from jaxseg.bench.peers import PeerUnavailable, check_target, load_peer
from jaxseg.bench.steps import jaxseg_steps, random_batch
from jaxseg.cli import ArgumentParser, command
from jaxseg.config import Config
from jaxseg.configs import PRESETS, get_preset
from jaxseg.errors import JaxsegError, refuse_existing
from jaxseg.platform import compiler_options, resolve_kernels


def thread_names() -> collections.Counter:
  """This process's threads by name, numbers dropped (``tf_XLAEigen``: XLA's intra-op pool)."""
  names = collections.Counter()
  for task in Path("/proc/self/task").iterdir():
    try:
      names[re.sub(r"[\d/_-]+$", "", (task / "comm").read_text().strip())] += 1
    except OSError:  # the thread ended
      pass
  return names


def _usage() -> tuple[float, float, int, int]:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime, usage.ru_stime, usage.ru_minflt, usage.ru_majflt


def _usage_since(before: tuple, seconds: float) -> dict:
  after = _usage()
  return {"wall_s": seconds, "user_s": after[0] - before[0], "sys_s": after[1] - before[1],
          "minor_faults": after[2] - before[2], "major_faults": after[3] - before[3],
          "threads": len(os.listdir("/proc/self/task"))}


def op_kind(name: str) -> str:
  """An HLO instruction's kind from its name: ``loop_add_fusion.12`` -> ``loop_add_fusion``."""
  return re.sub(r"(\.\d+)+$", "", name)


def xla_ops(profile: jax.profiler.ProfileData) -> tuple[list[dict], float]:
  """XLA's operations in ``profile``: each with the thread pool that ran it, its start and its
  self time in seconds (an operation's time less that of operations nested in it on the same
  thread, so no time counts twice); and the seconds at least one of them ran (their union)."""
  ops, intervals = [], []
  for plane in profile.planes:
    for line in plane.lines:
      events = sorted(((e.start_ns, e.duration_ns, dict(e.stats)["hlo_op"])
                       for e in line.events if "hlo_op" in dict(e.stats)),
                      key=lambda event: (event[0], -event[1]))
      pool = re.sub(r"/-?\d+$", "", line.name)
      open_ops: list[dict] = []  # the enclosing operations of the current one
      for start, duration, name in events:
        while open_ops and start >= open_ops[-1]["end"]:
          open_ops.pop()
        op = {"name": name, "pool": pool, "start": start, "end": start + duration,
              "self_s": duration / 1e9}
        if open_ops:
          open_ops[-1]["self_s"] -= duration / 1e9
        open_ops.append(op)
        ops.append(op)
        intervals.append((start, start + duration))
  return ops, _union_seconds(intervals)


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
  total, end = 0.0, float("-inf")
  for start, stop in sorted(intervals):
    if stop > end:
      total += stop - max(start, end)
      end = stop
  return total / 1e9


def _ranked(ops: list[dict], key, total: float, steps: int) -> list[dict]:
  """Self time per step and share of all operations' time, by ``key``, largest first."""
  seconds, count = collections.Counter(), collections.Counter()
  for op in ops:
    seconds[key(op)] += op["self_s"]
    count[key(op)] += 1
  return [{"name": name, "ms_per_step": 1e3 * s / steps, "share": s / total if total else 0.0,
           "calls_per_step": count[name] / steps} for name, s in seconds.most_common()]


def trace_steps(train, state, inputs: tuple, steps: int) -> tuple[list[dict], list[dict], float]:
  """Run ``steps`` train steps under the profiler: (per-step usage, XLA's operations, the
  seconds they ran in)."""
  per_step = []
  with tempfile.TemporaryDirectory(prefix="jaxseg-profile-") as log_dir:
    with jax.profiler.trace(log_dir):
      for _ in range(steps):
        before, start = _usage(), time.perf_counter()
        state, aux = train(state, *inputs)
        jax.block_until_ready((state, aux))
        per_step.append(_usage_since(before, time.perf_counter() - start))
    traces = sorted(Path(log_dir).rglob("*.xplane.pb"))
    if not traces:
      raise JaxsegError(f"the profiler wrote no trace into {log_dir}")
    ops, busy = xla_ops(jax.profiler.ProfileData.from_file(str(traces[-1])))
  return per_step, ops, busy


def profile(config: Config, steps: int, warmup: int) -> dict:
  """Compile, warm up and trace ``config``'s train step; everything `print_report` shows."""
  images, masks = random_batch(config.batch_size, config.image_size, target=config.target)
  train, _, state, inputs, _ = jaxseg_steps(config, images, masks)
  before, start = _usage(), time.perf_counter()
  state, aux = train(state, *inputs)
  jax.block_until_ready((state, aux))
  first_call = _usage_since(before, time.perf_counter() - start)
  for _ in range(warmup):
    state, aux = train(state, *inputs)
  jax.block_until_ready((state, aux))
  per_step, ops, busy = trace_steps(train, state, inputs, steps)
  wall = sum(step["wall_s"] for step in per_step)
  op_seconds = sum(op["self_s"] for op in ops)
  return {
    "config": {"backbone": config.backbone, "batch_size": config.batch_size,
               "image_size": config.image_size, "precision": config.precision,
               "unet_filters": config.unet_filters, "decoder": config.decoder,
               "preset": config.preset},
    "environment": {"jax": jax.__version__, "device": jax.devices()[0].device_kind,
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
                    "xla_flags": os.environ.get("XLA_FLAGS", ""),
                    "kernels": resolve_kernels(config.kernels),
                    "compiler_options": compiler_options(resolve_kernels(config.kernels)),
                    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")},
    "first_call": first_call,  # compile (or compilation cache) and the first step
    "steps": per_step,
    "wall_s": wall,
    "ops_busy_s": busy,  # some operation ran
    "ops_self_s": op_seconds,  # summed over threads: above busy where operations overlap
    "images_per_s": config.batch_size * len(per_step) / wall,
    "threads": dict(thread_names()),
    "by_kind": _ranked(ops, lambda op: op_kind(op["name"]), op_seconds, len(per_step)),
    "by_op": _ranked(ops, lambda op: op["name"], op_seconds, len(per_step)),
    "by_pool": _ranked(ops, lambda op: op["pool"], op_seconds, len(per_step)),
  }


# XLA's convolutions and matmuls: YNNPACK's fusions, Eigen's dots and convolutions (not the
# `convert_...` fusions of dtype conversions).
CONVOLUTION_KINDS = re.compile(r"(ynn_fusion|dot|convolution|conv_general_dilated)\b")


def convolution_ms(result: dict) -> float:
  """Milliseconds a step that XLA spent in convolutions and matmuls, as wall time: their share
  of all operations' time, times the time some operation ran (operations may overlap)."""
  share = sum(row["share"] for row in result["by_kind"] if CONVOLUTION_KINDS.match(row["name"]))
  return 1e3 * share * result["ops_busy_s"] / len(result["steps"])


def smp_peer(config: Config):
  """The smp peer module for ``config``, checked before any step is compiled."""
  check_target(["smp"], config.target)
  if config.precision != "fp32" or config.decoder != "smp":
    raise JaxsegError("--peer smp profiles fp32 and --decoder smp, the peer's own decoder")
  try:
    peer = load_peer("smp")
  except PeerUnavailable as error:
    raise JaxsegError(f"--peer smp: segmentation_models_pytorch does not import ({error})") from None
  if not peer.supports(config.backbone):
    raise JaxsegError(f"--peer smp: no smp encoder for {config.backbone}")
  return peer


def print_report(result: dict, top: int) -> None:
  c, steps = result["config"], result["steps"]
  n = len(steps)
  print(f"{c['backbone']} U-Net, batch {c['batch_size']}, {c['image_size']} px, {c['precision']}"
        f"; {n} traced steps; {result['environment']['device']}, "
        f"load average {result['environment']['load_average']:.2f}")
  first = result["first_call"]
  print(f"first call (compile and step): {first['wall_s']:.1f} s wall, {first['user_s']:.1f} s user, "
        f"{first['sys_s']:.1f} s sys, {first['minor_faults']:,} minor faults")
  wall, busy = result["wall_s"], result["ops_busy_s"]
  print(f"step: {1e3 * wall / n:.0f} ms wall ({result['images_per_s']:.2f} img/s); some XLA "
        f"operation running {1e3 * busy / n:.0f} ms ({busy / wall:.0%}), none "
        f"{1e3 * (wall - busy) / n:.0f} ms; operations' time summed over threads "
        f"{1e3 * result['ops_self_s'] / n:.0f} ms")
  mean = {key: sum(step[key] for step in steps) / n
          for key in ("user_s", "sys_s", "minor_faults", "major_faults")}
  print(f"per step: {mean['user_s']:.2f} s user, {mean['sys_s']:.2f} s sys, "
        f"{mean['minor_faults']:,.0f} minor and {mean['major_faults']:,.0f} major page faults, "
        f"{steps[-1]['threads']} threads")
  print("threads: " + ", ".join(f"{name} {count}" for name, count in
                               sorted(result["threads"].items(), key=lambda kv: -kv[1])))
  print(f"convolutions and matmuls: {convolution_ms(result):.0f} ms a step")
  if "peer" in result:
    peer = result["peer"]
    print(f"smp ({peer['encoder']}, torch {peer['versions']['torch']}): step {peer['step_ms']:.0f} "
          f"ms ({peer['images_per_s']:.2f} img/s), convolutions {peer['convolution_ms']:.0f} ms")
  for title, rows, limit in (("thread pool", result["by_pool"], top),
                             ("kind", result["by_kind"], top), ("operation", result["by_op"], top)):
    print(f"\n{'by ' + title:40s}{'ms/step':>10s}{'share':>8s}{'calls':>7s}")
    for row in rows[:limit]:
      print(f"{row['name'][:39]:40s}{row['ms_per_step']:10.1f}{row['share']:8.1%}"
            f"{row['calls_per_step']:7.0f}")


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.bench.profile", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", choices=PRESETS, default="quick",
                      help="the settings under the flags (default quick)")
  parser.add_argument("--steps", type=int, default=3, help="traced steps")
  parser.add_argument("--warmup", type=int, default=2, help="untraced steps after the first")
  parser.add_argument("--top", type=int, default=15, help="rows of each table")
  parser.add_argument("--json", type=Path, help="write the results here")
  parser.add_argument("--peer", choices=["smp"],
                      help="also time segmentation_models_pytorch's step and its convolutions")
  flags.add_config_flags(parser)
  return parser.parse_args(argv)


@command(compilation_cache=True)
def main(argv=None) -> dict:
  args = parse_args(argv)
  refuse_existing("--json", args.json, "jaxseg.bench.profile")
  if args.steps < 1 or args.warmup < 0:
    raise JaxsegError("--steps must be at least 1, --warmup at least 0")
  # Random weights: the time of a step does not depend on their values.
  config = flags.apply(get_preset(args.preset), flags.overrides(args)).replace(weights="none")
  config.validate()
  peer = smp_peer(config) if args.peer else None
  result = profile(config, args.steps, args.warmup)
  result["convolution_ms"] = convolution_ms(result)
  if peer:  # the same batch, its convolutions timed by torch.profiler
    images, masks = random_batch(config.batch_size, config.image_size)
    result["peer"] = {**peer.profile_step(config.backbone, images, masks, steps=args.steps,
                                          warmup=args.warmup), "versions": peer.versions()}
  print_report(result, args.top)
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\njaxseg.bench.profile: wrote {args.json}")
  return result

