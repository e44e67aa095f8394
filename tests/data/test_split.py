"""Stratified and random train / validation / test splits of folder data sets."""

import re
from collections import Counter

import cv2
import numpy as np
import pytest

from jaxseg import datasets
from jaxseg.config import Config
from jaxseg.data.folder import split_dataset, write_classes
from jaxseg.errors import DataError

# The paper's classes (HSIL 124, LSIL 61, NSIL 234), scaled down by 4 and by 10.
UNBALANCED = [{"hsil": 31, "lsil": 15, "nsil": 58}, {"hsil": 12, "lsil": 6, "nsil": 23}]
FRACTIONS = [(0.2, 0.1), (0.3, 0.25), (0.1, 0.5)]


def write_pairs(root, names):
  """A 4x4 PNG image and class mask for each name under root/images and root/masks."""
  (root / "images").mkdir(parents=True)
  (root / "masks").mkdir()
  for name in names:
    cv2.imwrite(str(root / "images" / f"{name}.png"), np.full((4, 4, 3), 200, np.uint8))
    cv2.imwrite(str(root / "masks" / f"{name}.png"), np.zeros((4, 4), np.uint8))
  return root


def image_names(count):
  return [f"img_{index:03d}" for index in range(count)]


def classed_folder(root, counts, seed=0):
  """A folder of sum(counts) images, their classes (``counts``) interleaved, in classes.csv."""
  kinds = np.random.default_rng(seed).permutation(np.repeat(list(counts), list(counts.values())))
  classes = dict(zip(image_names(len(kinds)), kinds.tolist()))
  write_pairs(root, classes)
  write_classes(root / "classes.csv", classes)
  return root, classes


def names(examples):
  return [example.name for example in examples]


def held_count(count, fraction):
  """How many images a split of ``count`` holds out: the same for random and stratified."""
  return min(max(1, round(count * fraction)), count - 1)


def todays_split(count, test_fraction, val_fraction, seed):
  """The random split as jaxseg drew it before stratified splits: indices (train, val, test)."""
  def carve(indices, fraction, rng):
    held = set(rng.permutation(len(indices))[:held_count(len(indices), fraction)].tolist())
    return ([x for i, x in enumerate(indices) if i not in held],
            [x for i, x in enumerate(indices) if i in held])

  train, test = carve(list(range(count)), test_fraction, np.random.default_rng([seed, 0]))
  train, val = carve(train, val_fraction, np.random.default_rng([seed, 1]))
  return train, val, test


def as_indices(splits):
  return tuple([int(name.split("_")[1]) for name in names(part)]
               for part in (splits.train, splits.val, splits.test))


# (images, seed, test_fraction, val_fraction): (validation, test) indices, computed once from
# the random split before stratified splits were added.
RECORDED = {
  (20, 0, 0.2, 0.1): ([0, 14], [2, 4, 6, 19]),
  (20, 3, 0.2, 0.1): ([2, 17], [8, 12, 16, 18]),
  (13, 7, 0.3, 0.25): ([1, 10], [0, 6, 7, 8]),
}


@pytest.mark.parametrize("split", ["random", "stratified"])
@pytest.mark.parametrize("case", list(RECORDED))
def test_random_and_unclassed_stratified_splits_are_the_recorded_ones(tmp_path, case, split):
  count, seed, test_fraction, val_fraction = case
  root = write_pairs(tmp_path / "data", image_names(count))
  splits = split_dataset(root, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed,
                         split=split)
  train, val, test = as_indices(splits)
  assert (val, test) == RECORDED[case]
  assert train == sorted(set(range(count)) - set(val) - set(test))


