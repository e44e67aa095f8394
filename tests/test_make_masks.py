"""python -m jaxseg.make_masks: masks the paper's way, scored against true masks where given."""

import json

import cv2
import numpy as np
import pytest

from jaxseg import metrics
from jaxseg.data.masks import target_mask
from tests.support.commands import assert_one_line_error, run_command
from tests.support.images import cell_image


def make_masks(*args):
  return run_command("make_masks", *args)


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
