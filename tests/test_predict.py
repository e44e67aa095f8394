"""The prediction command on images of another size than the training ones, and its tiling."""

import csv
import json
import types

import cv2
import numpy as np
import pytest

from jaxseg import predict, tiling, train
from jaxseg.config import Config
from jaxseg.data.enhance import Enhance
from jaxseg.data.files import read_image, read_mask
from jaxseg.data.masks import target_mask
from jaxseg.data.synthetic import generate_sample, write_synthetic
from jaxseg.measure import measure_cells
from jaxseg.metrics import confusion_counts, scores

# The paper's learning rate, fixed here: these models must find cells after a few epochs.
TINY = ["--image-size", "64", "--unet-filters", "8", "--batch-size", "4", "--loader", "plain",
        "--preset", "quick", "--learning-rate", "3e-3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return write_synthetic(tmp_path_factory.mktemp("data") / "synthetic", 24, size=256,
                         progress=False)


def trained(data, workdir, target, epochs):
  train.main(["--data", str(data), "--workdir", str(workdir), "--target", target,
              "--epochs", str(epochs), "--cache-dir", str(workdir.parent / "cache"), *TINY])
  return workdir, json.loads((workdir / "summary.json").read_text())


@pytest.fixture(scope="module")
def cytoplasm_run(data, tmp_path_factory):
  return trained(data, tmp_path_factory.mktemp("runs") / "cytoplasm", "cytoplasm", 5)


@pytest.fixture(scope="module")
def nuclei_run(data, tmp_path_factory):
  return trained(data, tmp_path_factory.mktemp("runs") / "nuclei", "nuclei", 1)


@pytest.fixture(scope="module")
def large_image(tmp_path_factory):
  """A 300x300 BMP (training images were 256x256) that training never saw, and its mask."""
  image, mask = generate_sample(0, 100, 300)
  path = tmp_path_factory.mktemp("images") / "smear.bmp"
  cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
  return path, mask