def test_random_split_is_todays_and_ignores_classes(tmp_path):
  root, _ = classed_folder(tmp_path / "data", UNBALANCED[1])
  unclassed = write_pairs(tmp_path / "plain", image_names(9))
  for seed in range(6):
    for test_fraction, val_fraction in FRACTIONS:
      fractions = {"test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed}
      splits = split_dataset(root, **fractions, split="random")
      assert as_indices(splits) == todays_split(41, test_fraction, val_fraction, seed)
      for split in ("random", "stratified"):
        splits = split_dataset(unclassed, **fractions, split=split)
        assert as_indices(splits) == todays_split(9, test_fraction, val_fraction, seed)


def assert_in_proportion(held, pool, classes):
  """Each class's count in ``held`` is within one image of its share of ``held``."""
  held_classes, pool_classes = Counter(classes[n] for n in held), Counter(classes[n] for n in pool)
  for kind, size in pool_classes.items():
    assert abs(held_classes[kind] - len(held) * size / len(pool)) < 1, (kind, held_classes)


@pytest.mark.parametrize("counts", UNBALANCED)
def test_stratified_split_holds_each_class_in_proportion(tmp_path, counts):
  root, classes = classed_folder(tmp_path / "data", counts)
  everything = list(classes)
  for seed in range(5):
    for test_fraction, val_fraction in FRACTIONS:
      splits = split_dataset(root, test_fraction=test_fraction, val_fraction=val_fraction,
                             seed=seed, split="stratified")
      train, val, test = names(splits.train), names(splits.val), names(splits.test)
      assert len(test) == held_count(len(everything), test_fraction)
      assert len(val) == held_count(len(everything) - len(test), val_fraction)
      assert_in_proportion(test, everything, classes)
      assert_in_proportion(val, train + val, classes)
      assert sorted(train + val + test) == everything
      for part in (train, val, test):
        assert part == sorted(part)  # the folder's order
  once, again = (split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=4,
                               split="stratified") for _ in range(2))
  assert once == again


def test_a_fixed_split_stratifies_validation_by_the_classes_in_data(tmp_path):
  root = tmp_path / "data"
  kinds = ["a"] * 12 + ["b"] * 4  # validation's shares: 3 and 1
  train = {f"tr_{index:02d}": kinds[index] for index in range(16)}
  test = {"te_0": "a", "te_1": "b"}
  write_pairs(root / "train", train)
  write_pairs(root / "test", test)
  write_classes(root / "classes.csv", train | test)
  for seed in range(4):
    splits = split_dataset(root, test_fraction=0.2, val_fraction=0.25, seed=seed,
                           split="stratified")
    assert names(splits.test) == list(test)
    assert sorted(train[name] for name in names(splits.val)) == ["a", "a", "a", "b"]
  (root / "train" / "classes.csv").write_text("image,class\n")
  with pytest.raises(DataError, match=re.escape(f"{root / 'train' / 'classes.csv'}: ")):
    split_dataset(root, test_fraction=0.2, val_fraction=0.25, seed=0, split="stratified")


CSV_ERRORS = {
  "image,class\nimg_000,a\nimg_001,b\nimg_000,b\nimg_002,a\n":
    "row 4: image img_000 is listed again (first in row 2)",
  "image,class\nimg_000,a\nimg_001,\nimg_002,a\n": "row 3: image img_001 has no class",
  "image,class\nimg_000,a\nimg_001\nimg_002,a\n": "row 3: image img_001 has no class",
  "image,class\nimg_000,a\nimg_002,a\n": "no row for image img_001",
  "image,class\nimg_000,a\nimg_001,b\nimg_02,a\nimg_002,a\nimg_9,b\n": "row 4: no image img_02",
  "name,kind\nimg_000,a\n": "row 1 is name,kind; expected the header image,class",
  "image,class\nimg_000,a,b\n": "row 2: 3 fields",
}


@pytest.mark.parametrize("text", list(CSV_ERRORS))
def test_classes_csv_errors_name_the_file_and_row(tmp_path, text):
  root = write_pairs(tmp_path / "data", image_names(3))
  (root / "classes.csv").write_text(text)
  message = f"{root / 'classes.csv'}: {CSV_ERRORS[text]}"
  with pytest.raises(DataError, match=re.escape(message)) as error:
    split_dataset(root, test_fraction=0.3, val_fraction=0.5, seed=0, split="stratified")
  assert "\n" not in str(error.value)
  split_dataset(root, test_fraction=0.3, val_fraction=0.5, seed=0, split="random")  # unread


def test_data_splits_follows_the_config_split(tmp_path):
  root, _ = classed_folder(tmp_path / "data", UNBALANCED[1])
  for split in ("random", "stratified"):
    config = Config(data=str(root), split=split, seed=2)
    where, splits = datasets.data_splits(config)
    expected = split_dataset(root, test_fraction=config.test_fraction,
                             val_fraction=config.val_fraction, seed=2, split=split)
    assert where == str(root) and splits == expected
