"""The data set a `Config` names: the built-in synthetic set, a folder, or TFDS records, split."""

from __future__ import annotations

from pathlib import Path

from jaxseg.config import Config
from jaxseg.data import record, synthetic
from jaxseg.data.folder import Splits, split_dataset

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
  """(where the data is, its train / validation / test examples) for ``config.data``; a folder
  is split as ``config.split`` says, TFDS records at random (their test split is fixed in them)."""
  if config.data.startswith(TFDS_PREFIX):
    from jaxseg.data.tfds_builder import (
      tfds_splits,  # TensorFlow Datasets only where asked
    )

    splits = tfds_splits(config.data.removeprefix(TFDS_PREFIX), config.tfds_dir,
                         val_fraction=config.val_fraction, seed=config.data_seed)
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
