"""A 3-class run (``--target cell``) end to end on tiny images, trained from colour-coded masks:
it trains, evaluates, predicts and exports, and its one run fills both tables of the
reproduction."""

import csv
import json
import shutil

import cv2
import jax
import numpy as np
import pytest

from jaxseg import engine, evaluate, export, inspect, predict, reproduce
from jaxseg.bench import steps as bench
from jaxseg.config import Config
from jaxseg.data.enhance import Enhance
from jaxseg.data.files import read_mask
from jaxseg.data.folder import find_examples
from jaxseg.data.masks import (
  CLASS_NAMES,
  NUCLEUS,
  TARGETS,
  parse_mask_colors,
  target_mask,
)
from jaxseg.data.pipeline import Loader
from jaxseg.datasets import make_loaders
from jaxseg.inference import TrainedModel
from jaxseg.measure import measure_cells
from jaxseg.metrics import confusion_counts, scores
from tests.support.helpers import train_summary, write_folder
from tests.test_tensorboard import read_events

SIZE = 32
MASK_COLORS = "0,0,0:0 255,0,0:1 0,0,255:2"
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)  # RGB of class 0, 1, 2
SETTINGS = ["--image-size", str(SIZE), "--unet-filters", "4", "--batch-size", "2", "--epochs",
            "1", "--loader", "plain", "--preset", "quick", "--mask-colors", MASK_COLORS]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """The helpers' tiny data set, its class masks saved as colours."""
  root = write_folder(tmp_path_factory.mktemp("data"), 8, size=48)
  for path in (root / "masks").iterdir():
    classes = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), cv2.cvtColor(COLOURS[classes], cv2.COLOR_RGB2BGR))
  return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("runs") / "unet-cell"
  return workdir, train_summary(data, workdir, *SETTINGS, "--target", "cell")


def test_colour_masks_load_as_their_classes(data):
  examples = find_examples(data)
  loader = Loader(examples, image_size=SIZE, target="cell", enhancement=Enhance(), batch_size=2,
                  seed=0, kind="plain", mask_colours=parse_mask_colors(MASK_COLORS))
  for example, mask in zip(examples, loader.masks):
    rgb = cv2.cvtColor(cv2.imread(str(example.mask)), cv2.COLOR_BGR2RGB)
    classes = np.argmax((rgb[..., None, :] == COLOURS).all(-1), axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(
      mask, cv2.resize(classes, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST))
  assert set(np.unique(loader.masks).tolist()) == {0, 1, 2}


def test_a_run_scores_both_targets_and_each_class(run):
  workdir, summary = run
  assert summary["target"] == "cell"
  for scored in (summary["test"], summary["otsu_test"]):
    for target in TARGETS:  # a binary run's keys
      assert set(scored[target]) == set(scores(np.ones((1, 4))))
    assert list(scored["classes"]) == list(CLASS_NAMES)
    assert scored["mean_iou"] == pytest.approx(np.mean([scored["classes"][name]["iou"]
                                                        for name in CLASS_NAMES]))
  (epoch,) = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
  assert epoch["val"]["dice"] == pytest.approx((epoch["val"]["nuclei"]["dice"]
                                                + epoch["val"]["cytoplasm"]["dice"]) / 2)
  for picture in ("training_curves.png", "predictions.png"):
    assert (workdir / picture).stat().st_size > 0
  # Per test image, each target's counts and the confusion matrix they come from.
  per_image = summary["test_images"]
  assert set(per_image) == {"names", "nuclei", "cytoplasm", "matrices"}
  matrices = np.array(per_image["matrices"])
  assert matrices.shape == (len(per_image["names"]), 3, 3)
  for target in TARGETS:
    assert scores(np.array(per_image[target])) == pytest.approx(summary["test"][target], rel=1e-12)


def test_test_scores_are_those_of_the_predicted_class_masks(run, capsys):
  """Evaluation repeats the summary; the scores of each target are those of the binary masks of
  the target in the model's predicted class masks."""
  workdir, summary = run
  evaluate.main(["--workdir", str(workdir), "--json"])
  result = json.loads(capsys.readouterr().out)
  assert result["test"] == summary["test"] and result["otsu_test"] == summary["otsu_test"]
  trained = TrainedModel(workdir)
  loader = make_loaders(trained.config, trained.splits(), names=("test",))["test"]
  predicted = engine.predicted_mask(trained.predict(loader.images), 3)
  for target in TARGETS:
    counts = confusion_counts(target_mask(predicted, target), target_mask(loader.masks, target))
    assert scores(counts) == pytest.approx(summary["test"][target])


def test_tensorboard_shows_both_targets_and_the_classes(run):
  pytest.importorskip("tensorboardX")
  workdir, _ = run
  tags, images = set(), []
  for event in read_events(workdir / "tensorboard"):
    for value in event.summary.value:
      tags.add(value.tag)
      if value.HasField("image"):
        images.append(value.image)
  assert {"val/dice", "val/nuclei/dice", "val/cytoplasm/dice",
          "val/classes/nucleus/iou"} <= tags
  assert images and images[0].width == 3 * SIZE


@pytest.mark.parametrize("mode", [[], ["--tiled"]], ids=["resized", "tiled"])
def test_predict_writes_one_class_mask_and_measurements(run, data, tmp_path, mode):
  workdir, _ = run
  image = data / "images" / "img_000.bmp"
  predict.main(["--run", str(workdir), str(image), "--out", str(tmp_path), "--measure", *mode])
  mask = read_mask(tmp_path / "img_000_mask.png")
  assert mask.shape == (48, 48) and set(np.unique(mask).tolist()) <= {0, 1, 2}
  [probabilities] = predict.Segmenter(TrainedModel(workdir)).probabilities(
    [cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)], tiled=bool(mode))
  np.testing.assert_array_equal(mask, probabilities.argmax(-1))
  rows = list(csv.DictReader((tmp_path / "img_000_cells.csv").open()))
  cells = measure_cells(mask)
  assert [int(row["nucleus_area"]) for row in rows] == [cell.nucleus_area for cell in cells]
  assert sum(cell.nucleus_area for cell in cells) == (mask == NUCLEUS).sum()


