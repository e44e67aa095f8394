"""Train a U-Net on Pap-smear images: ``python -m jaxseg.train --backbone densenet121``.

Chooses the best epoch on validation images carved from the training set, then reports the
paper's metrics on the test images, beside the Otsu threshold the paper made its masks with.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from jaxseg import engine, plots
from jaxseg.config import Config, enable_compilation_cache
from jaxseg.configs import PRESETS, get_preset
from jaxseg.data.files import read_image
from jaxseg.data.masks import TARGETS
from jaxseg.data.otsu import otsu_mask
from jaxseg.data.pipeline import Loader
from jaxseg.data.sources import data_splits
from jaxseg.errors import ArgumentParser, JaxsegError, cli
from jaxseg.metrics import confusion_counts, scores
from jaxseg.models import BACKBONES, DECODERS
from jaxseg.run import RunFolder
from jaxseg.weights.store import load_encoder_weights

# Flags that override a preset's setting of the same name (None: keep the preset's).
OVERRIDES = {
  "backbone": dict(choices=BACKBONES, help="plain paper U-Net or a pretrained encoder"),
  "weights": dict(help="encoder weights: imagenet (converted, from the cache), none, or FILE"),
  "target": dict(choices=TARGETS, help="nuclei (class 2) or cytoplasm (the whole cell)"),
  "data": dict(help="'synthetic' (built in), a folder (DATA/images, DATA/masks), or "
                    "tfds:cervical_cytology (records in --tfds-dir)"),
  "tfds_dir": dict(help="TFDS data folder of --data tfds:NAME"),
  "num_images": dict(type=int, help="synthetic images to generate"),
  "image_size": dict(type=int, help="training and evaluation size (square)"),
  "batch_size": dict(type=int, help="global batch size"),
  "epochs": dict(type=int),
  "learning_rate": dict(type=float, help="Adam learning rate"),
  "precision": dict(choices=("fp32", "bf16"), help="bf16: bf16 compute, fp32 parameters"),
  "seed": dict(type=int, help="split, initialisation, dropout and augmentation"),
  "unet_filters": dict(type=int, help="plain U-Net widths start here (paper: 64)"),
  "decoder": dict(choices=tuple(DECODERS), help="decoder for encoders: paper or smp's shape"),
  "dropout": dict(type=float, help="spatial dropout rate"),
  "batchnorm_statistics": dict(choices=("recomputed", "running"),
                               help="what evaluation's BatchNorm uses: statistics recomputed on "
                                    "the training images each epoch, or running averages"),
  "loader": dict(choices=("auto", "tf", "plain"), help="input pipeline"),
  "cache_dir": dict(help="where synthetic data and converted weights are kept"),
}


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.train", description=__doc__)
  parser.add_argument("--preset", choices=("auto", *PRESETS), default="auto",
                      help="paper settings, or quick ones for a CPU (auto: by device)")
  for name, options in OVERRIDES.items():
    parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **options)
  parser.add_argument("--freeze-encoder", action="store_true", default=None,
                      help="train only the decoder; the encoder's BatchNorm stays in inference")
  parser.add_argument("--no-augment", action="store_true", help="switch augmentation off")
  parser.add_argument("--workdir", type=Path, help="run folder (default runs/BACKBONE-TARGET-TIME)")
  parser.add_argument("--resume", action="store_true", help="continue the run in --workdir")
  hosts = parser.add_argument_group("several hosts (jax.distributed)")
  hosts.add_argument("--coordinator", help="HOST:PORT of process 0")
  hosts.add_argument("--num-processes", type=int)
  hosts.add_argument("--process-id", type=int)
  hosts.add_argument("--distributed", action="store_true",
                     help="join a multi-host run from the cluster launcher's environment (SLURM, "
                          "Open MPI, ...) as jax.distributed detects it")
  return parser.parse_args(argv)


def start_processes(args: argparse.Namespace) -> None:
  """Join the other processes of a multi-host run; must come before any JAX computation."""
  if args.coordinator is None and not args.distributed:
    return
  # CPU hosts (and the tests) need a collectives library; GPUs use NCCL regardless.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  # Meet once now, while the processes are in step: CPU collectives (gloo) give up when one
  # process reaches its first collective more than 30 s after another.
  multihost_utils.sync_global_devices("jaxseg: processes started")


def settings(args: argparse.Namespace) -> tuple[RunFolder, Config, str]:
  """The run folder and config: a preset with flags on top, or the run being resumed."""
  overrides = {name: getattr(args, name) for name in (*OVERRIDES, "freeze_encoder")
               if getattr(args, name) is not None}
  if args.resume:
    if args.workdir is None:
      raise JaxsegError("--resume needs --workdir RUN")
    run = RunFolder(args.workdir)
    config, saved = run.read_config()
    changed = sorted(k for k, v in overrides.items() if k != "epochs" and getattr(config, k) != v)
    if changed:
      raise JaxsegError(f"--resume continues {run.path} as it was; only --epochs may change, "
                        f"not --{changed[0].replace('_', '-')}")
    return run, config.replace(**overrides), saved["preset"]
  preset, config = get_preset(args.preset)
  config = config.replace(**overrides)
  if args.no_augment:
    config = config.replace(augment=dataclasses.replace(config.augment, rotate_prob=0.0,
                            hflip_prob=0.0, vflip_prob=0.0, scale_prob=0.0))
  workdir = args.workdir or Path("runs") / (
    f"{config.backbone}-{config.target}-{time.strftime('%Y%m%d-%H%M%S')}")
  run = RunFolder(workdir)
  if run.exists():
    raise JaxsegError(f"{run.path} already holds a run; continue it with --resume "
                      "or choose another --workdir")
  return run, config, preset


def make_loaders(config: Config):
  root, splits = data_splits(config)
  if len(splits.train) < config.batch_size:
    raise JaxsegError(f"{root}: {len(splits.train)} training images are fewer than "
                      f"--batch-size {config.batch_size}")
  # Test metrics are always against the data set's own masks, whatever training learnt from.
  loaders = {
    split: Loader(getattr(splits, split), image_size=config.image_size, target=config.target,
                  enhancement=config.enhance, batch_size=config.batch_size, seed=config.seed,
                  kind=config.loader, labels=config.labels if split != "test" else "exact")
    for split in ("train", "val", "test")
  }
  for split, loader in loaders.items():  # every file read once, before training starts
    loader.warm(f"reading {split} images")
  return root, loaders


def source_size(loader: Loader) -> list[int]:
  """Height and width of the first training image: the scale that tiled prediction matches."""
  return list(read_image(loader.examples[0].image).shape[:2])


def statistics_batches(loader: Loader, config: Config):
  """The training batches that BatchNorm statistics are recomputed on: the same ones every
  epoch (epoch 0's order; training counts from 1), ``batchnorm_images`` rounded up to batches."""
  count = loader.steps(drop_remainder=True)
  if config.batchnorm_images:
    count = min(count, -(-config.batchnorm_images // config.batch_size))
  return itertools.islice(loader.epoch(0, shuffle=True, drop_remainder=True), count)


def evaluate_loader(steps: engine.Steps, state, loader: Loader) -> dict:
  return scores(steps.counts(state, loader.epoch(shuffle=False, drop_remainder=False)))


def otsu_scores(loader: Loader, target: str) -> dict:
  """The paper's mask method on the same (resized, enhanced) test images, as a baseline."""
  counts = [confusion_counts(np.stack([otsu_mask(image, target) for image in images]), masks)
            for images, masks in loader.epoch(shuffle=False, drop_remainder=False)]
  return scores(np.concatenate(counts))


def train(run: RunFolder, config: Config, preset: str, resume: bool) -> dict:
  print(f"jaxseg: {config.backbone} U-Net, target {config.target}, preset {preset}, "
        f"{config.epochs} epochs at {config.image_size}px, batch {config.batch_size}, "
        f"{config.precision}, on {jax.device_count()} {jax.devices()[0].platform} device(s)")
  root, loaders = make_loaders(config)
  network = engine.new_model(config)
  weights = "none (the plain U-Net has no pretrained encoder)"
  if config.backbone != "unet":
    weights = load_encoder_weights(network.encoder, config.backbone, config.weights,
                                   Path(config.cache_dir))
  model, state = engine.build(config, network)
  steps = engine.Steps(model, config.augment, config.batch_size)
  state = steps.place(state)
  key = jax.random.key(config.seed)

  first_epoch, best_dice, history = 1, -1.0, []
  if resume and run.has_checkpoint("latest"):
    state, meta = run.restore("latest", state)
    first_epoch, best_dice = meta["epoch"] + 1, meta["best_dice"]
    history = run.read_metrics(up_to_epoch=meta["epoch"])
    run.rewrite_metrics(history)
    print(f"jaxseg: resuming {run.path} after epoch {meta['epoch']}")
  else:  # a new run, or one stopped before its first checkpoint: start it afresh
    run.write_config(config, {"preset": preset, "data_root": root, "weights": weights,
                              "source_size": source_size(loaders["train"])})
    run.rewrite_metrics([])

  train_loader = loaders["train"]
  steps_per_epoch = train_loader.steps(drop_remainder=True)
  started = time.perf_counter()
  for epoch in range(first_epoch, config.epochs + 1):
    epoch_start = time.perf_counter()
    losses = []
    bar = tqdm(train_loader.epoch(epoch, shuffle=True, drop_remainder=True),
               total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="step",
               leave=False, disable=not run.primary)
    for images, masks in bar:
      state, metrics = steps.train(state, *steps.batch(images, masks), key)
      losses.append(metrics["loss"])  # stays on the device: no host round trip per step
    train_loss = float(np.mean(jax.device_get(losses)))
    if config.batchnorm_statistics == "recomputed":
      state = steps.recompute_statistics(state, statistics_batches(train_loader, config))
    val = evaluate_loader(steps, state, loaders["val"])
    record = {"epoch": epoch, "train_loss": train_loss, "val": val,
              "seconds": round(time.perf_counter() - epoch_start, 2)}
    history.append(record)
    run.append_metrics(record)
    improved = val["dice"] > best_dice
    best_dice = max(best_dice, val["dice"])
    meta = {"epoch": epoch, "best_dice": best_dice}
    if improved:
      run.save("best", epoch, state, meta)
    run.save("latest", epoch, state, meta)
    tqdm.write(f"epoch {epoch:3d}/{config.epochs}  loss {train_loss:.4f}  "
               f"val dice {val['dice']:.4f}  iou {val['iou']:.4f}  "
               f"{record['seconds']:.1f}s{'  *best' if improved else ''}")

  state, best_meta = run.restore("best", state)
  test = evaluate_loader(steps, state, loaders["test"])
  summary = {
    "preset": preset,
    "target": config.target,
    "backbone": config.backbone,
    "weights": weights,
    "data_root": root,
    "images": {split: len(loader) for split, loader in loaders.items()},
    "labels": {"train": config.labels, "val": config.labels, "test": "exact"},
    "best_epoch": best_meta["epoch"],
    "val_dice": best_meta["best_dice"],
    "test": test,
    "otsu_test": otsu_scores(loaders["test"], config.target),
    "train_seconds": round(time.perf_counter() - started, 1),
    "device": jax.devices()[0].device_kind,
    "versions": versions(),
    "config": config.to_dict(),
  }
  run.write_summary(summary)
  predictions = figure_predictions(steps, state, loaders["test"], config)  # every process
  if run.primary:
    plots.training_curves(history, run.curves_file, config.target)
    plots.prediction_figure(*predictions, run.figure_file, config.target)
  return summary


def figure_predictions(steps: engine.Steps, state, loader: Loader, config: Config):
  """Names, images, true and predicted masks of a few test images, one of each kind first
  (where file names start with it, as the synthetic set's do)."""
  chosen, kinds = [], set()
  for index, example in enumerate(loader.examples):
    kind = example.name.split("_")[0]
    if kind not in kinds:
      kinds.add(kind)
      chosen.append(index)
  chosen = (chosen + [i for i in range(len(loader)) if i not in chosen])[: config.figure_images]
  images, masks = (np.concatenate(parts) for parts in
                   zip(*loader.epoch(shuffle=False, drop_remainder=False)))
  images, masks = images[chosen], masks[chosen]
  names = [loader.examples[i].name for i in chosen]
  return names, images, masks, steps.predict(state, images) > 0.5


def versions() -> dict:
  import flax
  import optax

  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}


def print_table(summary: dict) -> None:
  rows = [("model", summary["test"]), ("Otsu threshold", summary["otsu_test"])]
  keys = ("accuracy", "sensitivity", "precision", "iou", "dice", "mean_iou", "per_image_dice")
  print(f"\ntest set ({summary['images']['test']} images), target {summary['target']}, "
        f"best epoch {summary['best_epoch']}; pooled over pixels, mean_iou includes background")
  print(f"{'':16s}" + "".join(f"{k:>15s}" for k in keys))
  for label, values in rows:
    print(f"{label:16s}" + "".join(f"{values[k]:15.4f}" for k in keys))


@cli
def main(argv=None) -> None:
  args = parse_args(argv)
  enable_compilation_cache()
  start_processes(args)
  run, config, preset = settings(args)
  try:
    summary = train(run, config, preset, resume=args.resume)
  except KeyboardInterrupt:
    raise JaxsegError(f"interrupted; the last finished epoch is saved: continue with "
                      f"python -m jaxseg.train --resume --workdir {run.path}") from None
  finally:
    run.close()
  print_table(summary)
  print(f"\nrun folder: {run.path}")


if __name__ == "__main__":
  main()
