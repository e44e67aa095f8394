"""A run's checkpoints: Orbax checkpoints of the NNX state tree, written in the background.

```
RUN/checkpoints/latest/STEP/model/      the model's nnx.State: parameters, BatchNorm statistics
RUN/checkpoints/latest/STEP/optimizer/  {"step", "opt_state"}: what resuming training adds
RUN/checkpoints/latest/STEP/meta/       JSON: epoch, best Dice, where in the next epoch it is
RUN/checkpoints/best/STEP/...           the model and meta of the best validation epoch
```

STEP counts training steps from the start of the run: a checkpoint within an epoch has its
place in the order, and Orbax's saves tell JAX's preemption service the same count that
training does (`jaxseg.interrupts.between_steps`).

Each tree item is written by `PackedPyTreeHandler`, an Orbax checkpoint handler: Orbax's cost
is per array, and a DenseNet121 train state has 1,476 of them, so the handler writes one array
per dtype, through Orbax's own PyTree handler, with every array's path, shape and dtype beside
them ("Checkpoints in the background" in docs/performance.md). Orbax restores an item into
the network's abstract state through it (docs/architecture.md has the snippet), and checks the
layout first: a checkpoint of another model is one line naming the first array that differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxseg.engine import TrainState
from jaxseg.errors import JaxsegError, write_failure
from jaxseg.interrupts import deferred

FORMAT = 2  # the items as `_items` makes them, each packed by `PackedPyTreeHandler`


class Checkpoints:
  """The ``latest`` and ``best`` checkpoints under ``folder``, one kept of each."""

  def __init__(self, folder: Path):
    self.folder = Path(folder)
    self._managers: dict[str, ocp.CheckpointManager] = {}

  def _manager(self, which: str) -> ocp.CheckpointManager:
    if which not in self._managers:
      self._managers[which] = ocp.CheckpointManager(
        self.folder / which,
        # Asynchronous: `save` returns once the state is copied and the files are written
        # while the next epoch trains; every read and `close` waits for them first. Not
        # compressed: compression takes most of a save's CPU time and saves few bytes of
        # float weights ("Checkpoints in the background" in docs/performance.md). Synchronous across processes:
        # there Orbax's background barriers can leave a process waiting for good.
        options=ocp.CheckpointManagerOptions(
          max_to_keep=1, create=True, enable_async_checkpointing=jax.process_count() == 1),
        # Named handlers let `restore` read what a checkpoint holds before reading it.
        item_handlers={"model": PackedPyTreeHandler(), "optimizer": PackedPyTreeHandler(),
                       "meta": ocp.JsonCheckpointHandler()},
      )
    return self._managers[which]

  def save(self, which: str, step: int, state: TrainState, meta: dict) -> None:
    """Start checkpointing ``state`` after training ``step`` as ``which``; a state without
    optimizer state saves the model item alone. The files are written in the background:
    `wait` for them."""
    manager = self._manager(which)
    with _writing(manager):
      manager.wait_until_finished()  # its last save, whose failure is reported here
      manager.save(step, args=ocp.args.Composite(
        **{item: PackedSave(tree) for item, tree in _items(state).items()},
        meta=ocp.args.JsonSave({**meta, "format": FORMAT})))

  def writing(self) -> bool:
    """Whether a checkpoint is being written in the background."""
    return any(manager.is_saving_in_progress() for manager in self._managers.values())

  def wait(self) -> None:
    """Wait until every checkpoint started is on disk."""
    for manager in self._managers.values():
      _finish(manager)

  def has(self, which: str) -> bool:
    """Whether ``which`` holds a finished checkpoint, once every write in progress has ended.
    A failed write does not count and is not raised here: training also asks while another
    error is stopping the run, and that error is the one to report."""
    for manager in self._managers.values():
      with contextlib.suppress(JaxsegError):
        _finish(manager)
    return self._manager(which).latest_step() is not None

  def restore(self, which: str, like: TrainState) -> tuple[TrainState, dict]:
    """The state saved as ``which`` (latest or best), shaped, typed and placed like ``like``
    (arrays or `jax.ShapeDtypeStruct`s with their sharding). Where ``like`` holds no optimizer
    state (evaluation), only the model item is read.

    Only finished checkpoints are read (Orbax writes into a temporary folder and renames it);
    one that a run still training there replaces while it is read is read again, newer."""
    self.wait()
    manager = self._manager(which)
    try:
      return self._restore(manager, which, like)
    except JaxsegError:
      read = manager.latest_step()
      manager.reload()
      if manager.latest_step() == read:
        raise
      return self._restore(manager, which, like)

  def meta(self, which: str) -> dict | None:
    """What the checkpoint saved as ``which`` records (epoch, best Dice, ...), or None where
    there is none."""
    self.wait()
    manager = self._manager(which)
    step = manager.latest_step()
    return None if step is None else self._meta(manager, step)

  def _meta(self, manager: ocp.CheckpointManager, step: int) -> dict:
    where = manager.directory / str(step)
    meta = _read(manager, step, where, meta=ocp.args.JsonRestore()).meta
    if meta.get("format") != FORMAT:
      raise JaxsegError(f"{where}: written by an older jaxseg, whose checkpoints this version "
                        "does not read")
    return meta

  def _restore(self, manager: ocp.CheckpointManager, which: str, like: TrainState):
    step = manager.latest_step()
    if step is None:
      raise JaxsegError(f"{self.folder.parent}: no {which} checkpoint (training has not "
                        "finished an epoch)")
    where = manager.directory / str(step)
    items = _items(like)
    meta = self._meta(manager, step)
    if "optimizer" in items and not (where / "optimizer").is_dir():
      raise JaxsegError(f"{where}: holds the model alone, no optimizer state to resume from")
    restored = _read(manager, step, where,
                     **{item: PackedRestore(tree) for item, tree in items.items()})
    params, model_state = nnx.split_state(restored["model"], nnx.Param, ...)
    step, opt_state = like.step, None
    if "optimizer" in items:
      step, opt_state = restored["optimizer"]["step"], restored["optimizer"]["opt_state"]
    meta.pop("format", None)
    return TrainState(step=step, params=params, model_state=model_state,
                      opt_state=opt_state), meta

  def close(self) -> None:
    self.wait()
    for manager in self._managers.values():
      manager.close()


def _items(state: TrainState) -> dict:
  """The checkpoint items of ``state``: ``model``, the network's whole nnx.State (what a model
  needs), and, where it holds optimizer state, ``optimizer`` (what resuming training adds)."""
  items = {"model": nnx.merge_state(state.params, state.model_state)}
  if state.opt_state is not None:
    items["optimizer"] = {"step": state.step, "opt_state": state.opt_state}
  return items


def _read(manager: ocp.CheckpointManager, step: int, where: Path, **items):
  try:
    return manager.restore(step, args=ocp.args.Composite(**items))
  except LayoutError as error:
    raise JaxsegError(f"{where}: not a checkpoint of this model: {error}") from None
  except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is one line
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise JaxsegError(f"{where}: cannot read this checkpoint ({first[:200]})") from None


@contextlib.contextmanager
def _writing(manager: ocp.CheckpointManager):
  """Saving or waiting for ``manager``'s writes: an interrupt waits for them, and a failed
  write (a full disk, a folder removed) is one line, the checkpoint it was to replace still
  the latest."""
  with deferred():
    try:
      yield
    except Exception as error:  # noqa: BLE001 - any failed write is one line
      manager.reload()  # Orbax dropped the step this save replaces; it is still on disk
      if not isinstance(error, OSError):
        text = str(error).strip()
        code = re.search(r"os_error_code='(\d+)'", text)  # tensorstore's errors carry errno
        error = (OSError(int(code[1]), os.strerror(int(code[1]))) if code else
                 OSError((text.splitlines() or [type(error).__name__])[0][:200]))
      raise JaxsegError(f"{manager.directory}: cannot write the checkpoint "
                        f"({write_failure(manager.directory, error)})") from None


def _finish(manager: ocp.CheckpointManager) -> None:
  """Wait for ``manager``'s write in progress, a failed one reported as `_writing` does."""
  with _writing(manager):
    manager.wait_until_finished()


