"""A run folder: config, per-epoch metrics, Orbax checkpoints of the latest and best epoch.

```
RUN/config.json          the settings, as `Config.to_dict` writes them
RUN/metrics.jsonl        one line per epoch
RUN/checkpoints/latest/  the last finished epoch (what --resume continues)
RUN/checkpoints/best/    the epoch with the best validation Dice (what evaluate reloads)
RUN/summary.json         the final test metrics, written when training ends
```
"""

from __future__ import annotations

import functools
import json
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
    self.curves_file = self.path / "training_curves.png"
    self.figure_file = self.path / "predictions.png"
    self._managers = {}

  def exists(self) -> bool:
    return self.config_file.exists()

  @_primary_only
  def write_config(self, config: Config, extra: dict) -> None:
    self.path.mkdir(parents=True, exist_ok=True)
    _write_json(self.config_file, {**extra, "config": config.to_dict()})

  def read_config(self) -> tuple[Config, dict]:
    if not self.exists():
      raise JaxsegError(f"{self.path}: not a jaxseg run (no config.json)")
    saved = json.loads(self.config_file.read_text())
    return Config.from_dict(saved.pop("config")), saved

  # Metrics: lines past the epoch a run resumes from are dropped, so each epoch appears once.
  def read_metrics(self, up_to_epoch: int | None = None) -> list[dict]:
    if not self.metrics_file.exists():
      return []
    lines = [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line]
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
    return json.loads(self.summary_file.read_text())

  # Checkpoints
  def _manager(self, which: str) -> ocp.CheckpointManager:
    if which not in self._managers:
      self._managers[which] = ocp.CheckpointManager(
        self.path / "checkpoints" / which,
        # Synchronous: writing the state takes a fraction of a second, and a save that has
        # returned is on disk when a run is interrupted.
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                             enable_async_checkpointing=False),
        # Named handlers let `restore` read what a checkpoint holds before reading it.
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()},
      )
    return self._managers[which]

  def save(self, which: str, epoch: int, state: TrainState, meta: dict) -> None:
    self._manager(which).save(epoch, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_pack(state)), meta=ocp.args.JsonSave(meta)))

  def has_checkpoint(self, which: str) -> bool:
    return self._manager(which).latest_step() is not None

  def restore(self, which: str, like: TrainState) -> tuple[TrainState, dict]:
    """The state saved as ``which`` (latest or best), shaped and placed like ``like``."""
    manager = self._manager(which)
    epoch = manager.latest_step()
    if epoch is None:
      raise JaxsegError(f"{self.path}: no {which} checkpoint to restore")
    packed = jax.eval_shape(_pack, like)
    # Checked before reading: a failed Orbax restore dumps both trees, and leaves reads of
    # the other arrays running.
    if _layout(manager.item_metadata(epoch)["state"]) != _layout(packed):
      raise JaxsegError(f"{manager.directory / str(epoch)}: not a checkpoint of this model "
                        "(another model's, or written by an older jaxseg)")
    sharding = jax.tree.leaves(like)[0].sharding  # the state is replicated: one sharding
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                            packed)
    restored = manager.restore(epoch, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return _unpack(restored.state, like), restored.meta

  def close(self) -> None:
    for manager in self._managers.values():
      manager.close()


# Orbax spends about 2 ms on each array it saves, and a DenseNet121 state has 1 476 of them
# (2.6 s a save on a CPU): checkpoints hold the state as one flat array per dtype instead.
@jax.jit
def _pack(state: TrainState) -> dict[str, jax.Array]:
  groups: dict[str, list[jax.Array]] = {}
  for leaf in jax.tree.leaves(state):
    groups.setdefault(leaf.dtype.name, []).append(leaf.ravel())
  return {dtype: jnp.concatenate(parts) for dtype, parts in groups.items()}


def _layout(packed) -> dict:
  """Shape and dtype of each packed array (of arrays or their metadata); {} for other trees."""
  if not hasattr(packed, "items"):  # Orbax's tree metadata is a mapping, not a dict
    return {}
  return {dtype: (tuple(getattr(array, "shape", ())), str(getattr(array, "dtype", "")))
          for dtype, array in packed.items()}


def _unpack(packed: dict[str, jax.Array], like: TrainState) -> TrainState:
  """The inverse of `_pack`, placed like ``like``. Cut on the host: a jitted cut into 1 476
  slices takes XLA 15 s to compile."""
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


def _write_json(path: Path, value: dict) -> None:
  # Write then rename: a crash never leaves half a file in place of a good one.
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(value, indent=2) + "\n")
  tmp.replace(path)
