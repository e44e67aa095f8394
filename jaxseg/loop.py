"""Training as a library: ``train_and_evaluate(config, workdir)``, in the manner of Flax's examples.

Chooses the best epoch on validation images carved from the training set, then reports the
paper's metrics on the test images, beside the Otsu threshold the paper made its masks with
(`jaxseg.scoring`). `jaxseg.train` is its command line; `jaxseg.bench.epoch`, the reproduction
and the tests call these functions with Config objects.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from jaxseg import engine, plots
from jaxseg.config import Config
from jaxseg.data import record
from jaxseg.data.files import read_image, read_mask
from jaxseg.data.folder import Splits
from jaxseg.data.masks import CELL, CLASS_NAMES, NUCLEUS
from jaxseg.data.pipeline import Loader
from jaxseg.datasets import TFDS_PREFIX, data_splits, make_loaders, recorded_splits
from jaxseg.errors import NO_SPACE, JaxsegError, write_failure
from jaxseg.interrupts import Preempted, between_steps
from jaxseg.metrics import run_scores
from jaxseg.phases import PhaseClock
from jaxseg.platform import resolve_kernels
from jaxseg.run_folder import RunFolder
from jaxseg.scoring import (
  count_loader,
  evaluate_loader,
  figure_predictions,
  median_areas,
  otsu_counts,
  per_image,
  scores_line,
)
from jaxseg.tensorboard import EpochWriter
from jaxseg.weights.store import describe_weights

# Steps between the progress bar's updates: it waits for the step then, so it counts
# finished work, not work handed to the device.
PROGRESS_EVERY = 4

# summary.json's wall_seconds: the phases before the first epoch and after the last.
START_UP = ("imports", "data", "reading_images", "weights", "model", "run_files", "tensorboard")
WRAP_UP = ("checkpoint_writes", "restore_best", "test", "otsu", "plots")


def train_and_evaluate(config: Config, workdir: Path, *, resume: bool = False,
                       clock: PhaseClock | None = None) -> dict:
  """Train ``config`` into the run folder ``workdir`` and return its summary (also written
  to ``summary.json``). With ``resume``, continue the run there from its latest checkpoint;
  its settings must be ``config``'s, but for ``epochs`` and ``checkpoint_steps``. ``clock``
  holds what a command spent before (its imports); the summary's ``wall_seconds`` adds the
  run's own phases.

  A new run that fails or is interrupted before its first epoch is saved leaves nothing
  behind, so the same call can run again. One stopped by SIGTERM (`Preempted`) records it in
  ``preempted.json``. This process holds the run folder's lock throughout (`RunFolder.create`).
  """
  config.validate()
  run = RunFolder(workdir)
  if resume:
    if not run.exists():
      raise JaxsegError(f"--resume: {run.path} holds no run to continue")
    _check_unchanged(run, config)
  elif run.exists():
    raise JaxsegError(f"{run.path} already holds a run; continue it with --resume "
                      "or choose another --workdir")
  created = not run.path.exists()
  if jax.process_count() > 1:  # every process has looked before any creates or writes there
    engine.sync_processes()
  run.create()
  try:
    return _train(run, config, resume, clock or PhaseClock())
  except BaseException as error:
    stop = _reported(error, config, run)
    if not resume and not run.checkpoints.has("latest"):
      run.discard(created)
    elif isinstance(stop, Preempted):
      run.record_preemption()
    if stop is error:
      raise
    raise stop from None
  finally:
    run.close()


def _reported(error: BaseException, config: Config, run: RunFolder) -> BaseException:
  """What a failure or stop is reported as. A SIGTERM waits for the checkpoint being written,
  and is reported as its failure where it fails: a requeued job would fail again (a full disk).
  Where a failure names no file or flag, one line does: the device's memory or the disk is full."""
  if isinstance(error, Preempted):
    if run.checkpoints.writing():
      # Said before the wait: where the scheduler's SIGKILL cuts the wait short, this is the
      # last line, and the checkpoint before the one being written is the latest.
      print("jaxseg: stopped by SIGTERM; finishing the checkpoint being written", file=sys.stderr,
            flush=True)
    try:
      run.checkpoints.wait()
    except JaxsegError as failure:
      return failure
  if isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error):
    return JaxsegError(f"out of device memory for batch {config.batch_size} at "
                       f"{config.image_size}x{config.image_size} ({config.precision}); lower "
                       "--batch-size or --image-size")
  if isinstance(error, OSError) and error.errno in NO_SPACE:  # a picture, TensorBoard's events
    path = error.filename or run.path
    return JaxsegError(f"{path}: cannot write it ({write_failure(path, error)})")
  return error