class LayoutError(ValueError):
  """A checkpoint whose arrays are not those of the tree it is restored into."""


class PackedPyTreeHandler(ocp.AsyncCheckpointHandler):
  """A PyTree as one flat array per dtype, written by Orbax's PyTree handler, with the path,
  shape and dtype of every leaf in the checkpoint's custom metadata. A restore checks that
  layout against the tree it restores into before it reads any array."""

  def __init__(self):
    self._arrays = ocp.PyTreeCheckpointHandler(use_compression=False)

  async def async_save(self, directory, args: PackedSave):
    return await self._arrays.async_save(directory, args=ocp.args.PyTreeSave(
      _pack(args.item), custom_metadata={"layout": _layout(args.item)}))

  def save(self, directory, args: PackedSave) -> None:
    self._arrays.save(directory, args=ocp.args.PyTreeSave(
      _pack(args.item), custom_metadata={"layout": _layout(args.item)}))

  def restore(self, directory, args: PackedRestore):
    saved = self._arrays.metadata(directory).custom_metadata or {}
    _check_layout(saved.get("layout", []), _layout(args.item))
    packed = self._arrays.restore(directory, args=ocp.args.PyTreeRestore(
      restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                jax.eval_shape(_pack, args.item))))
    return _unpack(packed, args.item)

  def metadata(self, directory):
    return self._arrays.metadata(directory)

  def finalize(self, directory) -> None:
    self._arrays.finalize(directory)

  def close(self) -> None:
    self._arrays.close()


