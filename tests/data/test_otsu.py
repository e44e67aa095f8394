"""Enhancement and Otsu masks (image files: test_files.py; the command: test_make_masks.py)."""

import json

import cv2
import numpy as np
import pytest

from jaxseg import plots
from jaxseg.config import Config
from jaxseg.configs import PRESETS
from jaxseg.data.augment import Augment
from jaxseg.data.enhance import PRESET_ENHANCE, Enhance, enhance
from jaxseg.data.otsu import otsu_mask
from tests.support.images import cell_image

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
