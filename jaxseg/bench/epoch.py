"""Whole training epochs: ``python -m jaxseg.bench.epoch --backbone vgg19,densenet121 --peer smp``.

What a user waits for, not one step: each backbone trains on the preset's built-in synthetic
images (``--preset quick`` by default, any setting flag of ``python -m jaxseg.train`` on top)
through the functions `jaxseg.train` runs, not copies of them. Per epoch, each phase timed
apart: the training pass (`jaxseg.loop.train_epoch`: batches, augmentation, the jitted
step), BatchNorm statistics (`Steps.recompute_statistics`, with ``batchnorm_statistics``
``recomputed``), validation (`evaluate_loader`), and the checkpoints (`save_epoch`: the
latest, and the best where validation Dice improved) into a temporary run folder. Training
writes those files while the next epoch trains; here each epoch waits for its own, so that it
pays for its writing in full and none of it runs into the peer's epoch. The first epoch
compiles and is not timed; the ``--epochs`` after it are, and their means reported: seconds of the
epoch and of each phase, and training images per second of the epoch and of its training
pass. Decoding the images happens before, once, and is not timed.

``--peer smp`` trains segmentation_models_pytorch's ``Unet`` on the same encoder through the
same epochs (`jaxseg.bench.peers.smp_unet.time_epochs`): the same decoded, resized, enhanced
images and masks (the loaders' arrays), the same batches in the same order, the same batch
size, Adam at the same learning rate, smp's binary Jaccard loss; then validation Dice in
``eval()`` under ``no_grad`` and ``torch.save`` of the model and optimizer state. The two
take turns, epoch by epoch, so that a host whose speed drifts slows both alike. Where
jaxseg augments, smp flips each image with the same probabilities (jaxseg also rotates and
scales). smp has no BatchNorm statistics phase: it evaluates with running averages.
``smp/jaxseg`` is smp's epoch time over jaxseg's: above 1, jaxseg is faster.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import contextlib
import datetime
import gc
import itertools
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jax

from jaxseg import engine, flags
from jaxseg.bench.peers import check_target, load_peers
from jaxseg.bench.steps import _names, environment, record_row
from jaxseg.bench.timing import turn_order
from jaxseg.cli import ArgumentParser, command
from jaxseg.config import Config
from jaxseg.configs import PRESETS, get_preset
from jaxseg.datasets import data_splits, make_loaders
from jaxseg.errors import JaxsegError, refuse_existing
from jaxseg.loop import save_epoch, train_and_validate
from jaxseg.models import MODELS
from jaxseg.platform import resolve_kernels
from jaxseg.run_folder import RunFolder

PHASES = ("train_s", "statistics_s", "validation_s", "checkpoint_s")
PEER_CHOICES = ("smp",)


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.bench.epoch", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", choices=PRESETS, default="quick",
                      help="the settings the flags below change (default quick)")
  parser.add_argument("--backbone", dest="backbones", type=_names(MODELS), metavar="NAMES",
                      default="vgg19,densenet121",
                      help="all, or names separated by commas (default vgg19,densenet121)")
  parser.add_argument("--epochs", dest="timed_epochs", type=int, default=3, metavar="N",
                      help="timed epochs, after one untimed epoch that compiles (default 3)")
  parser.add_argument("--peer", type=_names(PEER_CHOICES), default="",
                      help="smp: the same epochs in segmentation_models_pytorch")
  parser.add_argument("--json", type=Path, help="write the results here")
  flags.add_config_flags(parser, exclude=("backbone", "epochs"))
  args = parser.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  return args


def settings(args: argparse.Namespace) -> Config:
  """The preset with the setting flags on top, checked."""
  if args.timed_epochs < 1:
    raise JaxsegError(f"--epochs {args.timed_epochs}: must be at least 1")
  return flags.apply(get_preset(args.preset), flags.overrides(args)).validate()


def jaxseg_epochs(config: Config, loaders: dict) -> Iterator[dict]:
  """`jaxseg.train`'s loop, one epoch per item, each phase timed; the first compiles. Each
  epoch ends when its checkpoint files are written, so that no writing of ours runs into the
  peer's turn."""
  model, state = engine.build(config, resolve_kernels(config.kernels),
                              steps_per_epoch=loaders["train"].steps(drop_remainder=True))
  steps = engine.Steps(model, config.augment, config.batch_size)
  state = steps.place(state)
  key = jax.random.key(config.seed)
  best_dice = -1.0
  with tempfile.TemporaryDirectory(prefix="jaxseg-bench-epoch-") as folder:
    run = RunFolder(Path(folder) / "run")
    run.create()
    try:
      for epoch in itertools.count(1):
        start = time.perf_counter()
        state, train_loss, val, seconds = train_and_validate(steps, state, loaders, epoch, key,
                                                             config, show=False)
        saving = time.perf_counter()
        improved, best_dice = save_epoch(run, epoch, state, val["dice"], best_dice)
        run.checkpoints.wait()
        end = time.perf_counter()
        yield {**seconds, "checkpoint_s": end - saving, "epoch_s": end - start,
               "saves": 1 + improved, "train_loss": train_loss, "val_dice": val["dice"]}
    finally:
      run.checkpoints.close()