@ocp.args.register_with_handler(PackedPyTreeHandler, for_save=True)
@dataclasses.dataclass
class PackedSave(ocp.args.CheckpointArgs):
  """Save ``item``, a PyTree of arrays, as one array per dtype and its layout."""

  item: Any


@ocp.args.register_with_handler(PackedPyTreeHandler, for_restore=True)
@dataclasses.dataclass
class PackedRestore(ocp.args.CheckpointArgs):
  """Restore into the structure of ``item``, a PyTree of arrays or `jax.ShapeDtypeStruct`s
  (an abstract NNX state): each array shaped, typed and placed like its leaf (on the default
  device where a leaf has no sharding)."""

  item: Any


@jax.jit
def _pack(tree) -> dict[str, jax.Array]:
  groups: dict[str, list[jax.Array]] = {}
  for leaf in jax.tree.leaves(tree):
    groups.setdefault(jnp.dtype(leaf.dtype).name, []).append(jnp.ravel(leaf))
  return {dtype: jnp.concatenate(parts) for dtype, parts in groups.items()}


def _unpack(packed: dict[str, np.ndarray], like):
  """The inverse of `_pack`, each leaf placed like ``like``'s. Cut on the host: XLA compiles a
  jitted cut into a thousand slices slowly."""
  offsets = dict.fromkeys(packed, 0)
  leaves, treedef = jax.tree.flatten(like)
  values = []
  for leaf in leaves:
    dtype = jnp.dtype(leaf.dtype).name
    start, size = offsets[dtype], math.prod(leaf.shape)
    offsets[dtype] += size
    value = np.asarray(packed[dtype][start:start + size]).reshape(leaf.shape)
    sharding = getattr(leaf, "sharding", None)
    values.append(jax.device_put(value) if sharding is None else jax.make_array_from_callback(
      leaf.shape, sharding, lambda index, value=value: value[index]))
  return jax.tree.unflatten(treedef, values)


def _layout(tree) -> list[list]:
  """[path, shape, dtype] of every leaf of ``tree``, in order."""
  return [[jax.tree_util.keystr(path), list(leaf.shape), jnp.dtype(leaf.dtype).name]
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def _check_layout(saved: list, expected: list) -> None:
  """A `LayoutError` naming the first leaf where the checkpoint and the tree differ."""
  for have, want in zip(saved, expected):
    if have != want:
      raise LayoutError(f"it holds {have[0]} {tuple(have[1])} {have[2]} where the model has "
                        f"{want[0]} {tuple(want[1])} {want[2]}")
  if len(saved) != len(expected):
    raise LayoutError(f"{len(saved)} arrays, the model has {len(expected)}")
