"""Train a U-Net on Pap-smear images: ``python -m jaxseg.train --backbone densenet121``.

Settings come from a preset (``--preset``, by default ``paper`` on an accelerator and
``quick`` on a CPU) or a Python file (``--config FILE`` with ``get_config()``), and any flag
below overrides one of them. The run's folder keeps them all (see `jaxseg.run_folder`).
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import time
from pathlib import Path

import jax

from jaxseg import engine, flags
from jaxseg.cli import ArgumentParser, command
from jaxseg.config import Config
from jaxseg.configs import PRESETS, get_preset
from jaxseg.errors import JaxsegError
from jaxseg.interrupts import Preempted
from jaxseg.loop import train_and_evaluate
from jaxseg.phases import PhaseClock, process_seconds
from jaxseg.run_folder import RunFolder
from jaxseg.scoring import print_table


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.train", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  start = parser.add_mutually_exclusive_group()
  start.add_argument("--preset", choices=("auto", *PRESETS),
                     help="paper settings, or quick ones for a CPU (default auto: by device)")
  start.add_argument("--config", type=Path, metavar="FILE",
                     help="a Python file whose get_config() returns the settings")
  parser.add_argument("--no-augment", action="store_true",
                      help="switch augmentation off (every --augment.*-prob to 0)")
  parser.add_argument("--workdir", type=Path, help="run folder (default runs/BACKBONE-TARGET-TIME)")
  parser.add_argument("--resume", action="store_true", help="continue the run in --workdir")
  hosts = parser.add_argument_group("several hosts (jax.distributed)")
  hosts.add_argument("--coordinator", help="HOST:PORT of process 0")
  hosts.add_argument("--num-processes", type=int)
  hosts.add_argument("--process-id", type=int)
  hosts.add_argument("--distributed", action="store_true",
                     help="join a multi-host run from the cluster launcher's environment (SLURM, "
                          "Open MPI, ...) as jax.distributed detects it")
  flags.add_config_flags(parser)
  return parser.parse_args(argv)


def start_processes(args: argparse.Namespace) -> None:
  """Join the other processes of a multi-host run; must come before any JAX computation."""
  if args.coordinator is None and not args.distributed:
    return
  # CPU hosts (and the tests) need a collectives library; GPUs use NCCL regardless.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  # Connect the device groups now, while the processes are in step: gloo gives up when one
  # process reaches its first collective over a set of devices more than 30 s after another
  # (say, a slower compile of the train step, or restoring a checkpoint after a slower start),
  # and reuses the connections after. The training mesh of all devices and Orbax's groups of
  # one device per process are different sets: each is connected.
  engine.sync_processes()


def settings(args: argparse.Namespace) -> tuple[Config, Path]:
  """The config and run folder: a preset or file with the flags on top, or the run resumed
  with the flags checked against it."""
  changes = flags.overrides(args)
  if args.no_augment:
    changes.update({f"augment.{name}": 0.0 for name in
                    ("rotate_prob", "hflip_prob", "vflip_prob", "scale_prob")})
  if args.resume:
    if args.workdir is None:
      raise JaxsegError("--resume needs --workdir RUN")
    given = [flag for flag, value in (("--preset", args.preset), ("--config", args.config))
             if value is not None]
    if given:
      raise JaxsegError(f"--resume continues a run with its own settings; drop {given[0]}")
    saved, _ = RunFolder(args.workdir).read_config()
    return flags.apply(saved, changes), args.workdir
  if args.config is not None:
    config = flags.load_config_file(args.config)
  else:
    config = get_preset(args.preset or "auto")
  config = flags.apply(config, changes).validate()
  if config.data != "synthetic" and not config.data.startswith("tfds:"):
    # Absolute, so that evaluate and resume find the data from any directory.
    config = config.replace(data=str(Path(config.data).expanduser().absolute()))
  workdir = args.workdir or Path("runs") / (
    f"{config.backbone}-{config.target}-{time.strftime('%Y%m%d-%H%M%S')}")
  return config, workdir


@command(compilation_cache=True)
def main(argv=None) -> None:
  imported = process_seconds() if argv is None else None  # a command's own process
  args = parse_args(argv)
  start_processes(args)
  config, workdir = settings(args)
  try:
    clock = PhaseClock(None if imported is None else {"imports": imported})
    summary = train_and_evaluate(config, workdir, resume=args.resume, clock=clock)
  except KeyboardInterrupt as stop:
    # A SIGTERM keeps its own exit status, on which a scheduler requeues the job.
    kind = Preempted if isinstance(stop, Preempted) else JaxsegError
    what = "stopped by SIGTERM" if kind is Preempted else "interrupted"
    if RunFolder(workdir).exists():
      raise kind(f"{what}; the latest checkpoint is kept: continue with "
                 f"python -m jaxseg.train --resume --workdir {workdir}") from None
    raise kind(f"{what} before the first epoch was saved; nothing was kept") from None
  print_table(summary)
  wall = summary["wall_seconds"]
  print(f"\nwall time {wall['total']:.1f} s: start-up {sum(wall['start_up'].values()):.1f} s, "
        f"epochs {wall['epochs']:.1f} s, wrap-up {sum(wall['wrap_up'].values()):.1f} s "
        "(summary.json's wall_seconds has each phase)")
  print(f"run folder: {Path(workdir).absolute()}")

