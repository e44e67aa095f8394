"""What a run trained and tested on, exactly: its split as file lists, with fingerprints.

A run folder keeps this record (``data.json``); `--resume`, ``evaluate`` and ``predict`` on
a run take the split from it rather than splitting the folder again, so images added later
never move between train and test, and a file that was removed or changed since is an error
that names it. A file's fingerprint is its size and modification time; records in memory
(TFDS) are fingerprinted by a hash of their bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from jaxseg.data.files import Encoded
from jaxseg.data.folder import Example, Splits
from jaxseg.errors import DataError

SPLITS = ("train", "val", "test")


def describe(source: str, splits: Splits) -> dict:
  """The record of ``splits`` of the data at ``source`` (a folder, or ``tfds:NAME ...``)."""
  return {"source": source,
          "splits": {split: [_entry(example, source) for example in getattr(splits, split)]
                     for split in SPLITS}}


def recorded_splits(record: dict, current: Splits | None = None) -> Splits:
  """The splits of ``record``, each file checked against its fingerprint.

  Folder data is read from the recorded paths; in-memory records (TFDS) come in ``current``
  (the data set as it reads now), and must hold the recorded examples unchanged.
  """
  source = record["source"]
  by_name = {}
  if current is not None:
    by_name = {e.name: e for split in SPLITS for e in getattr(current, split)}
  splits = {}
  for split in SPLITS:
    examples = []
    for entry in record["splits"][split]:
      if current is None:
        root = Path(source)
        example = Example(entry["name"], root / entry["image"], root / entry["mask"])
      elif entry["name"] in by_name:
        example = by_name[entry["name"]]
      else:
        raise DataError(f"{source}: {entry['name']} ({split}) is no longer in the data set")
      _check(example, entry, split)
      examples.append(example)
    splits[split] = examples
  return Splits(**splits)


def _entry(example: Example, source: str) -> dict:
  entry = {"name": example.name}
  for part in ("image", "mask"):
    item = getattr(example, part)
    if isinstance(item, Encoded):
      entry[part + "_sha1"] = hashlib.sha1(item.data).hexdigest()
    else:
      stat = Path(item).stat()
      entry[part] = str(Path(item).relative_to(source))
      entry[part + "_stat"] = [stat.st_size, stat.st_mtime_ns]
  return entry


def _check(example: Example, entry: dict, split: str) -> None:
  for part in ("image", "mask"):
    item = getattr(example, part)
    if isinstance(item, Encoded):
      if hashlib.sha1(item.data).hexdigest() != entry.get(part + "_sha1"):
        raise DataError(f"{item}: changed since the run was trained ({split} {part})")
      continue
    try:
      stat = Path(item).stat()
    except OSError:
      raise DataError(f"{item}: missing; the run's {split} split lists it") from None
    if [stat.st_size, stat.st_mtime_ns] != entry[part + "_stat"]:
      raise DataError(f"{item}: changed since the run was trained ({split} {part}: size or "
                      "modification time differs)")
