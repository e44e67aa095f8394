"""Folder data sets (README's format) and their train / validation / test split.

```
DATA/images/<name>.{bmp,png,jpg,tif}   DATA/masks/<name>.png   DATA/classes.csv (optional)
```
or the same layout under ``DATA/train/`` and ``DATA/test/`` for a fixed split. The test
images are touched only for the final metrics; the validation images, carved from the
training ones, choose the best epoch.

``DATA/classes.csv`` names each image's class (header ``image,class``; ``image`` is the file
name without its suffix, ``class`` any text), so that a stratified split holds out each class
in proportion: a random split can leave a rare class out of a small test set. It lies in DATA/
for both layouts, one row for each image of images/, or of train/ and test/ both; one in
train/ or test/ is refused rather than ignored. Without it a stratified split is the random one.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from jaxseg.data.files import Encoded, list_images, why_missing
from jaxseg.errors import DataError

SPLITS = ("stratified", "random")
CLASSES_FILE = "classes.csv"


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


def split_dataset(root: Path, *, test_fraction: float, val_fraction: float, seed: int,
                  split: str = "random") -> Splits:
  """A fixed split where ``root`` has train/ and test/, else a seeded one; then validation.

  ``split``: "random", or "stratified", which holds out each class of root/classes.csv in
  proportion (the random split where there is no such file).
  """
  train, test, classes = train_test_examples(root, test_fraction=test_fraction, seed=seed,
                                             split=split)
  return with_validation(train, test, val_fraction=val_fraction, seed=seed, classes=classes)


def check_split(split: str) -> None:
  """Raise ValueError unless ``split`` is one of `SPLITS`."""
  if split not in SPLITS:
    raise ValueError(f"split {split!r}: choose from {', '.join(SPLITS)}")


def train_test_examples(root: Path, *, test_fraction: float, seed: int, split: str):
  """(train, test, {name: class} or None): `split_dataset`'s train and test, with each image's
  class where ``split`` is "stratified" and root/classes.csv names them."""
  check_split(split)
  root = Path(root)
  if not root.is_dir():
    raise DataError(f"{root}: data folder not found")
  fixed = [(root / name).is_dir() for name in ("train", "test")]
  if all(fixed):
    train, test = find_examples(root / "train"), find_examples(root / "test")
    return train, test, _classes(root, train + test, split)
  if any(fixed) and not (root / "images").is_dir():
    present, absent = ("train", "test") if fixed[0] else ("test", "train")
    raise DataError(f"{root}: has {present}/ but no {absent}/; a fixed split needs both "
                    "(or images/ and masks/ for a seeded split)")
  examples = find_examples(root)
  if len(examples) < 3:
    raise DataError(f"{root}: {len(examples)} images; a train/validation/test split needs 3")
  classes = _classes(root, examples, split)
  train, test = _carve(examples, test_fraction, np.random.default_rng([seed, 0]), classes)
  return train, test, classes


def _classes(root: Path, examples: list[Example], split: str) -> dict[str, str] | None:
  """Each example's class from root/classes.csv where a stratified split has one, else None."""
  if split == "random":
    return None
  for folder in ("train", "test"):
    if (root / folder / CLASSES_FILE).exists():
      raise DataError(f"{root / folder / CLASSES_FILE}: classes.csv lies in {root}/, with a row "
                      "for each image of train/ and test/")
  path = root / CLASSES_FILE
  return _read_classes(path, examples) if path.exists() else None


