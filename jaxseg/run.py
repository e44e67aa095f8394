"""A run folder: config, per-epoch metrics, Orbax checkpoints of the latest and best epoch.

```
RUN/config.json          the settings, as `Config.to_dict` writes them
RUN/data.json            the split: every file of train, validation and test, fingerprinted
RUN/metrics.jsonl        one line per epoch
RUN/checkpoints/latest/  the last finished epoch (what --resume continues)
RUN/checkpoints/best/    the model of the epoch with the best validation Dice (what evaluate reloads)
RUN/tensorboard/         TensorBoard events of each epoch (where tensorboardX is installed)
RUN/summary.json         the final test metrics, written when training ends
```

A checkpoint holds packed items, ``model`` (parameters and BatchNorm statistics: all that
evaluation and prediction read) and, in ``latest``, ``optimizer`` (step and Adam moments: what
resuming adds), and in its metadata the path, shape and dtype of every leaf, which a restore
checks first.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import signal
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxseg.config import Config
from jaxseg.engine import TrainState
from jaxseg.errors import JaxsegError


def _primary_only(write):
  """Skip ``write`` on every process but process 0: one writer per file."""

  @functools.wraps(write)
  def guarded(self, *args, **kwargs):
    if self.primary:
      write(self, *args, **kwargs)

  return guarded


class RunFolder:
  """A run's files. With several processes only process 0 writes; all of them can read."""

  def __init__(self, path: Path):
    self.path = Path(path).absolute()
    self.primary = jax.process_index() == 0
    self.config_file = self.path / "config.json"
    self.metrics_file = self.path / "metrics.jsonl"
    self.summary_file = self.path / "summary.json"
    self.data_file = self.path / "data.json"
    self.tensorboard_dir = self.path / "tensorboard"
    self.curves_file = self.path / "training_curves.png"
    self.figure_file = self.path / "predictions.png"
    self._managers = {}

  def exists(self) -> bool:
    return self.config_file.exists()

  def create(self) -> None:
    """Make the run folder (refusing a path that is a file or cannot be written)."""
    if self.path.exists() and not self.path.is_dir():
      raise JaxsegError(f"--workdir {self.path}: a file, not a folder")
    try:
      self.path.mkdir(parents=True, exist_ok=True)
      probe = self.path / f".jaxseg-write-test-{jax.process_index()}"  # one per process
      probe.touch()
      probe.unlink()
    except OSError as error:
      raise JaxsegError(f"--workdir {self.path}: cannot write there ({error.strerror})") from None

  @_primary_only
  def discard(self, created_folder: bool) -> None:
    """Remove what a new run wrote before its first checkpoint, so the same command can run
    again; the folder itself only where this run created it."""
    for name in (self.config_file, self.data_file, self.metrics_file):
      name.unlink(missing_ok=True)
    for folder in (self.path / "checkpoints", self.tensorboard_dir):
      shutil.rmtree(folder, ignore_errors=True)
    if created_folder and self.path.is_dir() and not any(self.path.iterdir()):
      self.path.rmdir()

  @_primary_only
  def write_config(self, config: Config, extra: dict) -> None:
    _write_json(self.config_file, {**extra, "config": config.to_dict()})

  def read_config(self) -> tuple[Config, dict]:
    if not self.exists():
      raise JaxsegError(f"{self.path}: not a jaxseg run (no config.json)")
    saved = _read_json(self.config_file)
    try:
      return Config.from_dict(saved.pop("config")), saved
    except (KeyError, TypeError, ValueError) as error:
      raise JaxsegError(f"{self.config_file}: not a jaxseg config ({error})") from None

  @_primary_only
  def write_data_record(self, record: dict) -> None:
    _write_json(self.data_file, record)

  def read_data_record(self) -> dict:
    if not self.data_file.exists():
      raise JaxsegError(f"{self.path}: no data.json (a run of an older jaxseg?)")
    return _read_json(self.data_file)

  # Metrics: lines past the epoch a run resumes from are dropped, so each epoch appears once.
  def read_metrics(self, up_to_epoch: int | None = None) -> list[dict]:
    if not self.metrics_file.exists():
      return []
    try:
      lines = [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line]
    except json.JSONDecodeError as error:
      raise JaxsegError(f"{self.metrics_file}: not JSON lines ({error})") from None
    return [m for m in lines if up_to_epoch is None or m["epoch"] <= up_to_epoch]

  @_primary_only
  def rewrite_metrics(self, history: list[dict]) -> None:
    self.metrics_file.write_text("".join(json.dumps(m) + "\n" for m in history))

  @_primary_only
  def append_metrics(self, metrics: dict) -> None:
    with self.metrics_file.open("a") as f:
      f.write(json.dumps(metrics) + "\n")

  @_primary_only
  def write_summary(self, summary: dict) -> None:
    _write_json(self.summary_file, summary)

  def read_summary(self) -> dict:
    return _read_json(self.summary_file)

  # Checkpoints
  def _manager(self, which: str) -> ocp.CheckpointManager:
    if which not in self._managers:
      self._managers[which] = ocp.CheckpointManager(
        self.path / "checkpoints" / which,
        # Asynchronous: `save` returns once the state is copied and the files are written
        # while the next epoch trains; every read and `close` waits for them first. Not
        # compressed: zstd took 3/4 of a save's CPU time to save 8% of its bytes
        # (docs/cpu-performance.md, change 14). Synchronous across processes: there Orbax's
        # background barriers left a process waiting for good in 2 of 5 resumed runs.
        options=ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, enable_async_checkpointing=jax.process_count() == 1),
        # Named handlers let `restore` read what a checkpoint holds before reading it.
        item_handlers={"model": ocp.PyTreeCheckpointHandler(use_compression=False),
                       "optimizer": ocp.PyTreeCheckpointHandler(use_compression=False),
                       "meta": ocp.JsonCheckpointHandler()},
      )
    return self._managers[which]

  def save(self, which: str, epoch: int, state: TrainState, meta: dict) -> None:
    """Start checkpointing ``state`` as ``which``; a state without optimizer state saves the
    model item alone. The files are written in the background: `wait` for them."""
    items = _items(state)
    meta = {**meta, "layout": {item: _layout(tree) for item, tree in items.items()}}
    manager = self._manager(which)
    with _writing(manager):
      manager.wait_until_finished()  # its last save, whose failure is reported here
      manager.save(epoch, args=ocp.args.Composite(
        **{item: ocp.args.PyTreeSave(_pack(tree)) for item, tree in items.items()},
        meta=ocp.args.JsonSave(meta)))

  def wait(self) -> None:
    """Wait until every checkpoint started is on disk."""
    for manager in self._managers.values():
      _finish(manager)

  def has_checkpoint(self, which: str) -> bool:
    """Whether ``which`` holds a finished checkpoint, once every write in progress has ended.
    A failed write does not count and is not raised here: training also asks while another
    error is stopping the run, and that error is the one to report."""
    for manager in self._managers.values():
      with contextlib.suppress(JaxsegError):
        _finish(manager)
    return self._manager(which).latest_step() is not None

  def restore(self, which: str, like: TrainState) -> tuple[TrainState, dict]:
    """The state saved as ``which`` (latest or best), shaped and placed like ``like``. Where
    ``like`` holds no optimizer state (evaluation), only the model item is read."""
    self.wait()
    manager = self._manager(which)
    epoch = manager.latest_step()
    if epoch is None:
      raise JaxsegError(f"{self.path}: no {which} checkpoint (training has not finished an epoch)")
    where = manager.directory / str(epoch)
    items = _items(like)
    meta = self._read(manager, epoch, where, meta=ocp.args.JsonRestore()).meta
    if "optimizer" in items and "optimizer" not in meta.get("layout", {}):
      raise JaxsegError(f"{where}: holds the model alone, no optimizer state to resume from")
    # Checked before any array is read: a failed Orbax restore dumps both trees.
    for item, tree in items.items():
      _check_layout(meta.get("layout", {}).get(item, []), _layout(tree), where)
    sharding = jax.tree.leaves(like)[0].sharding  # the state is replicated: one sharding
    restored = self._read(manager, epoch, where, **{
      item: ocp.args.PyTreeRestore(restore_args=jax.tree.map(
        lambda x: ocp.ArrayRestoreArgs(global_shape=x.shape, dtype=x.dtype, sharding=sharding),
        jax.eval_shape(_pack, tree)))
      for item, tree in items.items()})
    model = _unpack(restored["model"], items["model"])
    step, opt_state = (_unpack(restored["optimizer"], items["optimizer"])
                       if "optimizer" in items else (like.step, None))
    meta.pop("layout", None)
    return TrainState(step=step, params=model[0], model_state=model[1], opt_state=opt_state), meta

  @staticmethod
  def _read(manager: ocp.CheckpointManager, epoch: int, where: Path, **items):
    try:
      return manager.restore(epoch, args=ocp.args.Composite(**items))
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is one line
      first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      raise JaxsegError(f"{where}: cannot read this checkpoint ({first[:200]})") from None

  def close(self) -> None:
    self.wait()
    for manager in self._managers.values():
      manager.close()


