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

The checkpoints are `jaxseg.checkpoints.Checkpoints`.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import jax

from jaxseg.checkpoints import Checkpoints
from jaxseg.config import Config
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
    self.checkpoints = Checkpoints(self.path / "checkpoints")

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