def _read_classes(path: Path, examples: list[Example]) -> dict[str, str]:
  """{name: class} of ``examples`` from the classes.csv ``path``; an image listed twice, a row
  without a class, an image without a row or a row without an image is an error naming it
  (a mistyped name would otherwise leave an image's class unknown, unseen)."""
  classes, rows = {}, {}
  try:
    with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets' BOM
      reader = csv.reader(file)
      header = [field.strip().lower() for field in next(reader, [])]
      if header != ["image", "class"]:
        raise DataError(f"{path}: row 1 is {','.join(header) or 'empty'}; expected the header "
                        "image,class")
      for fields in reader:
        row = reader.line_num
        fields = [field.strip() for field in fields]
        if not any(fields):
          continue  # blank lines
        if len(fields) > 2:
          raise DataError(f"{path}: row {row}: {len(fields)} fields; expected image,class")
        name, kind = fields[0], fields[1] if len(fields) == 2 else ""
        if not name:
          raise DataError(f"{path}: row {row}: no image name")
        if not kind:
          raise DataError(f"{path}: row {row}: image {name} has no class")
        if name in classes:
          raise DataError(f"{path}: row {row}: image {name} is listed again (first in row "
                          f"{rows[name]})")
        classes[name], rows[name] = kind, row
  except UnicodeDecodeError:
    raise DataError(f"{path}: not UTF-8 text; save it as CSV UTF-8") from None
  except (OSError, csv.Error) as error:
    raise DataError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
  names = {example.name for example in examples}
  missing = [example for example in examples if example.name not in classes]
  if missing:
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise DataError(f"{path}: no row for image {missing[0].name} ({missing[0].image}){more}; "
                    "every image needs a class")
  extra = [name for name in classes if name not in names]
  if extra:
    raise DataError(f"{path}: row {rows[extra[0]]}: no image {extra[0]} in {path.parent}; rows "
                    f"name images without suffix, as {examples[0].name} for "
                    f"{Path(examples[0].image).name}")
  return {example.name: classes[example.name] for example in examples}


def write_classes(path: Path, classes: dict[str, str]) -> None:
  """Write {image name: class} as the classes.csv ``path``, whole or not at all: into a temporary
  file beside it, renamed into place. Raises OSError."""
  path = Path(path)
  descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                         dir=path.parent)
  try:
    with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as file:
      writer = csv.writer(file, lineterminator="\n")
      writer.writerow(["image", "class"])
      writer.writerows(classes.items())
    os.replace(staging, path)
  except BaseException:
    Path(staging).unlink(missing_ok=True)
    raise


def with_validation(train: list[Example], test: list[Example], *, val_fraction: float,
                    seed: int, classes: dict[str, str] | None = None) -> Splits:
  """The splits, validation examples carved from ``train`` by ``seed``: each class of
  ``classes`` ({name: class}) in proportion where given, else at random."""
  train, val = _carve(train, val_fraction, np.random.default_rng([seed, 1]), classes)
  return Splits(train=train, val=val, test=test)


def _carve(examples: list[Example], fraction: float, rng: np.random.Generator,
           classes: dict[str, str] | None = None):
  """Split off ``fraction`` of the examples (at least one, leaving at least one), each class of
  ``classes`` in proportion where given; both parts keep the examples' order."""
  if len(examples) < 2:
    raise DataError(f"{len(examples)} training images are too few to split off validation images")
  count = min(max(1, round(len(examples) * fraction)), len(examples) - 1)
  if classes is None:
    held = set(rng.permutation(len(examples))[:count].tolist())
  else:
    held = _stratified(examples, classes, count, rng)
  kept = [e for i, e in enumerate(examples) if i not in held]
  return kept, [e for i, e in enumerate(examples) if i in held]


def _stratified(examples: list[Example], classes: dict[str, str], count: int,
                rng: np.random.Generator) -> set[int]:
  """The indices of ``count`` examples, drawn class by class.

  A class of ``size`` examples in ``n`` has the share ``count * size / n``, and holds its
  share rounded down, or up for the classes with the largest remainders (ties drawn at random)
  until ``count`` are held: the largest remainder method, so each class is within one image of
  its share and the total is exact.
  """
  members: dict[str, list[int]] = {}
  for index, example in enumerate(examples):
    members.setdefault(classes[example.name], []).append(index)
  names = sorted(members)
  sizes = [len(members[name]) for name in names]
  # Integer arithmetic: remainders that tie are equal, not equal up to rounding.
  held_counts = [count * size // len(examples) for size in sizes]
  remainders = [count * size % len(examples) for size in sizes]
  ties = rng.permutation(len(names))
  by_remainder = sorted(range(len(names)), key=lambda i: (-remainders[i], ties[i]))
  for i in by_remainder[:count - sum(held_counts)]:
    held_counts[i] += 1
  held = set()
  for name, held_count in zip(names, held_counts):
    indices = members[name]
    held.update(indices[j] for j in rng.permutation(len(indices))[:held_count].tolist())
  return held
