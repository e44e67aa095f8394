"""TensorBoard event files of a training run, read back; training without tensorboardX."""

import json
import struct
import sys

import numpy as np
import pytest

from jaxseg import tensorboard
from tests.support.helpers import train_summary, write_folder


def read_events(folder) -> list:
  """Every event of the TFRecord files in ``folder``: length, its CRC, the record, its CRC."""
  event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
  events = []
  for path in sorted(folder.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      length, = struct.unpack("<Q", data[offset:offset + 8])
      record = data[offset + 12:offset + 12 + length]
      offset += 12 + length + 4
      events.append(event_pb2.Event.FromString(record))
  return events


def test_training_writes_scalars_and_images_per_epoch(tmp_path):
  pytest.importorskip("tensorboardX")
  data = write_folder(tmp_path / "data", 8, size=48)
  workdir = tmp_path / "run"
  train_summary(data, workdir, "--epochs", "2", "--image-size", "32", "--batch-size", "2",
                "--unet-filters", "4", "--loader", "plain", "--preset", "quick",
                "--learning-rate", "0.002")
  scalars, images = {}, {}
  for event in read_events(workdir / "tensorboard"):
    for value in event.summary.value:
      if value.HasField("image"):
        images[event.step] = value.image
      else:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert sorted(scalars["train/loss"]) == [1, 2]
  for record in metrics:
    epoch = record["epoch"]
    assert scalars["train/loss"][epoch] == pytest.approx(record["train_loss"], rel=1e-6)
    for name, value in record["val"].items():
      assert scalars[f"val/{name}"][epoch] == pytest.approx(value, rel=1e-6, abs=1e-7)
    assert scalars["train/learning_rate"][epoch] == pytest.approx(0.002)
  assert sorted(images) == [1, 2]
  # Up to 3 validation images (the quick preset's figure_images), a row each:
  # image | truth | prediction.
  shown = min(3, json.loads((workdir / "summary.json").read_text())["images"]["val"])
  assert (images[1].height, images[1].width) == (32 * shown, 96)


def test_without_tensorboardx_training_logs_are_off(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
  with pytest.warns(UserWarning, match="TensorBoard logs are off"):
    writer = tensorboard.EpochWriter(tmp_path / "tensorboard")
  calls = []
  writer.write(1, {"train_loss": 0.5, "val": {}}, predict=lambda images: calls.append(images))
  writer.close()
  assert not calls and not (tmp_path / "tensorboard").exists()


def test_prediction_panel_is_image_truth_prediction():
  image = np.full((4, 5, 3), 100, np.uint8)
  truth, predicted = np.zeros((4, 5), bool), np.ones((4, 5), bool)
  panel = tensorboard.prediction_panel(image, truth, predicted)
  assert panel.shape == (4, 15, 3)
  assert (panel[:, :10] == 100).all() and (panel[:, 10:, 0] > 100).all()