@contextlib.contextmanager
def _interrupts_deferred():
  """Ctrl-C during the block takes effect when it ends: a save interrupted half-way left
  Orbax's writer threads running into interpreter shutdown, which printed their traceback."""
  if threading.current_thread() is not threading.main_thread():  # no handlers there
    yield
    return
  received = []
  previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    if received:
      signal.raise_signal(signal.SIGINT)  # to the handler it was meant for


@contextlib.contextmanager
def _writing(manager: ocp.CheckpointManager):
  """Saving or waiting for ``manager``'s writes: Ctrl-C deferred, and a failed write (a full
  disk, a folder removed) one line, the checkpoint it was to replace still the latest."""
  with _interrupts_deferred():
    try:
      yield
    except Exception as error:  # noqa: BLE001 - any failed write is one line
      manager.reload()  # Orbax dropped the step this save replaces; it is still on disk
      text = str(error).strip()
      code = re.search(r"os_error_code='(\d+)'", text)  # tensorstore's errors carry errno
      reason = os.strerror(int(code[1])) if code else (text.splitlines() or [""])[0][:200]
      raise JaxsegError(f"{manager.directory}: cannot write the checkpoint "
                        f"({reason or type(error).__name__})") from None


def _finish(manager: ocp.CheckpointManager) -> None:
  """Wait for ``manager``'s write in progress, a failed one reported as `_writing` does."""
  with _writing(manager):
    manager.wait_until_finished()


