import cv2
import numpy as np
import pytest

from jaxseg.data.enhance import Enhance
from jaxseg.data.folder import split_dataset
from jaxseg.data.otsu import otsu_mask
from jaxseg.data.pipeline import Loader, read_example
from jaxseg.errors import DataError, JaxsegError
from tests.support.helpers import loader, write_folder


def test_split_is_seeded_disjoint_and_complete(tmp_path):
  root = write_folder(tmp_path / "data", 20, size=64)
  a = split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=3)
  b = split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=3)
  c = split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=4)
  names = lambda split: [e.name for e in split]
  assert names(a.test) == names(b.test) and names(a.val) == names(b.val)
  assert names(a.test) != names(c.test)
  assert (len(a.train), len(a.val), len(a.test)) == (14, 2, 4)
  assert sorted(names(a.train) + names(a.val) + names(a.test)) == [f"img_{i:03d}" for i in range(20)]


def test_fixed_split_keeps_test_folder(tmp_path):
  write_folder(tmp_path / "data" / "train", 6, size=64)
  write_folder(tmp_path / "data" / "test", 2, size=64, seed=1)
  splits = split_dataset(tmp_path / "data", test_fraction=0.2, val_fraction=0.2, seed=0)
  assert [e.image.parent.parent.name for e in splits.test] == ["test", "test"]
  assert len(splits.train) + len(splits.val) == 6


def test_image_without_mask_is_named(tmp_path):
  root = write_folder(tmp_path / "data", 4, size=64)
  (root / "masks" / "img_002.png").unlink()
  with pytest.raises(DataError, match="img_002.bmp: no mask"):
    split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=0)


@pytest.mark.parametrize("kind", ["tf", "plain"])
def test_loader_batches(tmp_path, kind):
  root = write_folder(tmp_path / "data", 7, size=64)
  examples = split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=0).train
  data = loader(examples, kind)
  batches = list(data.epoch(0, shuffle=False, drop_remainder=False))
  assert [len(images) for images, _ in batches] == [3, 2]
  images, masks = batches[0]
  assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
  assert masks.shape == (3, 32, 32) and set(np.unique(masks)) <= {0, 1}
  assert len(list(data.epoch(0, shuffle=True, drop_remainder=True))) == 1


def test_tf_and_plain_loaders_give_the_same_batches(tmp_path):
  """One data order: with or without TensorFlow, a seed gives the same batches every epoch."""
  root = write_folder(tmp_path / "data", 9, size=64)
  examples = split_dataset(root, test_fraction=0.1, val_fraction=0.1, seed=0).train
  tf_loader, plain_loader = loader(examples, "tf", seed=5), loader(examples, "plain", seed=5)
  for epoch, shuffle, drop_remainder in [(0, False, False), (1, True, True), (2, True, False)]:
    tf_batches = list(tf_loader.epoch(epoch, shuffle=shuffle, drop_remainder=drop_remainder))
    plain_batches = list(plain_loader.epoch(epoch, shuffle=shuffle, drop_remainder=drop_remainder))
    assert len(tf_batches) == len(plain_batches) == (2 if drop_remainder else 3)
    for (a_images, a_masks), (b_images, b_masks) in zip(tf_batches, plain_batches, strict=True):
      assert a_images.dtype == b_images.dtype and a_masks.dtype == b_masks.dtype
      np.testing.assert_array_equal(a_images, b_images)
      np.testing.assert_array_equal(a_masks, b_masks)


@pytest.mark.parametrize("kind", ["tf", "plain"])
def test_epochs_shuffle_by_seed_and_epoch(tmp_path, kind):
  root = write_folder(tmp_path / "data", 9, size=64)
  examples = split_dataset(root, test_fraction=0.1, val_fraction=0.1, seed=0).train
  first = lambda data, epoch: np.concatenate([m for _, m in data.epoch(epoch, shuffle=True, drop_remainder=False)])
  data = loader(examples, kind, batch_size=7)
  again = loader(examples, kind, batch_size=7)
  np.testing.assert_array_equal(first(data, 1), first(again, 1))  # a resumed run sees the same order
  orders = {first(data, epoch).tobytes() for epoch in range(4)}
  assert len(orders) > 1


@pytest.mark.parametrize("kind", ["tf", "plain"])
def test_bad_mask_stops_before_training(tmp_path, kind):
  import cv2

  root = write_folder(tmp_path / "data", 5, size=64)
  cv2.imwrite(str(root / "masks" / "img_001.png"), np.full((64, 64), 7, np.uint8))
  cv2.imwrite(str(root / "masks" / "img_003.png"), np.zeros((50, 64), np.uint8))
  examples = split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=0)
  all_examples = examples.train + examples.val + examples.test
  with pytest.raises(DataError, match=r"img_00[13]\.png: mask"):
    loader(sorted(all_examples, key=lambda e: e.name), kind).warm()


def test_otsu_labels_are_the_papers_masks_of_the_images(tmp_path):
  root = write_folder(tmp_path / "data", 3, size=64)
  examples = split_dataset(root, test_fraction=0.3, val_fraction=0.5, seed=0).train
  made = Loader(examples, image_size=32, target="cytoplasm", enhancement=Enhance(), batch_size=3,
                seed=0, kind="plain", labels="otsu")
  exact = Loader(examples, image_size=32, target="cytoplasm", enhancement=Enhance(),
                 batch_size=3, seed=0, kind="plain")
  (images, masks), = made.epoch(shuffle=False, drop_remainder=False)
  (same_images, exact_masks), = exact.epoch(shuffle=False, drop_remainder=False)
  np.testing.assert_array_equal(images, same_images)
  for example, mask in zip(examples, masks):
    image, _ = read_example(example)
    expected = cv2.resize(otsu_mask(image, "cytoplasm"), (32, 32),
                          interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(mask, expected)
  assert not np.array_equal(masks, exact_masks)
  with pytest.raises(JaxsegError, match="labels 'paper'"):
    Loader(examples, image_size=32, target="nuclei", enhancement=Enhance(), batch_size=3, seed=0,
           labels="paper")
