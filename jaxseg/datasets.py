"""The data set a `Config` names: the built-in synthetic set, a folder, or TFDS records, split;
and the loaders of its splits as the `Config` reads them."""

from __future__ import annotations

from pathlib import Path

from jaxseg.config import Config
from jaxseg.data import record, synthetic
from jaxseg.data.folder import Splits, split_dataset
from jaxseg.data.pipeline import Loader
from jaxseg.errors import JaxsegError

TFDS_PREFIX = "tfds:"


def dataset_root(config: Config) -> Path:
  """The folder-format data set of ``config.data``, writing the synthetic one on first use."""
  if config.data == "synthetic":
    root = synthetic.default_root(config.cache_path, config.num_images,
                                  config.synthetic_seed, config.synthetic_size,
                                  config.synthetic_version)
    return synthetic.write_synthetic(root, config.num_images, seed=config.synthetic_seed,
                                     size=config.synthetic_size, version=config.synthetic_version)
  return Path(config.data).expanduser().absolute()


def data_splits(config: Config) -> tuple[str, Splits]:
  """(where the data is, its train / validation / test examples) for ``config.data``, split as
  ``config.split`` says (TFDS records fix their test split; validation is carved as it says)."""
  if config.data.startswith(TFDS_PREFIX):
    from jaxseg.data.tfds_builder import (
      tfds_splits,  # TensorFlow Datasets only where asked
    )

    splits = tfds_splits(config.data.removeprefix(TFDS_PREFIX), config.tfds_dir,
                         val_fraction=config.val_fraction, seed=config.data_seed,
                         split=config.split)
    return f"{config.data} in {config.tfds_dir or 'the default TFDS folder'}", splits
  root = dataset_root(config)
  return str(root), split_dataset(root, test_fraction=config.test_fraction,
                                  val_fraction=config.val_fraction, seed=config.data_seed,
                                  split=config.split)


def recorded_splits(saved: dict, config: Config) -> Splits:
  """The split a run recorded (`jaxseg.data.record`), every file checked; TFDS records are
  read again from their data set."""
  in_memory = saved["source"].startswith(TFDS_PREFIX)
  return record.recorded_splits(saved, data_splits(config)[1] if in_memory else None)


def make_loaders(config: Config, splits: Splits, names=("train", "val", "test")) -> dict:
  """A loader per split in ``names``, every file read once before training starts."""
  if "train" in names and len(splits.train) < config.batch_size:
    raise JaxsegError(f"{len(splits.train)} training images are fewer than --batch-size "
                      f"{config.batch_size}")
  # Test metrics are always against the data set's own masks, whatever training learnt from.
  loaders = {name: split_loader(config, getattr(splits, name),
                                config.labels if name != "test" else "exact")
             for name in names}
  for name, loader in loaders.items():
    loader.warm(f"reading {name} images")
  return loaders


def split_loader(config: Config, examples, labels: str = "exact") -> Loader:
  """The loader of ``examples`` as ``config`` reads them, its masks the data set's own
  (``exact``) or made by the paper's Otsu rule (``otsu``)."""
  return Loader(examples, image_size=config.image_size, target=config.target,
                enhancement=config.enhance, batch_size=config.batch_size, seed=config.seed,
                kind=config.loader, labels=labels, mask_colours=config.mask_colour_map,
                scale=config.scale, window=config.window)