def _check_unchanged(run: RunFolder, config: Config) -> None:
  """A run continues as it was: every setting but ``epochs`` and ``checkpoint_steps`` (which
  change no result) as it saved it."""
  saved, _ = run.read_config()
  changed = [name for name, value in _flat(config.to_dict()).items()
             if name not in ("epochs", "checkpoint_steps")
             and _flat(saved.to_dict()).get(name) != value]
  if changed:
    flags = ", ".join("--" + name.replace("_", "-") for name in changed)
    raise JaxsegError(f"--resume continues {run.path} with its own settings; only --epochs and "
                      f"--checkpoint-steps may change, not {flags}")


def _flat(values: dict, prefix: str = "") -> dict:
  flat = {}
  for name, value in values.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f"{prefix}{name}."))
    else:
      flat[prefix + name] = list(value) if isinstance(value, tuple) else value
  return flat


def data_for(run: RunFolder, config: Config, resume: bool) -> tuple[str, Splits]:
  """(source, splits): the split the run recorded when it has one, else a new one."""
  if resume and run.data_file.exists():
    saved = run.read_data_record()
    return saved["source"], recorded_splits(saved, config)
  return data_splits(config)


def check_outside_data(run: RunFolder, source: str) -> None:
  """A run folder is neither the data folder nor inside its images/ or masks/ folders, where
  its files would mix with the data."""
  if source.startswith(TFDS_PREFIX):
    return
  root, where = Path(source).resolve(), run.path.resolve()
  if where == root or (root in where.parents
                       and {"images", "masks"} & set(where.relative_to(root).parts)):
    raise JaxsegError(f"--workdir {run.path}: inside the data set {source}; choose a run "
                      "folder outside it")


def check_target_present(loader: Loader, target: str) -> None:
  """A target (or, of ``cell``, a class) that no training mask holds cannot be learned: say
  which classes there are."""
  wanted = range(1, len(CLASS_NAMES)) if target == CELL else [1]
  missing = [value for value in wanted if not any((mask == value).any() for mask in loader.masks)]
  if not missing:
    return
  classes = set()
  for example in loader.examples:
    classes |= set(np.unique(read_mask(example.mask, loader.mask_colours)).tolist())
  what = ("it" if target != CELL else
          " or ".join(f"{CLASS_NAMES[value]} ({value})" for value in missing))
  hint = (" (0/1 masks mark the whole cell: use --target cytoplasm)"
          if target in ("nuclei", CELL) and NUCLEUS not in classes else "")
  raise JaxsegError(f"--target {target}: no training mask holds {what}; their values are "
                    f"{sorted(classes)}{hint}")


