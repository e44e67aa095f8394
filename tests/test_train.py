"""The training command end to end, on tiny images: run folder, resume, evaluate, bad input."""

import json
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from jaxseg import evaluate, loop, train
from jaxseg.checkpoints import PackedPyTreeHandler, PackedRestore
from jaxseg.config import Config
from jaxseg.inference import TrainedModel
from jaxseg.metrics import scores
from jaxseg.models import build_model
from tests.support.helpers import train_summary, write_folder

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
  checkpoints = workdir / "checkpoints"
  best_epoch = summary["best_epoch"]
  # Named by the steps trained: 4 an epoch (9 training images in batches of 2).
  assert (checkpoints / "latest" / "8" / "optimizer").is_dir()  # what --resume reads
  assert (checkpoints / "best" / str(4 * best_epoch) / "model").is_dir()
  assert not (checkpoints / "best" / str(4 * best_epoch) / "optimizer").exists()  # never resumed
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [m["epoch"] for m in history] == [1, 2]
  for record in history:  # every phase of the epoch timed, within the epoch's time
    phases = record["phase_seconds"]
    assert set(phases) == {"train_s", "statistics_s", "validation_s", "checkpoint_s"}
    assert 0 < sum(phases.values()) <= record["seconds"] + 0.02  # each rounded to 0.01 s
  # The median over epochs after the first, which compiled: here epoch 2's.
  assert summary["train_images_per_second"] == history[1]["train_images_per_second"]
  assert summary["images"] == {"train": 9, "val": 1, "test": 2}
  assert summary["best_epoch"] in (1, 2)
  for key in ("accuracy", "sensitivity", "precision", "iou", "dice", "mean_iou"):
    assert 0.0 <= summary["test"][key] <= 1.0
    assert 0.0 <= summary["otsu_test"][key] <= 1.0
  assert summary["target"] == "nuclei" and summary["weights"].startswith("none")
  # Each test image's counts, named in the recorded split's order, pool to the test scores.
  recorded = json.loads((workdir / "data.json").read_text())["splits"]["test"]
  per_image = summary["test_images"]
  assert per_image["names"] == [example["name"] for example in recorded]
  assert set(per_image) == {"names", "nuclei"} and len(per_image["nuclei"]) == 2
  assert scores(np.array(per_image["nuclei"])) == summary["test"]
  # The run's wall time by phase: the epochs hold every epoch's own seconds, the start-up and
  # wrap-up the phases around them (no imports: the run was called from Python).
  wall = summary["wall_seconds"]
  assert list(wall["start_up"]) == ["data", "reading_images", "weights", "model", "run_files",
                                    "tensorboard"]
  assert list(wall["wrap_up"]) == list(loop.WRAP_UP)
  assert sum(m["seconds"] for m in history) <= wall["epochs"] + 0.02
  assert summary["train_seconds"] == round(wall["epochs"], 1)
  parts = sum(wall["start_up"].values()) + wall["epochs"] + sum(wall["wrap_up"].values())
  assert wall["total"] == pytest.approx(parts, abs=0.1)


def test_evaluate_reproduces_summary(straight, capsys):
  workdir, summary = straight
  evaluate.main(["--workdir", str(workdir), "--json"])
  result = json.loads(capsys.readouterr().out)
  assert result["test"] == summary["test"]
  assert result["best_epoch"] == summary["best_epoch"]


def test_a_checkpoint_restores_with_orbax_into_the_abstract_state(straight):
  """The best checkpoint's model item is an Orbax checkpoint of the network's nnx.State: an
  Orbax Checkpointer with jaxseg's handler restores it into the abstract state
  (docs/architecture.md's snippet), equal to what jaxseg restores."""
  workdir, _ = straight
  config = Config.from_dict(json.loads((workdir / "config.json").read_text())["config"])
  graph, abstract = nnx.split(nnx.eval_shape(lambda: build_model(config)))
  (checkpoint,) = (workdir / "checkpoints" / "best").iterdir()
  with ocp.Checkpointer(PackedPyTreeHandler()) as checkpointer:
    state = checkpointer.restore(checkpoint.resolve() / "model", args=PackedRestore(abstract))
  model = nnx.merge(graph, state)
  trained = TrainedModel(workdir)
  ours = nnx.state(trained.network())
  assert jax.tree.structure(nnx.state(model)) == jax.tree.structure(ours)
  for theirs, mine in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(ours), strict=True):
    np.testing.assert_array_equal(np.asarray(theirs), np.asarray(mine))


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

  monkeypatch.setattr(loop.tqdm, "write", interrupt)
  with pytest.raises(SystemExit) as exit_info:
    run_train(data, workdir, "--epochs", "2")
  assert exit_info.value.code == 2
  assert "interrupted; the latest checkpoint is kept" in capsys.readouterr().err
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


def test_ctrl_c_swallowed_by_a_finaliser_still_stops_training(data, tmp_path, monkeypatch,
                                                              capsys):
  """Ctrl-C that lands while a finaliser runs (TensorFlow's and JAX's garbage collection
  callbacks) is printed and dropped by Python: training must stop at its next step all the
  same, with the one-line message and the last finished epoch kept."""

  class Finaliser:
    def __del__(self):
      raise KeyboardInterrupt

  monkeypatch.setattr(loop.tqdm, "write", lambda message: Finaliser())  # after epoch 1
  with pytest.raises(SystemExit) as exit_info:
    run_train(data, tmp_path / "run", "--epochs", "3")
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "interrupted; the latest checkpoint is kept" in err
  assert "Exception ignored" not in err
  history = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in history] == [1]


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
  assert not (tmp_path / "run").exists()  # nothing left behind: the corrected command runs


