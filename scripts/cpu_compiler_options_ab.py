"""jaxseg's train and predict steps compiled twice in one process, with XLA's default options
and with `jaxseg.engine.compiler_options()`, timed call by call in alternating order, so that
the machine's drift falls on both alike (change 15 of docs/cpu-performance.md):

  python scripts/cpu_compiler_options_ab.py --rounds 8 --json out.json unet vgg19 ...

smp decoder, batch 8, 128x128, fp32, random weights. Prints each step's median times and
the median of the per-round ratios (options / default).
"""

import json
import os
import statistics
import time
from pathlib import Path

import jax

from jaxseg import engine, flags
from jaxseg.bench.steps import jaxseg_steps, random_batch
from jaxseg.configs import get_preset
from jaxseg.errors import ArgumentParser, JaxsegError, cli, refuse_existing
from jaxseg.models.backbones import ENCODERS


def compiled_pair(jitted, donate: bool, *args) -> dict:
  default = jax.jit(jitted.__wrapped__, donate_argnums=0 if donate else ())
  return {"default": default.lower(*args).compile(),
          "options": jitted.lower(*args).compile()}  # jitted carries the options


def call(compiled, state, inputs, train: bool):
  """One step; the state it leaves (a train step donates the one it was given)."""
  if train:
    state, _ = compiled(state, *inputs)
    return jax.block_until_ready(state)
  jax.block_until_ready(compiled(state, *inputs))
  return state


@cli
def main(argv=None) -> None:
  parser = ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("backbones", nargs="+", choices=["unet", *ENCODERS])
  parser.add_argument("--rounds", type=int, default=8)
  parser.add_argument("--json", type=Path, required=True)
  args = parser.parse_args(argv)
  refuse_existing("--json", args.json, "cpu_compiler_options_ab.py")
  if args.rounds < 1:
    raise JaxsegError(f"--rounds {args.rounds}: must be at least 1")
  result = {"options": engine.compiler_options(), "jax": jax.__version__, "steps": {}}
  for backbone in args.backbones:
    config = flags.apply(get_preset("quick"), {"backbone": backbone, "decoder": "smp",
                                               "batch_size": 8, "image_size": 128})
    train, infer, state, train_inputs, infer_inputs = jaxseg_steps(config, *random_batch(8, 128))
    for name, jitted, inputs in (("train", train, train_inputs), ("infer", infer, infer_inputs)):
      pair = compiled_pair(jitted, name == "train", state, *inputs)
      for compiled in (*pair.values(), *pair.values()):  # warm-up
        state = call(compiled, state, inputs, name == "train")
      seconds = {arm: [] for arm in pair}
      for round_ in range(args.rounds):
        for arm in (("default", "options") if round_ % 2 == 0 else ("options", "default")):
          start = time.perf_counter()
          state = call(pair[arm], state, inputs, name == "train")
          seconds[arm].append(time.perf_counter() - start)
      ratios = [a / b for a, b in zip(seconds["options"], seconds["default"])]
      result["steps"][f"{backbone}/{name}"] = {
        "default_ms": [1e3 * s for s in seconds["default"]],
        "options_ms": [1e3 * s for s in seconds["options"]],
        "ratio_median": statistics.median(ratios), "load_average": os.getloadavg()[0]}
      print(f"{backbone} {name}: default {1e3 * statistics.median(seconds['default']):.0f} ms, "
            f"options {1e3 * statistics.median(seconds['options']):.0f} ms, ratio "
            f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]", flush=True)
  args.json.parent.mkdir(parents=True, exist_ok=True)
  with open(args.json, "x") as file:
    json.dump(result, file, indent=2)


if __name__ == "__main__":
  main()
