"""Where a run's images come from: the built-in synthetic set or a folder of the user's."""

from __future__ import annotations

from pathlib import Path

from jaxseg.config import Config
from jaxseg.data import synthetic


def dataset_root(config: Config) -> Path:
  """The folder-format data set of ``config.data``, writing the synthetic one on first use."""
  if config.data == "synthetic":
    root = synthetic.default_root(Path(config.cache_dir), config.num_images,
                                  config.synthetic_seed, config.synthetic_size)
    return synthetic.write_synthetic(root, config.num_images, seed=config.synthetic_seed,
                                     size=config.synthetic_size)
  return Path(config.data).expanduser()
