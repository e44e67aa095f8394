"""Write a folder-format data set as TFRecords: ``python -m jaxseg.build_tfds FOLDER --tfds-dir DIR``.

Then train from them with ``python -m jaxseg.train --data tfds:cervical_cytology --tfds-dir DIR``
(see `jaxseg.data.tfds_builder`).
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

from pathlib import Path

from jaxseg.cli import ArgumentParser, command
from jaxseg.data.tfds_builder import NAME, prepare


@command
def main(argv=None) -> None:
  parser = ArgumentParser(prog="python -m jaxseg.build_tfds",
                          description="Write TFRecords of a folder-format data set.")
  parser.add_argument("folder", type=Path, help="DATA/images + DATA/masks, or DATA/train + test")
  parser.add_argument("--tfds-dir", required=True, help="TFDS data dir to write the records into")
  args = parser.parse_args(argv)
  builder = prepare(NAME, args.tfds_dir, args.folder)
  print(f"jaxseg: {builder.data_dir}: " + ", ".join(
    f"{split} {info.num_examples} images" for split, info in builder.info.splits.items()))

