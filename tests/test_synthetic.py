import json
from collections import Counter

import cv2
import numpy as np
import pytest

from jaxseg.data import synthetic
from jaxseg.data.masks import BACKGROUND, CYTOPLASM, NUCLEUS
from jaxseg.errors import DataError

SIZE = 256  # small images keep the tests fast; shapes scale with the size


def first_indices(kind, count, seed=0):
  return [index for index in range(100) if synthetic.kind_of(index, seed) == kind][:count]


@pytest.fixture(scope="module")
def samples():
  indices = first_indices("hsil", 2) + first_indices("lsil", 2) + first_indices("nsil", 2)
  return {index: synthetic.generate_sample(0, index, SIZE) for index in indices}


def test_same_seed_and_index_give_the_same_sample():
  image, mask = synthetic.generate_sample(3, 5, SIZE)
  again_image, again_mask = synthetic.generate_sample(3, 5, SIZE)
  other_image, _ = synthetic.generate_sample(4, 5, SIZE)
  np.testing.assert_array_equal(image, again_image)
  np.testing.assert_array_equal(mask, again_mask)
  assert not np.array_equal(image, other_image)


def test_kinds_follow_the_paper_in_every_419_images():
  for seed in (0, 7):
    kinds = [synthetic.kind_of(index, seed) for index in range(838)]
    assert Counter(kinds[:419]) == synthetic.PAPER_COUNTS
    assert kinds[419:] == kinds[:419]
  assert [synthetic.kind_of(index, 0) for index in range(50)] != [
    synthetic.kind_of(index, 7) for index in range(50)
  ]


def test_samples_are_rgb_with_class_masks(samples):
  for image, mask in samples.values():
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {BACKGROUND, CYTOPLASM, NUCLEUS}


def test_nuclei_lie_inside_cells(samples):
  for _, mask in samples.values():
    nuclei = (mask == NUCLEUS).astype(np.uint8)
    ring = cv2.dilate(nuclei, np.ones((3, 3), np.uint8)) - nuclei
    assert ring.any()
    assert set(np.unique(mask[ring == 1]).tolist()) == {CYTOPLASM}


def test_pixels_agree_with_the_mask(samples):
  # Pooled over images: nuclei are darker than cytoplasm, which is darker than background.
  gray = np.concatenate(
    [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).ravel() for image, _ in samples.values()]
  )
  classes = np.concatenate([mask.ravel() for _, mask in samples.values()])
  means = [gray[classes == value].mean() for value in (NUCLEUS, CYTOPLASM, BACKGROUND)]
  assert means[0] < means[1] - 20 and means[1] < means[2] - 10


def test_hsil_nuclei_are_large_for_their_cells(samples):
  def nucleus_to_cell(kind):
    masks = [mask for index, (_, mask) in samples.items() if synthetic.kind_of(index, 0) == kind]
    return np.mean([(mask == NUCLEUS).sum() / (mask != BACKGROUND).sum() for mask in masks])

  assert nucleus_to_cell("hsil") > 3 * nucleus_to_cell("nsil")


def read_set(root):
  images = (root / "images").glob("*.bmp")
  masks = (root / "masks").glob("*.png")
  return (
    {path.stem: cv2.imread(str(path), cv2.IMREAD_COLOR) for path in images},
    {path.stem: cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in masks},
  )


def file_stamps(root):
  return {path: (path.stat().st_mtime_ns, path.stat().st_ino) for path in root.rglob("*")}


def test_write_synthetic_writes_image_mask_pairs_once(tmp_path):
  root = synthetic.default_root(tmp_path, 3, 0, SIZE)
  assert synthetic.write_synthetic(root, 3, size=SIZE, progress=False) == root
  images, masks = read_set(root)
  stems = [f"{synthetic.kind_of(index, 0)}_{index:04d}" for index in range(3)]
  assert sorted(images) == sorted(masks) == sorted(stems)
  for index, stem in enumerate(stems):
    image, mask = synthetic.generate_sample(0, index, SIZE)
    np.testing.assert_array_equal(cv2.cvtColor(images[stem], cv2.COLOR_BGR2RGB), image)
    np.testing.assert_array_equal(masks[stem], mask)
  manifest = json.loads((root / "manifest.json").read_text())
  kinds = {stem: stem.split("_")[0] for stem in stems}
  assert manifest == {"seed": 0, "size": SIZE, "num_images": 3, "kinds": kinds}

  stamps = file_stamps(root)
  assert synthetic.write_synthetic(root, 3, size=SIZE, progress=False) == root
  assert file_stamps(root) == stamps
  assert list(tmp_path.iterdir()) == [root]  # no staging folder left behind


def test_a_larger_set_begins_with_the_smaller_one(tmp_path):
  root = tmp_path / "set"
  small, _ = read_set(synthetic.write_synthetic(root, 2, size=SIZE, progress=False))
  large, _ = read_set(synthetic.write_synthetic(root, 3, size=SIZE, progress=False))
  assert json.loads((root / "manifest.json").read_text())["num_images"] == 3
  assert len(large) == 3
  for stem, image in small.items():
    np.testing.assert_array_equal(large[stem], image)


def test_write_synthetic_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
  real_generate = synthetic.generate_sample

  def failing_generate(seed, index, size):
    if index == 1:
      raise KeyboardInterrupt
    return real_generate(seed, index, size)

  monkeypatch.setattr(synthetic, "generate_sample", failing_generate)
  with pytest.raises(KeyboardInterrupt):
    synthetic.write_synthetic(tmp_path / "set", 3, size=SIZE, progress=False)
  assert list(tmp_path.iterdir()) == []


def test_write_synthetic_refuses_a_folder_of_other_files(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(DataError, match="not a synthetic data set"):
    synthetic.write_synthetic(tmp_path, 1, size=SIZE, progress=False)
  assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
