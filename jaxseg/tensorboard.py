"""TensorBoard event files of a run, beside metrics.jsonl: ``tensorboard --logdir runs``.

RUN/tensorboard/ gets, per epoch: ``train/loss``, every validation metric as ``val/NAME`` (a
3-class run's nested ones as ``val/nuclei/dice``, ``val/classes/nucleus/iou``, ...),
``train/learning_rate`` (the rate at the end of the epoch, which a schedule changes),
``train/seconds``, and ``val/predictions``: a few validation images, one a row, each beside
its true mask and the predicted one drawn over it (of a 3-class run, cells red and nuclei a
deeper red). Written with tensorboardX
(``pip install -e ".[tensorboard]"``); without it training runs as ever and says once that
TensorBoard logs are off.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxseg import plots
from jaxseg.engine import predicted_mask


class EpochWriter:
  """Per-epoch TensorBoard summaries of one run; every process calls it, process 0 writes."""

  def __init__(self, folder: Path, loader=None, *, count: int = 3, primary: bool = True,
               channels: int = 1):
    """Events go to ``folder``; ``loader``: the validation `Loader`, whose first ``count``
    images are shown; ``channels``: the model's outputs (`jaxseg.engine.predicted_mask`)."""
    try:
      from tensorboardX import SummaryWriter
    except ImportError:
      warnings.warn("tensorboardX is not installed: TensorBoard logs are off "
                    "(pip install -e \".[tensorboard]\")", stacklevel=2)
      self.active, self._writer = False, None
      return
    self.active = True
    self.channels = channels
    self._writer = SummaryWriter(str(folder)) if primary else None
    self.images = self.masks = None
    if loader is not None and count > 0:
      self.images, self.masks = _first_images(loader, count)

  def write(self, epoch: int, record: dict, *, learning_rate: float | None = None,
            predict: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """``record``: the epoch's line of metrics.jsonl; ``learning_rate``: the rate at the end
    of the epoch, after its last step (`jaxseg.engine.learning_rate_at`); ``predict``: images
    -> probabilities, run on every process (it may be a collective), written by process 0
    only."""
    if not self.active:
      return
    probabilities = None
    if predict is not None and self.images is not None:
      probabilities = predict(self.images)
    if self._writer is None:
      return
    self._writer.add_scalar("train/loss", record["train_loss"], epoch)
    for name, value in _scalars("val", record.get("val", {})):
      self._writer.add_scalar(name, value, epoch)
    if learning_rate is not None:
      self._writer.add_scalar("train/learning_rate", learning_rate, epoch)
    if "seconds" in record:
      self._writer.add_scalar("train/seconds", record["seconds"], epoch)
    if probabilities is not None:
      rows = [prediction_panel(image, mask, predicted)
              for image, mask, predicted in zip(self.images, self.masks,
                                                predicted_mask(probabilities, self.channels))]
      self._writer.add_image("val/predictions", np.concatenate(rows), epoch, dataformats="HWC")
    self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


def _scalars(prefix: str, values: dict):
  """(tag, number) of every number in ``values``, nested dicts' under their names."""
  for name, value in values.items():
    if isinstance(value, dict):
      yield from _scalars(f"{prefix}/{name}", value)
    else:
      yield f"{prefix}/{name}", value


def _first_images(loader, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
  images, masks = [], []
  for batch_images, batch_masks in loader.epoch(shuffle=False, drop_remainder=False):
    images += list(batch_images[:count - len(images)])
    masks += list(batch_masks[:count - len(masks)])
    if len(images) == count:
      break
  return (np.stack(images), np.stack(masks)) if images else (None, None)


def prediction_panel(image: np.ndarray, mask: np.ndarray, predicted: np.ndarray) -> np.ndarray:
  """Image, true mask over it, predicted mask over it, side by side (uint8 RGB); a binary
  target's masks (0/1) red, a class mask's cells red and nuclei a deeper red."""
  return np.concatenate([image, plots.class_overlay(image, mask),
                         plots.class_overlay(image, predicted)], axis=1)
