"""The `cervical_cytology` TFDS builder: prepared from a folder, read back for training."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jaxseg.config import Config  # noqa: E402
from jaxseg.data import files  # noqa: E402
from jaxseg.data.enhance import Enhance  # noqa: E402
from jaxseg.data.folder import (  # noqa: E402
  split_dataset,
  train_test_examples,
  with_validation,
  write_classes,
)
from jaxseg.data.pipeline import Loader  # noqa: E402
from jaxseg.data.tfds_builder import NAME, prepare, tfds_splits  # noqa: E402
from jaxseg.datasets import data_splits  # noqa: E402
from jaxseg.errors import DataError  # noqa: E402
from tests.support.helpers import write_folder  # noqa: E402

COUNT = 10


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(folder, tfds dir): a 10-image folder and its records."""
  root = tmp_path_factory.mktemp("tfds")
  folder = write_folder(root / "data", COUNT, size=64)
  prepare(NAME, root / "tfds", folder)
  return folder, root / "tfds"


def names(examples):
  return [e.name for e in examples]


def loader(examples):
  return Loader(examples, image_size=32, target="nuclei", enhancement=Enhance(), batch_size=3,
                seed=0, kind="tf")


def test_records_hold_the_files_pixels_and_the_folder_split(prepared):
  folder, tfds_dir = prepared
  splits = tfds_splits(NAME, tfds_dir, val_fraction=0.25, seed=0)
  same = split_dataset(folder, test_fraction=0.2, val_fraction=0.25, seed=0)
  assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 2)
  for split in ("train", "val", "test"):
    assert names(getattr(splits, split)) == names(getattr(same, split))
  for example in splits.train + splits.val + splits.test:
    np.testing.assert_array_equal(files.read_image(example.image),
                                  files.read_image(folder / "images" / f"{example.name}.bmp"))
    np.testing.assert_array_equal(files.read_mask(example.mask),
                                  files.read_mask(folder / "masks" / f"{example.name}.png"))
  # TFDS's own decoding reads the same pixels: the records are plain PNG.
  records = tfds.builder(NAME, data_dir=tfds_dir).as_dataset(split="test")
  for record in records.as_numpy_iterator():
    name = record["name"].decode()
    np.testing.assert_array_equal(record["image"],
                                  files.read_image(folder / "images" / f"{name}.bmp"))
    np.testing.assert_array_equal(record["mask"][..., 0],
                                  files.read_mask(folder / "masks" / f"{name}.png"))


def test_loader_over_records_matches_loader_over_files(prepared):
  folder, tfds_dir = prepared
  # The records fix the test split (seed 0); a run's seed carves validation from the rest.
  records = tfds_splits(NAME, tfds_dir, val_fraction=0.1, seed=1).train
  train, test, _ = train_test_examples(folder, test_fraction=0.2, seed=0, split="random")
  on_disk = with_validation(train, test, val_fraction=0.1, seed=1).train
  assert names(records) == names(on_disk)
  for split_seed in (0, 3):  # unshuffled, then an epoch's shuffle
    batches = zip(loader(records).epoch(split_seed, shuffle=bool(split_seed), drop_remainder=False),
                  loader(on_disk).epoch(split_seed, shuffle=bool(split_seed), drop_remainder=False),
                  strict=True)
    for (a_images, a_masks), (b_images, b_masks) in batches:
      np.testing.assert_array_equal(a_images, b_images)
      np.testing.assert_array_equal(a_masks, b_masks)


def test_records_keep_classes_and_split_by_them_as_the_folder(tmp_path):
  folder = write_folder(tmp_path / "data", COUNT, size=32)
  classes = {f"img_{i:03d}": "rare" if i in (1, 4, 7) else "common" for i in range(COUNT)}
  write_classes(folder / "classes.csv", classes)
  # The records fix the folder's stratified test split of seed 0: 2 of 10, 1 of them rare.
  train, test, _ = train_test_examples(folder, test_fraction=0.2, seed=0, split="stratified")
  assert sum(classes[e.name] == "rare" for e in test) == 1
  for split in ("stratified", "random"):
    records = tfds_splits(NAME, tmp_path / "tfds", manual_dir=folder, val_fraction=0.25,
                          seed=2, split=split)
    expected = with_validation(train, test, val_fraction=0.25, seed=2,
                               classes=classes if split == "stratified" else None)
    for part in ("train", "val", "test"):
      assert names(getattr(records, part)) == names(getattr(expected, part))
    # A run's config reaches the records with its split setting.
    _, from_config = data_splits(Config(data=f"tfds:{NAME}", tfds_dir=str(tmp_path / "tfds"),
                                             val_fraction=0.25, seed=2, split=split))
    assert names(from_config.val) == names(expected.val)
  stored = tfds.builder(NAME, data_dir=tmp_path / "tfds").as_dataset(split="train")
  assert {record["name"].decode(): record["class"].decode()
          for record in stored.as_numpy_iterator()} == {e.name: classes[e.name] for e in train}


def test_records_of_an_older_version_are_named(tmp_path):
  (tmp_path / "tfds" / NAME / "1.0.0").mkdir(parents=True)
  with pytest.raises(DataError, match=r"records of version 1\.1\.0 \(found 1\.0\.0\); prepare"):
    tfds_splits(NAME, tmp_path / "tfds", val_fraction=0.1, seed=0)


def test_fixed_split_is_kept(tmp_path):
  write_folder(tmp_path / "data" / "train", 3, size=32)
  write_folder(tmp_path / "data" / "test", 2, size=32, seed=1)
  splits = tfds_splits(NAME, tmp_path / "tfds", manual_dir=tmp_path / "data", val_fraction=0.3,
                       seed=0)
  assert names(splits.test) == ["img_000", "img_001"]
  assert sorted(names(splits.train + splits.val)) == ["img_000", "img_001", "img_002"]


def test_corrupt_image_stops_preparation_named(tmp_path):
  folder = write_folder(tmp_path / "data", 4, size=32)
  (folder / "images" / "img_002.bmp").write_bytes(b"BM not really a bitmap")
  with pytest.raises(DataError, match=r"img_002\.bmp: cannot read image"):
    prepare(NAME, tmp_path / "tfds", folder)


def test_missing_records_are_an_error(tmp_path):
  with pytest.raises(DataError, match="no cervical_cytology records"):
    tfds_splits(NAME, tmp_path / "tfds", val_fraction=0.1, seed=0)
