import json
from collections import Counter

import cv2
import numpy as np
import pytest

from jaxseg.data import synthetic
from jaxseg.data.masks import BACKGROUND, CYTOPLASM, NUCLEUS
from jaxseg.data.synthetic import v2
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


def nucleus_to_cell_ratios(type_name, size=400, count=12):
  """Nucleus/cell area ratios of ``count`` cells of one type, each painted alone."""
  rng = np.random.default_rng(1)
  px = v2.PIXELS_PER_UM * size / 1130
  stains = v2.stain_batch(rng)
  ratios = []
  for _ in range(count):
    cell_type = v2.TYPES[type_name]
    diameter = rng.uniform(*cell_type.diameter) * px
    cell = v2.Cell(cell_type, np.array([size / 2, size / 2]), diameter, focus=0.0)
    mask = np.zeros((size, size), np.uint8)
    v2.paint_cell(np.zeros((size, size, 3), np.float32), mask, rng, cell, px, stains)
    ratios.append((mask == NUCLEUS).sum() / (mask != BACKGROUND).sum())
  return np.array(ratios)


def test_hsil_nuclei_are_large_for_their_cells_and_not_only_theirs():
  hsil = nucleus_to_cell_ratios("hsil")
  assert np.median(hsil) > 0.3 and hsil.max() <= 0.7
  assert np.median(hsil) > 5 * np.median(nucleus_to_cell_ratios("intermediate"))
  # Normal immature cells have a high ratio too: it does not tell HSIL by itself.
  assert np.median(nucleus_to_cell_ratios("parabasal")) > 0.15


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
  assert manifest == {"version": 2, "seed": 0, "size": SIZE, "num_images": 3, "kinds": kinds}

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

  def failing_generate(seed, index, size, version):
    if index == 1:
      raise KeyboardInterrupt
    return real_generate(seed, index, size, version)

  monkeypatch.setattr(synthetic, "generate_sample", failing_generate)
  with pytest.raises(KeyboardInterrupt):
    synthetic.write_synthetic(tmp_path / "set", 3, size=SIZE, progress=False)
  assert list(tmp_path.iterdir()) == []


def test_write_synthetic_refuses_a_folder_of_other_files(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(DataError, match="not a synthetic data set"):
    synthetic.write_synthetic(tmp_path, 1, size=SIZE, progress=False)
  assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_the_version_is_part_of_the_cache_key(tmp_path):
  roots = {synthetic.default_root(tmp_path, 3, 0, SIZE, version) for version in (1, 2)}
  assert len(roots) == 2
  root = tmp_path / "set"
  v1_images, _ = read_set(synthetic.write_synthetic(root, 2, size=SIZE, progress=False, version=1))
  manifest_path = root / "manifest.json"
  manifest = json.loads(manifest_path.read_text())
  assert manifest["version"] == 1
  del manifest["version"]  # as version 1 wrote it, before versions had a number
  manifest_path.write_text(json.dumps(manifest))
  v2_images, _ = read_set(synthetic.write_synthetic(root, 2, size=SIZE, progress=False))
  assert json.loads(manifest_path.read_text())["version"] == 2
  for stem, image in v2_images.items():
    v2_image, _ = synthetic.generate_sample(0, int(stem.split("_")[1]), SIZE)
    np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), v2_image)
    assert not np.array_equal(image, v1_images[stem])


def test_version_1_is_still_made_and_an_unknown_version_refused():
  image, mask = synthetic.generate_sample(0, 0, SIZE, version=1)
  again, _ = synthetic.generate_sample(0, 0, SIZE, version=1)
  np.testing.assert_array_equal(image, again)
  assert not np.array_equal(image, synthetic.generate_sample(0, 0, SIZE)[0])
  assert set(np.unique(mask).tolist()) == {BACKGROUND, CYTOPLASM, NUCLEUS}
  with pytest.raises(DataError, match="synthetic_version 4"):
    synthetic.generate_sample(0, 0, SIZE, version=4)


@pytest.mark.parametrize("size", [96, 400])
def test_every_nucleus_lies_inside_its_own_cell(size):
  # Painted one at a time, each cell's nucleus pixels are a subset of its own cell's, with
  # cytoplasm all round it (small sizes shrink nuclei to fit, large ones place them freely).
  rng = np.random.default_rng(0)
  for kind in ("hsil", "lsil", "nsil"):
    cells = v2.lay_out_cells(rng, v2.KINDS[kind], size, v2.PIXELS_PER_UM * size / 1130)
    stains = v2.stain_batch(rng)
    for cell in cells:
      mask = np.zeros((size, size), np.uint8)
      v2.paint_cell(np.zeros((size, size, 3), np.float32), mask, rng, cell, 5 * size / 1130,
                     stains)
      nucleus = (mask == NUCLEUS).astype(np.uint8)
      ring = cv2.dilate(nucleus, np.ones((3, 3), np.uint8)) - nucleus
      assert not (ring & (mask == BACKGROUND)).any()


def test_look_alikes_change_the_image_never_the_mask(monkeypatch):
  for kind in ("hsil", "nsil"):
    image, mask = v2.sample((0, 1, 5), kind, SIZE)
    bare_image, bare_mask = v2.sample((0, 1, 5), kind, SIZE, lookalikes=False)
    np.testing.assert_array_equal(mask, bare_mask)
    assert not np.array_equal(image, bare_image)
  # Without cells, what is left (red cells, neutrophils, bare nuclei, bacteria, fungi, mucus)
  # is background, though dark and coloured.
  monkeypatch.setattr(v2, "lay_out_cells", lambda *args: [])
  darkest = []
  for index in range(4):
    image, mask = v2.sample((0, 1, index), "hsil", SIZE)
    assert not mask.any()
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    darkest.append(np.median(gray) - np.percentile(gray, 0.1))
  assert max(darkest) > 60


def test_the_set_names_its_classes_and_a_cached_set_gains_them_unchanged(tmp_path):
  root = synthetic.write_synthetic(tmp_path / "set", 4, size=SIZE, progress=False)
  classes_csv = (root / "classes.csv").read_text()
  kinds = json.loads((root / "manifest.json").read_text())["kinds"]
  assert classes_csv == "image,class\n" + "".join(f"{s},{k}\n" for s, k in kinds.items())
  assert Counter(kinds.values()) == Counter(synthetic.kind_of(index, 0) for index in range(4))

  (root / "classes.csv").unlink()  # a set cached before the file was written
  stamps, manifest = file_stamps(root), (root / "manifest.json").read_bytes()
  assert synthetic.write_synthetic(root, 4, size=SIZE, progress=False) == root
  assert (root / "classes.csv").read_text() == classes_csv
  now = file_stamps(root)
  assert now == stamps | {root / "classes.csv": now[root / "classes.csv"]}  # images untouched
  assert (root / "manifest.json").read_bytes() == manifest
  assert sorted(path.name for path in root.iterdir()) == [
    "classes.csv", "images", "manifest.json", "masks"]  # no temporary file left
