"""Runs at a scale (``--scale``): random crops for training, sliding windows over whole images
for evaluation, the Otsu baseline at full resolution, the median object area."""

import cv2
import numpy as np
import pytest

from jaxseg.config import Config
from jaxseg.data.enhance import Enhance
from jaxseg.data.files import read_image
from jaxseg.data.folder import find_examples
from jaxseg.data.masks import NUCLEUS
from jaxseg.data.otsu import otsu_mask
from jaxseg.data.pipeline import Loader
from jaxseg.datasets import split_loader
from jaxseg.metrics import confusion_counts
from jaxseg.scoring import count_loader, median_areas, otsu_counts
from tests.support.helpers import tiny_model, write_folder


def scaled_loader(examples, *, scale, image_size=16, target="nuclei", batch_size=2, seed=0):
  return Loader(examples, image_size=image_size, target=target, enhancement=Enhance(),
                batch_size=batch_size, seed=seed, scale=scale)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
  return find_examples(write_folder(tmp_path_factory.mktemp("data"), 4, size=64))


def test_a_crop_that_covers_the_image_gives_the_whole_image_batches(examples):
  """Scaled to the crop's size, every crop is the whole image: the batches are those of the
  resize-whole-image mode, in the same order."""
  whole = scaled_loader(examples, scale=0.0)
  cropped = scaled_loader(examples, scale=0.25)  # 64 px to 16, the crop's size
  for epoch in (0, 3):
    for (images, masks), (crops, crop_masks) in zip(
        whole.epoch(epoch, shuffle=True, drop_remainder=True),
        cropped.epoch(epoch, shuffle=True, drop_remainder=True), strict=True):
      np.testing.assert_array_equal(crops, images)
      np.testing.assert_array_equal(crop_masks, masks)


def test_crops_are_cut_from_the_scaled_images_and_repeat_with_the_epoch(examples):
  loader = scaled_loader(examples, scale=0.5)  # 32 px images, 16 px crops
  assert loader.images.shape == (4, 32, 32, 3)

  def crops(epoch):
    return [batch for batch in loader.epoch(epoch, shuffle=True, drop_remainder=True)]

  first = crops(1)
  for images, masks in first:
    assert images.shape == (2, 16, 16, 3) and masks.shape == (2, 16, 16)
    for crop in images:  # each crop lies somewhere in one of the images
      assert any(_found(crop, image) for image in loader.images)
  again, other = crops(1), crops(2)
  assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))
  assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def _found(crop: np.ndarray, image: np.ndarray) -> bool:
  side = crop.shape[0]
  return any(np.array_equal(image[y:y + side, x:x + side], crop)
             for y in range(image.shape[0] - side + 1) for x in range(image.shape[1] - side + 1))


def test_an_image_smaller_than_a_crop_is_mirrored_out(examples):
  loader = scaled_loader(examples, scale=0.125, image_size=16)  # 8 px images
  images, _ = next(loader.epoch(0, shuffle=False, drop_remainder=True))
  assert images.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(images[0, :8, :8], loader.images[0])
  np.testing.assert_array_equal(images[0, 8:, :8], loader.images[0][::-1])


@pytest.mark.parametrize("target", ["nuclei", "cell"])
def test_sliding_windows_over_an_image_one_window_wide_score_as_the_whole_image(examples,
                                                                                 target):
  _, steps, state = tiny_model(unet_depth=4, target=target)
  whole = scaled_loader(examples, scale=0.0, target=target)
  windows = scaled_loader(examples, scale=0.25, target=target)
  counts, predicted = count_loader(steps, state, whole)
  window_counts, window_predicted = count_loader(steps, state, windows)
  np.testing.assert_array_equal(window_counts, counts)
  np.testing.assert_array_equal(np.stack(window_predicted), predicted)


def test_sliding_windows_cover_a_larger_image_and_score_each_pixel_once(examples):
  """Windows overlap on a 32 px image: each pixel is counted once, against the whole mask."""
  _, steps, state = tiny_model(unet_depth=4)
  loader = scaled_loader(examples, scale=0.5)
  counts, predicted = count_loader(steps, state, loader)
  assert counts.shape == (4, 4)
  np.testing.assert_array_equal(counts.sum(axis=1), 32 * 32)
  expected = confusion_counts(np.stack(predicted), np.asarray(loader.masks))
  np.testing.assert_array_equal(counts, expected)


def test_the_otsu_baseline_is_made_at_full_resolution_then_brought_to_the_scale(examples):
  config = Config(image_size=16, scale=0.5, target="nuclei", enhance=Enhance())
  loader = split_loader(config, examples)
  masks = []
  for example in examples:  # the paper's masks: Otsu on the full image, then nearest
    full = otsu_mask(read_image(example.image), "nuclei")
    masks.append(cv2.resize(full, (32, 32), interpolation=cv2.INTER_NEAREST))
  expected = confusion_counts(np.stack(masks), np.asarray(loader.masks))
  np.testing.assert_array_equal(otsu_counts(config, loader), expected)


def test_median_areas_count_connected_objects_of_each_target():
  mask = np.zeros((40, 40), np.uint8)
  mask[2:12, 2:12] = 1  # a cell of 100 pixels around a nucleus of 9
  mask[5:8, 5:8] = NUCLEUS
  mask[20:36, 20:36] = 1  # a cell of 256 around a nucleus of 16 and one of 25
  mask[22:26, 22:26] = NUCLEUS
  mask[28:33, 28:33] = NUCLEUS
  loader = type("Masks", (), {"masks": [mask]})()
  assert median_areas(loader, "cell") == {"cytoplasm": 178.0, "nuclei": 16.0}
  assert median_areas(type("Masks", (), {"masks": [mask == NUCLEUS]})(), "nuclei") == {
    "nuclei": 16.0}