def test_predict_refuses_a_nuclei_run_beside_a_3class_run(run, data, tmp_path, capsys):
  workdir, _ = run
  with pytest.raises(SystemExit) as exit_info:
    predict.main(["--run", str(workdir), "--nuclei-run", str(workdir),
                  str(data / "images" / "img_000.bmp"), "--out", str(tmp_path / "out")])
  assert exit_info.value.code == 2
  assert "is a 3-class run, which finds nuclei itself" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_export_gives_predicts_class_probabilities(run, tmp_path):
  workdir, _ = run
  out = tmp_path / "cell.stablehlo"
  export.main(["--run", str(workdir), "--out", str(out), "--platforms", "cpu"])
  info = json.loads((tmp_path / "cell.stablehlo.json").read_text())
  assert info["output"]["shape"] == ["batch", SIZE, SIZE, 3]
  assert info["output"]["channels"] == list(CLASS_NAMES) and "threshold" not in info
  images = np.random.default_rng(5).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
  expected = np.stack(predict.Segmenter(TrainedModel(workdir)).probabilities(list(images),
                                                                             tiled=False))
  probabilities = np.asarray(jax.export.deserialize(bytearray(out.read_bytes())).call(images))
  np.testing.assert_allclose(probabilities, expected, rtol=0, atol=3e-5)
  np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)


def test_export_onnx_gives_class_probabilities(run, tmp_path):
  pytest.importorskip("jax2onnx")
  workdir, _ = run
  out = tmp_path / "cell.onnx"
  export.main(["--run", str(workdir), "--format", "onnx", "--out", str(out)])
  info = json.loads((tmp_path / "cell.onnx.json").read_text())
  assert info["output"]["shape"] == ["batch", SIZE, SIZE, 3]
  assert info["onnxruntime_max_abs_difference"] <= 1e-4


def test_one_3class_run_fills_both_tables(run, data, tmp_path):
  """The reproduction takes the finished run as its own (no training) and scores it in Table 1
  and Table 2."""
  workdir, summary = run
  out = tmp_path / "out"
  shutil.copytree(workdir, out / "runs" / "unet-cell")
  reproduce.main(["--data", str(data), "--out", str(out), "--methods", "unet", "--targets",
                  "cell", *SETTINGS, "--weights", "none"])
  keys = [key for _, key in reproduce.COLUMNS]
  for target, name in (("cytoplasm", "table1.md"), ("nuclei", "table2.md")):
    lines = (out / name).read_text().splitlines()
    [row] = [line for line in lines if line.startswith("| U-Net")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[0] == "U-Net, 3-class"
    dice = f"{100 * summary['test'][target]['dice']:.2f}"
    assert cells[1].startswith(f"{dice} [")
    assert cells[5:5 + len(keys)] == [f"{100 * summary['test'][target][key]:.2f}" for key in keys]
  assert json.loads((out / "results.json").read_text())["figure_method"] == "unet-cell"


def test_inspect_and_the_bench_count_three_head_channels(capsys):
  config = Config(unet_filters=4, image_size=SIZE, batch_size=2)
  binary, cell = (inspect.abstract_network(config.replace(target=target))
                  for target in ("nuclei", "cell"))
  assert cell.head.kernel.shape[-1] == 3
  # Two more output channels on the last decoder block's 4: a kernel column and a bias each.
  assert inspect.variable_count(cell) - inspect.variable_count(binary) == 2 * (4 + 1)
  _, masks = bench.random_batch(2, SIZE, target="cell")
  assert set(np.unique(masks).tolist()) == {0, 1, 2}
  with pytest.raises(SystemExit):
    bench.main(["--target", "cell", "--peer", "smp", "--backbone", "unet"])
  assert "the peers train binary models" in capsys.readouterr().err
