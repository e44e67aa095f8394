"""Whole training runs, start to end: ``python -m jaxseg.bench.run --peer-python PYTHON --
--backbone vgg19 --weights none --data DATA --image-size 128 --epochs 10 --batch-size 8``.

What a user waits for from typing the command to its last line, start-up and wrap-up
included: ``python -m jaxseg.train`` with the flags after ``--``, each round in a new process
and run folder, its wall time measured from outside and its phases read from its
``summary.json`` (``wall_seconds``). With ``--peer-python``, segmentation_models_pytorch's run
of the same settings (`jaxseg.bench.peers.smp_run`) in that interpreter (one where torch and
segmentation_models_pytorch are installed; jaxseg is found from this checkout), the two taking
turns round by round, so that a host whose speed drifts slows both alike. ``smp/jaxseg`` is
smp's wall time over jaxseg's, round by round: above 1, jaxseg is faster.

``--cache warm`` times runs whose compiled programs are in XLA's cache: one untimed jaxseg run
fills a cache folder of its own first. ``--cache cold`` gives every jaxseg run an empty one, as
a user's first run of a model on a machine.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxseg import train
from jaxseg.bench.steps import cpu_model
from jaxseg.bench.timing import turn_order
from jaxseg.cli import ArgumentParser, command
from jaxseg.data.masks import CELL
from jaxseg.errors import JaxsegError, refuse_existing
from jaxseg.loop import versions

REPOSITORY = Path(__file__).resolve().parents[2]


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.bench.run", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rounds", type=int, default=3, help="timed runs of each (default 3)")
  parser.add_argument("--cache", choices=("warm", "cold"), default="warm",
                      help="XLA's compilation cache: filled by an untimed run first (warm, "
                           "the default), or empty for every run (cold)")
  parser.add_argument("--peer-python", type=Path, metavar="PYTHON",
                      help="an interpreter with torch and segmentation_models_pytorch: time "
                           "smp's run of the same settings in turns with jaxseg's")
  parser.add_argument("--json", type=Path, help="write the results here")
  parser.add_argument("train_flags", nargs=argparse.REMAINDER,
                      help="-- and then python -m jaxseg.train's flags")
  args = parser.parse_args(argv)
  args.train_flags = args.train_flags[1:] if args.train_flags[:1] == ["--"] else args.train_flags
  if args.rounds < 1:
    parser.error(f"--rounds {args.rounds}: must be at least 1")
  if args.peer_python and not (args.peer_python.is_file() and os.access(args.peer_python, os.X_OK)):
    parser.error(f"--peer-python {args.peer_python}: not an executable file")
  taken = [flag for flag in ("--workdir", "--resume") if flag in args.train_flags]
  if taken:
    parser.error(f"{taken[0]}: each round trains into a new run folder of its own")
  return args


def jaxseg_round(flags: list[str], folder: Path, cache: Path) -> dict:
  """One ``python -m jaxseg.train`` run into ``folder``: its wall time, phases, test Dice."""
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache)}
  wall = _timed([sys.executable, "-m", "jaxseg.train", *flags, "--workdir", str(folder)], env)
  summary = json.loads((folder / "summary.json").read_text())
  return {"wall_s": wall, "wall_seconds": summary["wall_seconds"],
          "test_dice": summary["test"]["dice"], "best_epoch": summary["best_epoch"]}


def peer_round(python: Path, config_file: Path, out: Path) -> dict:
  """One smp run of the settings in ``config_file``: its wall time, phases, test Dice."""
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
  wall = _timed([str(python), "-m", "jaxseg.bench.peers.smp_run", str(config_file), str(out)], env)
  result = json.loads(out.read_text())
  return {"wall_s": wall, "wall_seconds": result["wall_seconds"],
          "test_dice": result["test"]["dice"], "best_epoch": result["best_epoch"],
          "versions": result["versions"]}


def _timed(argv: list[str], env: dict) -> float:
  start = time.perf_counter()
  done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True, check=False)
  wall = time.perf_counter() - start
  if done.returncode:
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise JaxsegError(f"{Path(argv[0]).name} {' '.join(argv[1:3])} failed "
                      f"(status {done.returncode}): {last}")
  return round(wall, 2)


def run(args: argparse.Namespace) -> dict:
  config, _ = train.settings(train.parse_args(args.train_flags))
  if args.peer_python and config.target == CELL:
    raise JaxsegError("--peer-python: smp's run is binary; measure --target cell alone")
  names = ["jaxseg"] + (["smp"] if args.peer_python else [])
  rounds = {name: [] for name in names}
  with tempfile.TemporaryDirectory(prefix="jaxseg-bench-run-") as scratch:
    scratch = Path(scratch)
    config_file = scratch / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    warm_cache = scratch / "xla"
    if args.cache == "warm":
      print("filling the compilation cache (untimed run)", file=sys.stderr)
      jaxseg_round(args.train_flags, scratch / "warm-up", warm_cache)
    for turn in range(args.rounds):
      for name in turn_order(names, turn):
        print(f"round {turn + 1}/{args.rounds}: {name}", file=sys.stderr)
        if name == "jaxseg":
          cache = warm_cache if args.cache == "warm" else scratch / f"xla-{turn}"
          rounds[name].append(jaxseg_round(args.train_flags, scratch / f"run-{turn}", cache))
        else:
          rounds[name].append(peer_round(args.peer_python, config_file,
                                         scratch / f"smp-{turn}.json"))
  result = {
    "command": "python -m jaxseg.bench.run " + " ".join(_argv(args)),
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                "python": platform.python_version(), "load_average_end": os.getloadavg()},
    "versions": versions(),
    "cache": args.cache,
    "config": config.to_dict(),
    "rounds": rounds,
    "median_wall_s": {name: statistics.median(r["wall_s"] for r in runs)
                      for name, runs in rounds.items()},
  }
  if "smp" in rounds:
    result["smp_over_jaxseg"] = [round(p["wall_s"] / j["wall_s"], 3)
                                 for j, p in zip(rounds["jaxseg"], rounds["smp"])]
  return result


def _argv(args: argparse.Namespace) -> list[str]:
  parts = ["--rounds", str(args.rounds), "--cache", args.cache]
  if args.peer_python:
    parts += ["--peer-python", "PYTHON"]
  return [*parts, "--", *args.train_flags]


def print_table(result: dict) -> None:
  print(f"{'':8s}{'wall s':>9s}{'start-up':>10s}{'epochs':>9s}{'wrap-up':>9s}{'test dice':>11s}")
  for name, runs in result["rounds"].items():
    for index, r in enumerate(runs, 1):
      wall = r["wall_seconds"]
      print(f"{name + ' ' + str(index):8s}{r['wall_s']:9.1f}{sum(wall['start_up'].values()):10.1f}"
            f"{wall['epochs']:9.1f}{sum(wall['wrap_up'].values()):9.1f}{r['test_dice']:11.4f}")
  if "smp_over_jaxseg" in result:
    print("smp/jaxseg by round: " + ", ".join(f"{v:.2f}" for v in result["smp_over_jaxseg"]))


@command
def main(argv=None) -> dict:
  args = parse_args(argv)
  refuse_existing("--json", args.json, "jaxseg.bench.run")
  result = run(args)
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
  print_table(result)
  return result
