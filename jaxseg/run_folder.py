"""A run folder: config, per-epoch metrics, Orbax checkpoints of the latest and best epoch.

```
RUN/config.json          the settings, as `Config.to_dict` writes them
RUN/data.json            the split: every file of train, validation and test, fingerprinted
RUN/metrics.jsonl        one line per epoch
RUN/checkpoints/latest/  the last finished epoch, or a step into the next (what --resume continues)
RUN/checkpoints/best/    the model of the epoch with the best validation Dice (what evaluate reloads)
RUN/tensorboard/         TensorBoard events of each epoch (where tensorboardX is installed)
RUN/summary.json         the final test metrics, written when training ends
RUN/preempted.json       each time a SIGTERM stopped the run: when, where, the checkpoint kept
RUN/writer.lock          locked by the process that trains here (its pid and host inside)
```

The checkpoints are `jaxseg.checkpoints.Checkpoints`. One process writes a run folder: the
one that holds its lock (`create`), an OS file lock that the kernel releases when the process
ends, however it ends. Readers take no lock, and read only finished checkpoints. The JSON files
and metrics.jsonl are written whole or not at all (`jaxseg.outputs.write_atomically`).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import functools
import json
import os
import shutil
import socket
import warnings
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxseg.checkpoints import Checkpoints
from jaxseg.config import Config
from jaxseg.errors import JaxsegError, write_failure
from jaxseg.outputs import write_atomically


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
    self.preempted_file = self.path / "preempted.json"
    self.lock_file = self.path / "writer.lock"
    self.checkpoints = Checkpoints(self.path / "checkpoints")
    self._lock = None  # the lock file, open while this process holds it (closed, it is free)

  def exists(self) -> bool:
    return self.config_file.exists()

  def create(self) -> None:
    """Make the run folder (refusing a path that is a file or cannot be written) and lock it
    until `close`: a second process that would write here, while this one does, stops with
    one line naming this one. Process 0 holds the lock for every process of a multi-host run."""
    if self.path.exists() and not self.path.is_dir():
      raise JaxsegError(f"--workdir {self.path}: a file, not a folder")
    try:
      self.path.mkdir(parents=True, exist_ok=True)
      probe = self.path / f".jaxseg-write-test-{jax.process_index()}"  # one per process
      probe.touch()
      probe.unlink()
    except OSError as error:
      raise JaxsegError(f"--workdir {self.path}: cannot write there ({error.strerror})") from None
    refusal = self._take_lock() if self.primary else None
    # Every process stops where process 0 could not lock the folder.
    if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(np.int32(bool(refusal))):
      refusal = refusal or f"--workdir {self.path}: in use (see process 0's message)"
    if refusal:
      raise JaxsegError(refusal)

  def _take_lock(self) -> str | None:
    """Lock the folder for this process, or say which process holds it."""
    try:
      lock = open(self.lock_file, "a+")  # noqa: SIM115 - held until `close`
    except OSError as error:
      return f"{self.lock_file}: cannot write it ({write_failure(self.lock_file, error)})"
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      lock.close()
      if error.errno in (errno.EAGAIN, errno.EACCES):
        return (f"--workdir {self.path}: in use by {self._holder()}; one process at a time "
                "writes a run folder")
      warnings.warn(f"{self.lock_file}: this file system does not lock files ({error.strerror}); "
                    "nothing stops a second process from writing the run folder", stacklevel=2)
      return None
    if os.fstat(lock.fileno()).st_ino != _inode(self.lock_file):  # removed as this one locked it
      lock.close()
      return f"--workdir {self.path}: another process discarded it meanwhile; run again"
    try:
      lock.truncate(0)
      lock.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": _now()}) + "\n")
      lock.flush()
    except OSError as error:
      lock.close()
      return f"{self.lock_file}: cannot write it ({write_failure(self.lock_file, error)})"
    self._lock = lock
    return None

  def _holder(self) -> str:
    """Who holds the lock, as its file records it."""
    try:
      holder = json.loads(self.lock_file.read_text())
      return f"process {holder['pid']} on {holder['host']} (since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
      return "another process"

  def close(self) -> None:
    """Wait for the checkpoints being written, then give up the folder's lock."""
    try:
      self.checkpoints.close()
    finally:
      if self._lock is not None:
        self._lock.close()  # closing the last descriptor releases the lock
        self._lock = None

  @_primary_only
  def discard(self, created_folder: bool) -> None:
    """Remove what a new run wrote before its first checkpoint, so the same command can run
    again; the folder itself only where this run created it."""
    for name in (self.config_file, self.data_file, self.metrics_file, self.lock_file):
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
    _write(self.metrics_file, "".join(json.dumps(m) + "\n" for m in history))

  @_primary_only
  def append_metrics(self, metrics: dict) -> None:
    # The whole file again, not appended: a full disk never leaves half a line in it.
    before = self.metrics_file.read_text() if self.metrics_file.exists() else ""
    _write(self.metrics_file, before + json.dumps(metrics) + "\n")

  @_primary_only
  def write_summary(self, summary: dict) -> None:
    _write_json(self.summary_file, summary)

  def read_summary(self) -> dict:
    return _read_json(self.summary_file)

  def record_preemption(self) -> None:
    """Add to ``preempted.json`` that a SIGTERM stopped the run now, and where its latest
    checkpoint leaves it (every process reads that, process 0 writes). A write that fails is a
    warning: the checkpoint is what a resumed run needs."""
    try:
      meta = self.checkpoints.meta("latest") or {}
      if not self.primary:
        return
      before = (_read_json(self.preempted_file).get("preemptions", [])
                if self.preempted_file.exists() else [])
      _write_json(self.preempted_file, {"preemptions": [*before, {
        "time": _now(), "signal": "SIGTERM", "host": socket.gethostname(), "pid": os.getpid(),
        "epochs_done": meta.get("epoch", 0), "steps_into_next_epoch": meta.get("steps", 0)}]})
    except JaxsegError as error:
      warnings.warn(str(error), stacklevel=2)


def _read_json(path: Path) -> dict:
  try:
    return json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as error:
    raise JaxsegError(f"{path}: cannot read it as JSON ({error})") from None


def _write_json(path: Path, value: dict) -> None:
  _write(path, json.dumps(value, indent=2) + "\n")


def _write(path: Path, text: str) -> None:
  try:
    write_atomically(path, text)
  except OSError as error:
    raise JaxsegError(f"{path}: cannot write it ({write_failure(path, error)})") from None


def _inode(path: Path) -> int | None:
  try:
    return path.stat().st_ino
  except OSError:
    return None


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