class _WithoutOrbaxErrors(logging.Filter):
  """Orbax logs a failed write with its traceback from every thread it passes through;
  `_writing` reports it in one line instead."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR or "orbax" not in Path(record.pathname).parts


logging.getLogger("absl").addFilter(_WithoutOrbaxErrors())


def _items(state: TrainState) -> dict[str, tuple]:
  """The checkpoint items of ``state``: ``model`` (what a model needs) and, where it holds
  optimizer state, ``optimizer`` (what resuming training adds)."""
  items = {"model": (state.params, state.model_state)}
  if state.opt_state is not None:
    items["optimizer"] = (state.step, state.opt_state)
  return items


def _layout(tree) -> list[list]:
  """[path, shape, dtype] of every leaf of ``tree``, in order."""
  return [[jax.tree_util.keystr(path), list(leaf.shape), leaf.dtype.name]
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def _check_layout(saved: list, expected: list, where: Path) -> None:
  """A `JaxsegError` naming the first leaf where the checkpoint and this model differ."""
  for have, want in zip(saved, expected):
    if have != want:
      raise JaxsegError(f"{where}: not a checkpoint of this model: it holds {have[0]} "
                        f"{tuple(have[1])} {have[2]} where the model has {want[0]} "
                        f"{tuple(want[1])} {want[2]}")
  if len(saved) != len(expected):
    raise JaxsegError(f"{where}: not a checkpoint of this model: {len(saved)} arrays, the "
                      f"model has {len(expected)}")


# Orbax's cost is per array, and a state has over a thousand small ones: checkpoints hold
# each item as one flat array per dtype instead (docs/training-measurements.md).
@jax.jit
def _pack(tree) -> dict[str, jax.Array]:
  groups: dict[str, list[jax.Array]] = {}
  for leaf in jax.tree.leaves(tree):
    groups.setdefault(leaf.dtype.name, []).append(leaf.ravel())
  return {dtype: jnp.concatenate(parts) for dtype, parts in groups.items()}


def _unpack(packed: dict[str, jax.Array], like):
  """The inverse of `_pack`, placed like ``like``. Cut on the host: XLA compiles a jitted cut
  into a thousand slices slowly."""
  flat = {dtype: np.asarray(array.addressable_data(0)) for dtype, array in packed.items()}
  offsets = dict.fromkeys(flat, 0)
  leaves, treedef = jax.tree.flatten(like)
  values = []
  for leaf in leaves:
    start = offsets[leaf.dtype.name]
    offsets[leaf.dtype.name] += leaf.size
    value = flat[leaf.dtype.name][start:start + leaf.size].reshape(leaf.shape)
    values.append(jax.make_array_from_callback(leaf.shape, leaf.sharding,
                                               lambda index, value=value: value[index]))
  return jax.tree.unflatten(treedef, values)


def _read_json(path: Path) -> dict:
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as error:
    raise JaxsegError(f"{path}: cannot read it as JSON ({error})") from None


def _write_json(path: Path, value: dict) -> None:
  # Write then rename: a crash never leaves half a file in place of a good one.
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(value, indent=2) + "\n")
  tmp.replace(path)
