"""Enhancement, Otsu masks and the make_masks tool (image files: test_files.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from jaxseg import metrics, plots
from jaxseg.config import Config
from jaxseg.configs import PRESETS
from jaxseg.data.augment import Augment
from jaxseg.data.enhance import PRESET_ENHANCE, Enhance, enhance
from jaxseg.data.masks import target_mask
from jaxseg.data.otsu import otsu_mask

REPO = Path(__file__).resolve().parents[1]


def disk(size, centre, radius):
  yy, xx = np.mgrid[:size, :size]
  # radius + 0.5: a round digital disk, without one-pixel spikes at its four tips.
  return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (radius + 0.5) ** 2


def cell_image(size=64, shift=(0, 0)):
  """Glass (220), one cell (150) and its nucleus (60), no noise; RGB and class mask (0/1/2)."""
  centre = (size // 2 + shift[0], size // 2 + shift[1])
  cell = disk(size, centre, 22)
  nucleus = disk(size, (centre[0] + 2, centre[1] - 1), 5)
  gray = np.full((size, size), 220, np.uint8)
  gray[cell], gray[nucleus] = 150, 60
  classes = cell.astype(np.uint8) + nucleus
  return np.repeat(gray[..., None], 3, axis=-1), classes


# Enhancement.

def test_identity_enhancement_returns_input():
  image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
  assert not Enhance().active
  assert enhance(image, Enhance()) is image


def test_brightness_and_contrast():
  image = np.array([[[0, 50, 100], [120, 122, 200]]], np.uint8)
  out = enhance(image, Enhance(brightness=10, contrast=2))
  expected = np.clip(2 * image.astype(int) + 10, 0, 255)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)
  # A negative brightness clips at 0 (cv2.convertScaleAbs would mirror it to positive values).
  darker = enhance(image, Enhance(brightness=-60))
  np.testing.assert_array_equal(darker, np.clip(image.astype(int) - 60, 0, 255))


def test_clahe_changes_low_contrast_image():
  rng = np.random.default_rng(0)
  image = rng.integers(100, 120, size=(32, 32, 3), dtype=np.uint8)
  out = enhance(image, Enhance(clahe=True, clahe_grid=4))
  assert out.shape == image.shape and out.dtype == np.uint8
  assert not np.array_equal(out, image)
  assert out.astype(float).std() > image.astype(float).std()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_enhance_and_config_json_records_it(preset):
  config = PRESETS[preset]()
  assert config.enhance.active and config.enhance == PRESET_ENHANCE
  saved = json.loads(json.dumps(config.to_dict()))  # as config.json holds it
  assert saved["enhance"]["contrast"] == 1.2 and saved["enhance"]["brightness"] == -30
  assert Config.from_dict(saved).enhance == config.enhance


def test_enhancement_figure_draws_a_panel_per_image_and_row(tmp_path):
  images = [cell_image(40, shift)[0] for shift in ((0, 0), (3, -2), (-4, 1))]
  path = tmp_path / "figure2.png"
  plots.enhancement_figure(images, 16, Enhance(brightness=-30, contrast=1.2), Augment(), path,
                           augmented_rows=2)
  figure = cv2.imread(str(path))
  panel = round(plots.PANEL_INCHES * plots.DPI)
  assert figure.shape == (4 * panel, 3 * panel, 3)  # as read, enhanced, augmented twice
  assert figure.std() > 0


# Otsu masks.

@pytest.mark.parametrize("morphology", [{}, {"erode_iterations": 0, "dilate_iterations": 0}])
def test_otsu_masks_match_drawn_regions(morphology):
  image, classes = cell_image()
  cells = otsu_mask(image, "cytoplasm", **morphology)
  nuclei = otsu_mask(image, "nuclei", **morphology)
  assert cells.dtype == np.uint8 and set(np.unique(cells).tolist()) == {0, 1}
  np.testing.assert_array_equal(cells, classes > 0)
  np.testing.assert_array_equal(nuclei, classes == 2)


def test_otsu_opening_removes_specks():
  image, classes = cell_image()
  image[3:5, 3:5] = 0  # a speck of dust on the glass
  unopened = otsu_mask(image, "cytoplasm", erode_iterations=0, dilate_iterations=0)
  assert unopened[3:5, 3:5].all()
  np.testing.assert_array_equal(otsu_mask(image, "cytoplasm", kernel_size=5), classes > 0)


# The make_masks tool.

def make_masks(*args):
  return subprocess.run(
    [sys.executable, "-m", "jaxseg.make_masks", *map(str, args)],
    cwd=REPO, capture_output=True, text=True, timeout=120,
    env={**os.environ, "PYTHONPATH": str(REPO)},
  )


def write_images(folder, shifts):
  """Images of one cell at different places and sizes, and their class masks in folder/truth."""
  (folder / "images").mkdir(parents=True)
  (folder / "truth").mkdir()
  for index, shift in enumerate(shifts):
    image, classes = cell_image(64, shift)
    image = image[: 60 + index]  # different sizes: each output must keep its image's size
    cv2.imwrite(str(folder / "images" / f"img{index}.bmp"), image[..., ::-1])
    cv2.imwrite(str(folder / "truth" / f"img{index}.png"), classes[: 60 + index])
  return folder / "images", folder / "truth"


def assert_one_line_error(result, name):
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("jaxseg: error:") and name in lines[0], lines


def test_make_masks_writes_binary_pngs_and_scores(tmp_path):
  images, truth = write_images(tmp_path, [(0, 0), (3, -4)])
  (images / "Thumbs.db").write_bytes(b"\0")
  (images / ".DS_Store").write_bytes(b"\0")
  # Hand-drawn truth: the first cell shifted by two pixels, so that the scores are below 1.
  drawn = cv2.imread(str(truth / "img0.png"), cv2.IMREAD_UNCHANGED)
  cv2.imwrite(str(truth / "img0.png"), np.roll(drawn, 2, axis=1))
  result = make_masks(images, tmp_path / "out", "--truth", truth, "--target", "nuclei")
  assert result.returncode == 0, result.stderr
  assert "Thumbs.db" in result.stderr and ".DS_Store" in result.stderr

  pred, true = [], []
  for index in range(2):
    mask = cv2.imread(str(tmp_path / "out" / f"img{index}.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (60 + index, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 255}
    pred.append(mask // 255)
    classes = cv2.imread(str(truth / f"img{index}.png"), cv2.IMREAD_UNCHANGED)
    true.append(target_mask(classes, "nuclei"))
  counts = np.concatenate([metrics.confusion_counts(p[None], t[None]) for p, t in zip(pred, true)])
  expected = metrics.scores(counts)
  assert 0 < expected["iou"] < 1
  reported = json.loads(result.stdout.strip().splitlines()[-1])
  assert reported["images"] == 2 and reported["target"] == "nuclei"
  assert reported["iou"] == pytest.approx(expected["iou"])
  assert reported["dice"] == pytest.approx(expected["dice"])
  assert f"{expected['iou']:.4f}" in result.stdout and f"{expected['dice']:.4f}" in result.stdout


def test_make_masks_missing_and_empty_folders(tmp_path):
  assert_one_line_error(make_masks(tmp_path / "nowhere", tmp_path / "out"), "nowhere")
  (tmp_path / "empty").mkdir()
  assert_one_line_error(make_masks(tmp_path / "empty", tmp_path / "out"), "empty")


@pytest.mark.parametrize("bad_name", ["x.bmp", "x.png"])
def test_make_masks_corrupt_image(tmp_path, bad_name):
  """A bad header stops the command before any output; bad pixels after the masks before them."""
  images, _ = write_images(tmp_path, [(0, 0)])
  if bad_name == "x.bmp":
    (images / bad_name).write_bytes(b"this is not a bitmap" * 10)
  else:  # a truncated file, on which OpenCV would log a warning of its own
    (images / bad_name).write_bytes(cv2.imencode(".png", cell_image()[0])[1].tobytes()[:200])
  result = make_masks(images, tmp_path / "out")
  assert_one_line_error(result, bad_name)
  assert (tmp_path / "out" / "img0.png").is_file() == (bad_name == "x.png")


def test_make_masks_missing_truth_mask(tmp_path):
  images, truth = write_images(tmp_path, [(0, 0), (2, 2)])
  (truth / "img1.png").unlink()
  assert_one_line_error(make_masks(images, tmp_path / "out", "--truth", truth), "img1.png")
