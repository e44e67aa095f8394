"""The training command end to end, on tiny images: run folder, resume, evaluate, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jaxseg import evaluate, train
from tests.helpers import train_summary, write_folder

TINY = ["--image-size", "32", "--unet-filters", "4", "--batch-size", "2", "--loader", "plain",
        "--preset", "quick"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp("data"), 12, size=64)


def run_train(data, workdir, *extra):
  return train_summary(data, workdir, *TINY, *extra)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("runs") / "straight"
  return workdir, run_train(data, workdir, "--epochs", "2")


def test_run_folder(straight):
  workdir, summary = straight
  for name in ("config.json", "metrics.jsonl", "summary.json", "training_curves.png",
               "predictions.png"):
    assert (workdir / name).is_file(), name
  assert (workdir / "checkpoints" / "latest").is_dir() and (workdir / "checkpoints" / "best").is_dir()
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [m["epoch"] for m in history] == [1, 2]
  assert summary["images"] == {"train": 9, "val": 1, "test": 2}
  assert summary["best_epoch"] in (1, 2)
  for key in ("accuracy", "sensitivity", "precision", "iou", "dice", "mean_iou"):
    assert 0.0 <= summary["test"][key] <= 1.0
    assert 0.0 <= summary["otsu_test"][key] <= 1.0
  assert summary["target"] == "nuclei" and summary["weights"].startswith("none")


def test_evaluate_reproduces_summary(straight, capsys):
  workdir, summary = straight
  evaluate.main(["--workdir", str(workdir), "--json"])
  result = json.loads(capsys.readouterr().out)
  assert result["test"] == summary["test"]
  assert result["best_epoch"] == summary["best_epoch"]


def test_same_seed_gives_the_same_summary(data, straight, tmp_path):
  _, first = straight
  second = run_train(data, tmp_path / "again", "--epochs", "2")
  assert second["test"] == first["test"]
  assert second["otsu_test"] == first["otsu_test"] and second["best_epoch"] == first["best_epoch"]


def test_interrupted_run_resumes_to_the_uninterrupted_result(data, straight, tmp_path,
                                                             monkeypatch, capsys):
  _, expected = straight
  workdir = tmp_path / "resumed"

  def interrupt(message):  # Ctrl-C just after epoch 1's checkpoint is written
    raise KeyboardInterrupt

  monkeypatch.setattr(train.tqdm, "write", interrupt)
  with pytest.raises(SystemExit) as exit_info:
    run_train(data, workdir, "--epochs", "2")
  assert exit_info.value.code == 2
  assert "interrupted; the last finished epoch is saved" in capsys.readouterr().err
  monkeypatch.undo()
  train.main(["--workdir", str(workdir), "--resume", "--epochs", "2"])
  resumed = json.loads((workdir / "summary.json").read_text())
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [m["epoch"] for m in history] == [1, 2]
  straight_history = [json.loads(line) for line in
                      (straight[0] / "metrics.jsonl").read_text().splitlines()]
  np.testing.assert_allclose([m["train_loss"] for m in history],
                             [m["train_loss"] for m in straight_history], rtol=1e-6)
  assert resumed["test"] == pytest.approx(expected["test"], rel=1e-6)


def test_existing_run_is_not_overwritten(data, straight, capsys):
  workdir, _ = straight
  before = (workdir / "summary.json").read_text()
  with pytest.raises(SystemExit) as exit_info:
    train.main(["--data", str(data), "--workdir", str(workdir), *TINY, "--epochs", "1"])
  assert exit_info.value.code == 2
  assert "already holds a run" in capsys.readouterr().err
  assert (workdir / "summary.json").read_text() == before


def cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxseg.train", *args], capture_output=True,
                        text=True, timeout=600)


@pytest.mark.parametrize("problem", ["missing", "empty", "corrupt", "wrong_size", "values"])
def test_bad_data_is_one_line_and_exit_2(tmp_path, problem):
  import cv2

  root = tmp_path / "data"
  expected = {"missing": "not found", "empty": "no images", "corrupt": "img_004.bmp",
              "wrong_size": "img_002.png: mask is 40x64", "values": "img_003.png: mask values [9]"}
  if problem == "empty":
    (root / "images").mkdir(parents=True)
  elif problem != "missing":
    write_folder(root, 6, size=64)
  if problem == "corrupt":
    (root / "images" / "img_004.bmp").write_bytes(b"BM not really a bitmap")
  if problem == "wrong_size":
    cv2.imwrite(str(root / "masks" / "img_002.png"), np.zeros((64, 40), np.uint8))
  if problem == "values":
    cv2.imwrite(str(root / "masks" / "img_003.png"), np.full((64, 64), 9, np.uint8))
  result = cli("--data", str(root), "--workdir", str(tmp_path / "run"), *TINY, "--epochs", "1")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("jaxseg: error:") and expected[problem] in lines[-1], result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_flag_is_one_line_and_exit_2():
  result = cli("--backbone", "alexnet")
  assert result.returncode == 2
  (line,) = result.stderr.strip().splitlines()  # the error alone, not argparse's usage
  assert "invalid choice: 'alexnet'" in line and "densenet121" in line