def exit_code_and_error(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    predict.main(argv)
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return exit_info.value.code, err.strip().splitlines()[-1]


@pytest.mark.parametrize("mode", [[], ["--tiled"]], ids=["resized", "tiled"])
def test_mask_has_the_input_size_and_matches_the_truth(cytoplasm_run, large_image, tmp_path,
                                                      mode):
  run, summary = cytoplasm_run
  path, truth = large_image
  predict.main(["--run", str(run), str(path), "--out", str(tmp_path), *mode])
  mask = read_mask(tmp_path / "smear_mask.png")
  assert mask.shape == (300, 300)
  assert set(np.unique(mask).tolist()) <= {0, 1}
  dice = scores(confusion_counts(mask[None], target_mask(truth, "cytoplasm")[None]))["dice"]
  assert dice >= summary["test"]["dice"] - 0.1
  for picture in ("overlay", "segmented"):
    assert read_image(tmp_path / f"smear_{picture}.png").shape == (300, 300, 3)


def fake_model(tile, source_size, scale=0.0):
  """A model whose network answers each pixel's red value / 255: blending must keep it."""
  return predict.Segmenter(types.SimpleNamespace(
    config=Config(image_size=tile, enhance=Enhance(), scale=scale), path="fake",
    predict=lambda tiles: tiles[..., 0] / 255, source_size=source_size))


@pytest.mark.parametrize("shape", [(80, 80), (70, 45), (20, 50)])
def test_tiles_blend_back_into_the_image(shape):
  image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
  [blended] = fake_model(32, [32, 32]).probabilities([image], tiled=True)
  np.testing.assert_allclose(blended, image[..., 0] / 255, atol=1e-5)


def test_a_run_trained_at_a_scale_predicts_by_tiles_at_that_scale():
  """Without --tiled, and without the source size a resized run needs: the map is the image's
  through 16 px tiles of it scaled by a half, brought back to its size."""
  image = np.random.default_rng(1).integers(0, 256, (80, 60, 3), dtype=np.uint8)
  [blended] = fake_model(16, None, scale=0.5).probabilities([image], tiled=False)
  half = cv2.resize(image, (30, 40), interpolation=cv2.INTER_AREA)[..., 0] / np.float32(255)
  expected = cv2.resize(half.astype(np.float32), (60, 80), interpolation=cv2.INTER_LINEAR)
  np.testing.assert_allclose(blended, expected, atol=1e-5)


def test_tiling_covers_the_image_at_the_training_scale():
  assert tiling.tile_starts(32, 32) == [0]
  assert tiling.tile_starts(80, 32) == [0, 16, 32, 48]
  assert tiling.tile_starts(75, 64) == [0, 11]
  assert tiling.blend_window(8).min() > 0
  # Trained on 256-pixel images at 64: a 512-pixel image is seen at 128 pixels, then resized back.
  image = np.full((512, 512, 3), 200, np.uint8)
  [blended] = fake_model(64, [256, 256]).probabilities([image], tiled=True)
  assert blended.shape == (512, 512)
  np.testing.assert_allclose(blended, 200 / 255, atol=1e-5)


def test_bad_pixels_are_one_line_and_exit_2_keeping_earlier_outputs(cytoplasm_run, large_image,
                                                                    tmp_path, capsys):
  """A file whose header is good (all headers are checked first: test_outputs) and pixels not."""
  folder = tmp_path / "images"
  folder.mkdir()
  (folder / "a_good.bmp").write_bytes(large_image[0].read_bytes())
  cut = cv2.imencode(".png", cv2.imread(str(large_image[0])))[1].tobytes()[:300]
  (folder / "b_bad.png").write_bytes(cut)
  out = tmp_path / "out"
  argv = ["--run", str(cytoplasm_run[0]), str(folder), "--out", str(out)]
  code, error = exit_code_and_error(argv, capsys)
  assert code == 2 and error.startswith("jaxseg: error:") and "b_bad.png" in error
  assert read_mask(out / "a_good_mask.png").shape == (300, 300)
  assert not (out / "b_bad_mask.png").exists()


@pytest.mark.parametrize("problem", ["not_a_run", "missing_image", "measure_one_run", "swapped",
                                     "out_is_a_file"])
def test_bad_arguments_are_one_line_and_exit_2(problem, cytoplasm_run, nuclei_run, large_image,
                                               tmp_path, capsys):
  cytoplasm, nuclei, image = str(cytoplasm_run[0]), str(nuclei_run[0]), str(large_image[0])
  (tmp_path / "file").write_text("")
  argv, expected = {
    "not_a_run": (["--run", str(tmp_path), image], "not a jaxseg run"),
    "missing_image": (["--run", cytoplasm, str(tmp_path / "nope.bmp")], "no such file"),
    "measure_one_run": (["--run", cytoplasm, image, "--measure"], "--measure needs"),
    "swapped": (["--run", nuclei, "--nuclei-run", cytoplasm, image], "expected a cytoplasm run"),
    "out_is_a_file": (["--run", cytoplasm, image, "--out", str(tmp_path / "file")],
                      "cannot make the output folder"),
  }[problem]
  # A later --out replaces this one.
  code, error = exit_code_and_error(["--out", str(tmp_path / "out"), *argv], capsys)
  assert code == 2 and error.startswith("jaxseg: error:") and expected in error


def test_measure_with_both_runs(cytoplasm_run, nuclei_run, large_image, tmp_path):
  predict.main(["--run", str(cytoplasm_run[0]), "--nuclei-run", str(nuclei_run[0]),
                str(large_image[0]), "--out", str(tmp_path), "--measure", "--nc-threshold", "0.2"])
  mask = read_mask(tmp_path / "smear_mask.png")
  assert mask.shape == (300, 300) and set(np.unique(mask).tolist()) <= {0, 1, 2}
  cells = measure_cells(mask, 0.2)
  rows = list(csv.DictReader((tmp_path / "smear_cells.csv").open()))
  assert [int(r["cytoplasm_area"]) for r in rows] == [c.cytoplasm_area for c in cells]
  [summary] = csv.DictReader((tmp_path / "measurements.csv").open())
  assert summary["image"] == "smear.bmp" and int(summary["cells"]) == len(cells) > 0
  assert int(summary["flagged_cells"]) == sum(c.flagged for c in cells)
