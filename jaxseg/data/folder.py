"""Folder data sets (README's format) and their train / validation / test split.

```
DATA/images/<name>.{bmp,png,jpg,tif}   DATA/masks/<name>.png
```
or the same layout under ``DATA/train/`` and ``DATA/test/`` for a fixed split. The test
images are touched only for the final metrics; the validation images, carved from the
training ones, choose the best epoch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxseg.data.files import Encoded, list_images, why_missing
from jaxseg.errors import DataError


@dataclasses.dataclass(frozen=True)
class Example:
  name: str
  image: Path | Encoded
  mask: Path | Encoded


@dataclasses.dataclass(frozen=True)
class Splits:
  train: list[Example]
  val: list[Example]
  test: list[Example]


def find_examples(root: Path) -> list[Example]:
  """Image/mask pairs of ``root``; an image without a mask is an error naming it."""
  masks = root / "masks"
  _check_folder(root, "images")
  images = list_images(root / "images")
  _check_folder(root, "masks")
  examples = []
  for image in images:
    mask = masks / f"{image.stem}.png"
    if not mask.is_file():
      found = f"{mask} is {why_missing(mask)}" if mask.is_symlink() else f"expected {mask}"
      raise DataError(f"{image}: no mask ({found})")
    examples.append(Example(image.stem, image, mask))
  return examples


def _check_folder(root: Path, name: str) -> None:
  if not (root / name).is_dir():
    raise DataError(f"{root}: no {name}/ folder; a data folder holds images/ and masks/ "
                    "(or train/ and test/, each holding both)")


def split_dataset(root: Path, *, test_fraction: float, val_fraction: float, seed: int) -> Splits:
  """A fixed split where ``root`` has train/ and test/, else a seeded one; then validation."""
  train, test = train_test_examples(root, test_fraction=test_fraction, seed=seed)
  return with_validation(train, test, val_fraction=val_fraction, seed=seed)


def train_test_examples(root: Path, *, test_fraction: float, seed: int):
  """(train, test) examples: root/train and root/test where both exist, else a seeded split."""
  root = Path(root)
  if not root.is_dir():
    raise DataError(f"{root}: data folder not found")
  fixed = [(root / name).is_dir() for name in ("train", "test")]
  if all(fixed):
    return find_examples(root / "train"), find_examples(root / "test")
  if any(fixed) and not (root / "images").is_dir():
    present, absent = ("train", "test") if fixed[0] else ("test", "train")
    raise DataError(f"{root}: has {present}/ but no {absent}/; a fixed split needs both "
                    "(or images/ and masks/ for a seeded split)")
  examples = find_examples(root)
  if len(examples) < 3:
    raise DataError(f"{root}: {len(examples)} images; a train/validation/test split needs 3")
  return _carve(examples, test_fraction, np.random.default_rng([seed, 0]))


def with_validation(train: list[Example], test: list[Example], *, val_fraction: float,
                    seed: int) -> Splits:
  """The splits, validation examples carved from ``train`` by ``seed``."""
  train, val = _carve(train, val_fraction, np.random.default_rng([seed, 1]))
  return Splits(train=train, val=val, test=test)


def _carve(examples: list[Example], fraction: float, rng: np.random.Generator):
  """Split off ``fraction`` of the examples (at least one, leaving at least one)."""
  if len(examples) < 2:
    raise DataError(f"{len(examples)} training images are too few to split off validation images")
  count = min(max(1, round(len(examples) * fraction)), len(examples) - 1)
  order = rng.permutation(len(examples))
  held = set(order[:count].tolist())
  kept = [e for i, e in enumerate(examples) if i not in held]
  return kept, [e for i, e in enumerate(examples) if i in held]