def peer_epochs(peer, config: Config, loaders: dict, count: int) -> Iterator[dict]:
  """The same ``count`` epochs in the peer, on the loaders' arrays in the loaders' batches,
  one per item."""
  train = loaders["train"]
  whole = train.steps(drop_remainder=True) * config.batch_size
  # Epochs are numbered from 1, as jaxseg's, so both see the same order each epoch.
  orders = [train.order(epoch, shuffle=True)[:whole] for epoch in range(1, count + 1)]
  with tempfile.TemporaryDirectory(prefix="jaxseg-bench-epoch-") as folder:
    yield from peer.time_epochs(
      config.backbone, (train.images, train.masks), (loaders["val"].images, loaders["val"].masks),
      orders, batch_size=config.batch_size, learning_rate=config.learning_rate,
      precision=config.precision, flip_probs=(config.augment.hflip_prob, config.augment.vflip_prob),
      seed=config.seed, folder=Path(folder))


def epochs_in_turns(runs: dict[str, Iterator[dict]], count: int) -> dict[str, list[dict] | str]:
  """``count`` epochs of each run, the runs taking turns epoch by epoch in an order that
  rotates, so that a host whose speed drifts slows every run alike. A peer that fails is
  left out from then on, its error in place of its epochs; jaxseg's failure is raised."""
  records: dict[str, list[dict] | str] = {name: [] for name in runs}
  names = list(runs)
  with contextlib.ExitStack() as stack:
    for epochs in runs.values():
      stack.enter_context(contextlib.closing(epochs))  # their folders go, whatever happens
    for epoch in range(count):
      for name in turn_order(names, epoch):
        if isinstance(records[name], str):
          continue
        try:
          records[name].append(next(runs[name]))
        except Exception as error:  # a foreign library may fail in any way
          if name == "jaxseg":
            raise
          print(f"jaxseg.bench.epoch: peer {name} failed: {error}", file=sys.stderr)
          records[name] = f"{type(error).__name__}: {error}"
  return records


def summary(records: list[dict], train_images: int) -> dict:
  """The untimed first epoch, the timed ones, and their mean seconds and images/s."""
  timed = records[1:]
  means = {name: statistics.fmean(r[name] for r in timed) if timed[0][name] is not None else None
           for name in (*PHASES, "epoch_s")}
  return {**means,
          "epoch_images_per_s": train_images / means["epoch_s"],
          "train_images_per_s": train_images / means["train_s"],
          "first_epoch": records[0], "epochs": timed}


