"""Output folders that commands write into, never over a file they read or did not write.

A command names every file it will write before it writes any; `OutputFolder` refuses, in one
line naming both, an output that is one of the command's inputs, an output folder that is an
input folder (its outputs would mix with the inputs and be read as inputs next time), and an
existing file that no jaxseg command wrote. Each written file's name goes into the folder's
``.jaxseg-outputs`` list before the file is written, so running a command again into the same
folder replaces what it (or an interrupted run of it) wrote there, and nothing else.

Outputs (masks, images, CSV files, exports, a run folder's JSON files) are written through
`write_atomically`: a full disk, a kill or a preemption never leaves half a file under an
output's name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from jaxseg.errors import DataError, write_failure

MANIFEST = ".jaxseg-outputs"


class OutputFolder:
  """``folder`` and the file ``names`` a command will write there, checked against its inputs.

  ``inputs`` are the files it reads, ``input_folders`` the folders it reads them from. Nothing
  is written until `path` claims a name.
  """

  def __init__(self, folder: Path, names: Iterable[str], *, inputs: Iterable[Path] = (),
               input_folders: Iterable[Path] = ()):
    self.folder = Path(folder)
    self.names = set(names)
    self._written = self._read_manifest()
    self._check(list(inputs), list(input_folders))

  def _check(self, inputs: list[Path], input_folders: list[Path]) -> None:
    folder = self.folder
    if folder.exists() and not folder.is_dir():
      raise DataError(f"{folder}: cannot make the output folder: a file has that name")
    for input_folder in input_folders:
      if _identities(folder) & _identities(input_folder):
        raise DataError(f"{folder}: the output folder is the input folder {input_folder}; "
                        "choose another")
    # Outputs beside an input file would mix with the data it was read from (an images/
    # folder would hold masks and overlays next time it is read).
    for source in inputs:
      if _identities(folder) & _identities(source.parent):
        raise DataError(f"{folder}: the output folder holds the input {source}; choose another")
    if not folder.is_dir():
      return  # a new folder: nothing there to overwrite
    sources = {key: source for source in inputs for key in _identities(source)}
    for name in sorted(self.names):
      path = folder / name
      source = next((sources[key] for key in _identities(path) if key in sources), None)
      if source is not None:
        raise DataError(f"{path}: would overwrite the input {source}; choose another output folder")
      if path.is_symlink():
        raise DataError(f"{path}: is a link, through which a file elsewhere would be written; "
                        "choose another output folder or remove the link")
      if path.exists() and name not in self._written:
        raise DataError(f"{path}: exists and no jaxseg command wrote it; choose another output "
                        "folder or move the file away")

  def _read_manifest(self) -> set[str]:
    try:
      return set((self.folder / MANIFEST).read_text().splitlines())
    except (FileNotFoundError, NotADirectoryError):
      return set()
    except OSError as error:
      raise DataError(f"{self.folder / MANIFEST}: {error.strerror or error}") from None

  def path(self, name: str) -> Path:
    """The path to write ``name`` to, listed as jaxseg's first (the folder is made if missing)."""
    if name not in self.names:
      raise ValueError(f"{name} is not among the outputs checked")
    if name not in self._written:
      try:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / MANIFEST, "a") as manifest:
          manifest.write(f"{name}\n")
      except OSError as error:
        raise DataError(f"{self.folder}: cannot write there: "
                        f"{write_failure(self.folder, error)}") from None
      self._written.add(name)
    return self.folder / name


def write_atomically(path: Path, data: bytes | str, *, replace: bool = True) -> None:
  """Write ``data`` into a new file beside ``path`` and rename it to ``path``: no reader sees
  half a file, and a write that fails (a full disk) or is cut short (a kill) leaves what was
  there before; a link or a second name of an existing file is replaced, never written
  through. ``replace=False``: raise FileExistsError rather than replace a file that exists,
  even one made meanwhile. Raises OSError; the staging file is removed."""
  path = Path(path)
  staging = path.with_name(f".{path.name}.partial")
  try:
    staging.write_bytes(data.encode() if isinstance(data, str) else data)
    if replace:
      os.replace(staging, path)
    else:
      os.link(staging, path)  # fails where path exists
  finally:
    staging.unlink(missing_ok=True)


def _identities(path: Path) -> set:
  """Keys that two paths of one file share: the path after links, and the inode if it exists
  (a second hard link to a file has another path but the same inode)."""
  keys = {Path(path).resolve()}
  try:
    status = os.stat(path)
  except OSError:
    return keys
  return keys | {(status.st_dev, status.st_ino)}