def statistics_batches(loader: Loader, config: Config):
  """The training batches that BatchNorm statistics are recomputed on: the same ones every
  epoch (epoch 0's order; training counts from 1), ``batchnorm_images`` rounded up to batches."""
  count = loader.steps(drop_remainder=True)
  if config.batchnorm_images:
    count = min(count, -(-config.batchnorm_images // config.batch_size))
  return itertools.islice(loader.epoch(0, shuffle=True, drop_remainder=True), count)


def _train(run: RunFolder, config: Config, resume: bool, clock: PhaseClock) -> dict:
  with clock("data"):  # JAX's backend starts here too
    print(f"jaxseg: {config.backbone} U-Net, target {config.target}, preset {config.preset}, "
          f"{config.epochs} epochs at {config.image_size}px, batch {config.batch_size}, "
          f"{config.precision}, on {jax.device_count()} {jax.devices()[0].platform} device(s)")
    source, splits = data_for(run, config, resume)
    check_outside_data(run, source)
  with clock("reading_images"):
    loaders = make_loaders(config, splits)
    check_target_present(loaders["train"], config.target)
  with clock("weights"):
    weights = describe_weights(config)
  steps_per_epoch = loaders["train"].steps(drop_remainder=True)
  with clock("model"):
    model, state = engine.build(config, resolve_kernels(config.kernels),
                                steps_per_epoch=steps_per_epoch)
    steps = engine.Steps(model, config.augment, config.batch_size)
    state = steps.place(state)
  key = jax.random.key(config.seed)
  with clock("run_files"):
    state, first_epoch, best_dice, history, done = _start(run, config, resume, state, source,
                                                          splits, weights)
  with clock("tensorboard"):
    board = EpochWriter(run.tensorboard_dir, loaders["val"], count=config.figure_images,
                        primary=run.primary, channels=config.out_channels)
  with clock("epochs"):
    try:  # the events file is closed however training ends
      for epoch in range(first_epoch, config.epochs + 1):
        epoch_start = time.perf_counter()
        state, train_loss, val, seconds = train_and_validate(
          steps, state, loaders, epoch, key, config, run.primary, done=done,
          checkpoint=functools.partial(save_steps, run, epoch, best_dice))
        images = (steps_per_epoch - len(done)) * config.batch_size
        done = []
        epoch_record = {"epoch": epoch, "train_loss": train_loss, "val": val,
                        "train_images_per_second": round(images / seconds["train_s"], 2)}
        save_start = time.perf_counter()
        improved, best_dice = save_epoch(run, epoch, state, val["dice"], best_dice, epoch_record)
        seconds["checkpoint_s"] = time.perf_counter() - save_start
        epoch_record["seconds"] = round(time.perf_counter() - epoch_start, 2)  # saving included
        epoch_record["phase_seconds"] = {name: round(value, 2) for name, value in seconds.items()}
        history.append(epoch_record)
        run.append_metrics(epoch_record)
        board.write(epoch, epoch_record, predict=functools.partial(steps.predict, state),
                    learning_rate=engine.learning_rate_at(config, steps_per_epoch,
                                                          epoch * steps_per_epoch))
        tqdm.write(f"epoch {epoch:3d}/{config.epochs}  loss {train_loss:.4f}  "
                   f"val {scores_line(val)}  "
                   f"{epoch_record['train_images_per_second']:.1f} img/s  "
                   f"{epoch_record['seconds']:.1f}s{'  *best' if improved else ''}")
    finally:
      board.close()
  return _wrap_up(run, config, clock, steps, state, loaders, history, source, weights)


def _start(run: RunFolder, config: Config, resume: bool, state, source: str, splits: Splits,
           weights: str):
  """(state, first epoch, best Dice so far, metrics history, losses of the steps already done
  in the first epoch): the run's latest checkpoint and records, or a new run's files."""
  first_epoch, best_dice, history, done = 1, -1.0, [], []
  if resume and run.checkpoints.has("latest"):
    state, meta = run.checkpoints.restore("latest", state)
    first_epoch, best_dice = meta["epoch"] + 1, meta["best_dice"]
    done = meta.get("losses", [])  # a checkpoint within an epoch: its steps' losses
    history = run.read_metrics(up_to_epoch=meta["epoch"])
    if "metrics" in meta and [m["epoch"] for m in history[-1:]] != [meta["epoch"]]:
      history.append(meta["metrics"])  # stopped after the checkpoint, before its metrics line
    run.rewrite_metrics(history)
    within = f", {len(done)} steps into epoch {first_epoch}" if done else ""
    print(f"jaxseg: resuming {run.path} after epoch {meta['epoch']}{within}")
  else:  # a new run, or one stopped before its first checkpoint: start it afresh
    run.write_config(config, {"data_root": source, "weights": weights,
                              "source_size": list(read_image(splits.train[0].image).shape[:2])})
    run.write_data_record(record.describe(source, splits))
    run.rewrite_metrics([])
  return state, first_epoch, best_dice, history, done


def _wrap_up(run: RunFolder, config: Config, clock: PhaseClock, steps: engine.Steps, state,
             loaders: dict, history: list, source: str, weights: str) -> dict:
  """Test the best epoch's model beside Otsu, draw the curves and Figure 4, and write the
  summary last, with the wall seconds of every phase."""
  with clock("checkpoint_writes"):
    run.checkpoints.wait()
  with clock("restore_best"):
    best, best_meta = run.checkpoints.restore("best", state.replace(opt_state=None))
    state = state.replace(params=best.params, model_state=best.model_state)
  with clock("test"):
    counts, predicted = count_loader(steps, state, loaders["test"])
    test = run_scores(counts)
  with clock("otsu"):
    otsu = otsu_counts(config, loaders["test"])
  with clock("plots"):
    predictions = figure_predictions(loaders["test"], predicted, config)
    if run.primary:
      plots.training_curves(history, run.curves_file, config.target)
      plots.prediction_figure(*predictions, run.figure_file, config.target)
  summary = {
    "preset": config.preset,
    "target": config.target,
    "backbone": config.backbone,
    "weights": weights,
    "labels": {"train": config.labels, "val": config.labels, "test": "exact"},
    "data_root": source,
    "images": {split: len(loader) for split, loader in loaders.items()},
    "best_epoch": best_meta["epoch"],
    "val_dice": best_meta["best_dice"],
    "test": test,
    "test_images": per_image(loaders["test"], counts, config.target),
    "test_median_area": median_areas(loaders["test"], config.target),
    "otsu_test": run_scores(otsu),
    "otsu_test_images": per_image(loaders["test"], otsu, config.target),
    "train_seconds": round(clock.seconds["epochs"], 1),
    # The first epoch compiles the steps: the median of the others is the training speed.
    "train_images_per_second": statistics.median(
      m["train_images_per_second"] for m in history[1:] or history),
    "device": jax.devices()[0].device_kind,
    "versions": versions(),
    "config": config.to_dict(),
    "wall_seconds": clock.wall_seconds(START_UP, WRAP_UP),
  }
  run.write_summary(summary)
  return summary


def train_and_validate(steps: engine.Steps, state, loaders: dict, epoch: int, key,
                       config: Config, show: bool, *, done=(), checkpoint=None):
  """One epoch but its checkpoint: the training pass, BatchNorm statistics (where they are
  recomputed) and validation. (state, mean training loss, validation scores, seconds of each
  phase: ``train_s``, ``statistics_s``, ``validation_s``). ``done`` and ``checkpoint``: as
  `train_epoch` takes them."""
  state, train_loss, train_seconds = train_epoch(steps, state, loaders["train"], epoch, key,
                                                 config, show, done=done, checkpoint=checkpoint)
  start = time.perf_counter()
  if config.batchnorm_statistics == "recomputed":
    # Waited for, so that its time is not counted as validation's.
    state = jax.block_until_ready(
      steps.recompute_statistics(state, statistics_batches(loaders["train"], config)))
  statistics_seconds = time.perf_counter() - start
  start = time.perf_counter()
  val = evaluate_loader(steps, state, loaders["val"])
  return state, train_loss, val, {"train_s": train_seconds, "statistics_s": statistics_seconds,
                                  "validation_s": time.perf_counter() - start}


def save_epoch(run: RunFolder, epoch: int, state, dice: float, best_dice: float,
               record: dict | None = None):
  """Checkpoint ``epoch`` as the latest, and its model as the best where its validation
  ``dice`` beats ``best_dice``: (improved, best Dice so far). Only ``latest`` is resumed, so
  ``best`` leaves out Adam's moments, two thirds of the state. ``record``, the epoch's line of
  metrics.jsonl, goes into the latest checkpoint too: a run stopped after it is saved and
  before the line is written gets the line back when it resumes."""
  improved = dice > best_dice
  best_dice = max(best_dice, dice)
  meta = {"epoch": epoch, "best_dice": best_dice}
  if improved:
    run.checkpoints.save("best", _step(state), state.replace(opt_state=None), meta)
  # A copy: Orbax writes the meta in the background, while the caller adds timings to ``record``.
  run.checkpoints.save("latest", _step(state), state,
                       meta if record is None else {**meta, "metrics": dict(record)})
  return improved, best_dice


def save_steps(run: RunFolder, epoch: int, best_dice: float, state, step: int,
               losses: np.ndarray) -> None:
  """Checkpoint the run as the latest after ``step`` steps of ``epoch``, with their ``losses``:
  a run resumed from it trains the rest of the epoch and adds them to its mean loss."""
  run.checkpoints.save("latest", _step(state), state, {
    "epoch": epoch - 1, "best_dice": best_dice, "steps": step,
    "losses": [float(loss) for loss in losses]})


def _step(state) -> int:
  """The steps ``state`` has trained, from the first of the run: what checkpoints are named by.
  Read from this process's copy: the state is the same on every device."""
  return int(np.asarray(state.step.addressable_data(0)))


def train_epoch(steps: engine.Steps, state, loader: Loader, epoch: int, key, config: Config,
                show: bool, *, done=(), checkpoint=None):
  """One pass over the training images: (state, mean loss, seconds). ``done``: the losses of
  the first steps of the epoch, trained before the run was resumed from a checkpoint within
  it; those steps are skipped. ``checkpoint(state, step, losses)`` saves the run after
  ``step`` steps, every ``config.checkpoint_steps``. A loss that is not finite stops training
  before the steps that led to it are saved."""
  start = time.perf_counter()
  count = loader.steps(drop_remainder=True)
  batches = itertools.islice(loader.epoch(epoch, shuffle=True, drop_remainder=True), len(done),
                             None)
  losses = [np.float32(loss) for loss in done]
  every = config.checkpoint_steps if checkpoint else 0
  with tqdm(total=count * config.batch_size, initial=len(done) * config.batch_size,
            desc=f"epoch {epoch}/{config.epochs}", unit="img", leave=False,
            disable=not show) as bar:
    for step, (images, masks) in enumerate(batches, len(done) + 1):
      between_steps((epoch - 1) * count + step)
      state, metrics = steps.train(state, *steps.batch(images, masks), key)
      losses.append(metrics["loss"])  # stays on the device: no host round trip per step
      if step % PROGRESS_EVERY == 0 or step == count:
        losses[-1].block_until_ready()
        bar.update(step * config.batch_size - bar.n)
      if every and step % every == 0 and step < count:
        checkpoint(state, step, _finite(losses, epoch))
  losses = _finite(losses, epoch)
  return state, float(losses.mean()), time.perf_counter() - start


def _finite(losses: list, epoch: int) -> np.ndarray:
  """``losses`` on the host, or a `JaxsegError` naming the first step whose loss is not finite."""
  losses = np.asarray(jax.device_get(losses))
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise JaxsegError(f"epoch {epoch}, step {bad[0] + 1}: training loss is {losses[bad[0]]}; "
                      "stopped, this epoch not saved (try a lower --learning-rate)")
  return losses


def versions() -> dict:
  import flax
  import optax

  return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}