def run(args: argparse.Namespace) -> dict:
  """Every backbone of ``args``; the JSON file, if any, is rewritten after each row."""
  base = settings(args)
  check_target(args.peer, base.target)
  peers, versions = load_peers(args.peer, "jaxseg.bench.epoch")
  _, splits = data_splits(base)
  loaders = make_loaders(base, splits, names=("train", "val"))
  train_steps = loaders["train"].steps(drop_remainder=True)
  train_images = train_steps * base.batch_size
  result = {
    "command": shlex.join(["python", "-m", "jaxseg.bench.epoch", *args.argv]),
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "environment": environment(versions),
    "settings": {
      "preset": base.preset, "backbones": args.backbones, "timed_epochs": args.timed_epochs,
      "untimed_epochs": 1, "train_images_per_epoch": train_images, "steps_per_epoch": train_steps,
      "validation_images": len(loaders["val"]), "loader": loaders["train"].kind,
      "peer_augmentation": (f"random flips: horizontal p {base.augment.hflip_prob}, vertical p "
                            f"{base.augment.vflip_prob} (jaxseg's also rotate and scale)"
                            if base.augment.active else "off"),
      # Every other setting; --backbone and --epochs mean other things here.
      "config": {k: v for k, v in base.to_dict().items() if k not in ("backbone", "epochs")},
    },
    "rows": [],
  }
  print(f"jaxseg.bench.epoch: preset {base.preset}, {base.image_size}px, {train_images} "
        f"training images an epoch ({train_steps} steps of {base.batch_size}), "
        f"{len(loaders['val'])} validation; {base.precision}; 1 untimed + {args.timed_epochs} "
        f"timed epochs; {jax.devices()[0].device_kind}; load {os.getloadavg()[0]:.2f}",
        flush=True)
  print_header(list(peers))
  count = args.timed_epochs + 1
  for backbone in args.backbones:
    config = base.replace(backbone=backbone).validate()
    runs = {"jaxseg": jaxseg_epochs(config, loaders)}
    skipped = {}
    for name, peer in peers.items():
      if peer.supports(backbone):
        runs[name] = peer_epochs(peer, config, loaders, count)
      else:
        skipped[name] = {"skipped": f"no {backbone} in the peer"}
    records = epochs_in_turns(runs, count)
    row = {"backbone": backbone, "jaxseg": summary(records.pop("jaxseg"), train_images),
           "peers": {name: {"error": r} if isinstance(r, str) else summary(r, train_images)
                     for name, r in records.items()} | skipped}
    row["ratio"] = {name: measured["epoch_s"] / row["jaxseg"]["epoch_s"]
                    for name, measured in row["peers"].items() if "epoch_s" in measured}
    gc.collect()  # free this backbone's executables and buffers before the next
    print_row(row, list(peers))
    record_row(result, row, args.json)
  return result


def _seconds(value) -> str:
  return "-" if value is None else f"{value:.2f}"


def print_header(peers: list[str]) -> None:
  head = f"{'backbone':15s}{'epoch s':>9s}{'img/s':>8s}{'train img/s':>13s}"
  head += f"{'train / stats / val / ckpt s':>31s}"
  for name in peers:
    head += f"{name + ' epoch s':>14s}{name + '/jaxseg':>12s}{name + ' train / val / ckpt s':>27s}"
  print(head, flush=True)


def print_row(row: dict, peers: list[str]) -> None:
  """One backbone: jaxseg's mean epoch, its phases, and each peer's beside it."""
  ours = row["jaxseg"]
  line = (f"{row['backbone']:15s}{ours['epoch_s']:9.2f}{ours['epoch_images_per_s']:8.1f}"
          f"{ours['train_images_per_s']:13.1f}"
          f"{' / '.join(_seconds(ours[p]) for p in PHASES):>31s}")
  for name in peers:
    peer = row["peers"][name]
    if "epoch_s" not in peer:
      line += f"{'-':>14s}{'-':>12s}{'-':>27s}"
      continue
    phases = " / ".join(_seconds(peer[p]) for p in ("train_s", "validation_s", "checkpoint_s"))
    line += f"{peer['epoch_s']:14.2f}{row['ratio'][name]:12.2f}{phases:>27s}"
  print(line, flush=True)


@command
def main(argv=None) -> dict:
  args = parse_args(argv)
  refuse_existing("--json", args.json, "jaxseg.bench.epoch")
  # JAX takes GPU memory as it needs it, leaving room for a torch peer in this process.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  result = run(args)
  if args.json:
    print(f"jaxseg.bench.epoch: wrote {args.json}")
  return result