@pytest.mark.parametrize("flags, expected", [
  (["--backbone", "alexnet"], "--backbone 'alexnet': choose from unet, vgg19"),
  (["--decoder", "fpn"], "argument --decoder: invalid choice: 'fpn'"),
  (["--image-size", "0"], "--image-size 0: must be at least 16 pixels"),
  (["--batch-size", "-1"], "--batch-size -1: must be at least 1"),
  (["--learning-rate", "nan"], "--learning-rate nan: must be a positive number"),
  (["--seed", "-1"], "--seed -1: must be 0 or more"),
  (["--augment.rotate-prob", "2"], "--augment.rotate-prob: augmentation probabilities"),
  (["--config", "no-such-file.py"], "--config no-such-file.py: no such file"),
])
def test_bad_flag_is_one_line_and_exit_2(tmp_path, flags, expected):
  result = cli(*flags, "--workdir", str(tmp_path / "run"))
  assert result.returncode == 2
  (line,) = result.stderr.strip().splitlines()  # the error alone, not argparse's usage
  assert expected in line
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("inside", [".", "images", "masks/run"])
def test_workdir_inside_the_data_is_refused(tmp_path, inside):
  data = write_folder(tmp_path / "data", 6, size=64)
  before = sorted(path.relative_to(data) for path in data.rglob("*"))
  result = cli("--data", str(data), "--workdir", str(data / inside), *TINY, "--epochs", "1")
  assert result.returncode == 2 and "inside the data set" in result.stderr.splitlines()[-1]
  assert sorted(path.relative_to(data) for path in data.rglob("*")) == before


def test_workdir_that_is_a_file_is_refused(data, tmp_path):
  (tmp_path / "run").write_text("a user's file")
  result = cli("--data", str(data), "--workdir", str(tmp_path / "run"), *TINY, "--epochs", "1")
  assert result.returncode == 2 and "a file, not a folder" in result.stderr.strip().splitlines()[-1]
  assert (tmp_path / "run").read_text() == "a user's file"


def test_evaluate_uses_the_recorded_split_from_any_directory(data, straight, tmp_path,
                                                             monkeypatch, capsys):
  """Images added to the data folder later never enter the run's test split; evaluate finds
  the data from another directory; a changed file is named."""
  import shutil

  workdir, summary = straight
  copy = tmp_path / "copy"
  shutil.copytree(data, copy)
  run = tmp_path / "run"
  summary = run_train(copy, run, "--epochs", "1")
  for part, suffix in (("images", "bmp"), ("masks", "png")):  # more data, after training
    for index in range(3):
      shutil.copy(copy / part / f"img_000.{suffix}", copy / part / f"zz_new_{index}.{suffix}")
  monkeypatch.chdir(tmp_path.parent)
  capsys.readouterr()
  evaluate.main(["--workdir", str(run), "--json"])
  assert json.loads(capsys.readouterr().out)["test"] == summary["test"]
  test_names = [e["name"] for e in json.loads((run / "data.json").read_text())["splits"]["test"]]
  (copy / "images" / f"{test_names[0]}.bmp").write_bytes(b"BM changed")
  with pytest.raises(SystemExit):
    evaluate.main(["--workdir", str(run)])
  assert f"{test_names[0]}.bmp: changed since the run was trained" in capsys.readouterr().err


def test_resume_refuses_changed_settings_and_names_them(straight, capsys):
  workdir, _ = straight
  for flags, named in ((["--batch-size", "4", "--no-augment"], "--augment.hflip-prob"),
                       (["--preset", "quick"], "drop --preset")):
    with pytest.raises(SystemExit):
      train.main(["--workdir", str(workdir), "--resume", *flags])
    assert named in capsys.readouterr().err


def test_non_finite_loss_stops_without_a_checkpoint(data, tmp_path, monkeypatch, capsys):
  import jax.numpy as jnp

  from jaxseg import engine

  monkeypatch.setattr(engine, "soft_jaccard_loss", lambda logits, masks: jnp.mean(logits) * jnp.nan)
  with pytest.raises(SystemExit):
    run_train(data, tmp_path / "run", "--epochs", "1", "--seed", "7")
  assert "epoch 1, step 1: training loss is nan" in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


def test_target_that_no_mask_holds_is_named(tmp_path, capsys):
  import cv2

  root = write_folder(tmp_path / "data", 6, size=64)
  for mask in (root / "masks").iterdir():  # 0/1 masks: cells only, no nucleus class
    cv2.imwrite(str(mask), (cv2.imread(str(mask), cv2.IMREAD_UNCHANGED) > 0).astype(np.uint8))
  with pytest.raises(SystemExit):
    run_train(root, tmp_path / "run", "--epochs", "1", "--target", "nuclei")
  message = capsys.readouterr().err
  assert "--target nuclei: no training mask holds it; their values are [0, 1]" in message
  assert "use --target cytoplasm" in message
