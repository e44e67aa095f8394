"""User-facing errors: each is one line naming the file or flag and the problem (the command
runner, `jaxseg.cli`, prints it without a traceback)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

# Reasons a write fails for want of space: the disk is full, or the user's quota is.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class JaxsegError(Exception):
  """An error in the user's input or setup, reported without a traceback."""


class DataError(JaxsegError):
  """A data file or folder that cannot be used; the message names it."""


def refuse_existing(flag: str, path, command: str) -> None:
  """Stop before any work where ``path``, a file the command is to create, exists already: no
  command writes over a file it did not create."""
  if path is not None and Path(path).exists():
    raise JaxsegError(f"{flag} {path}: exists; {command} never writes over a file")


def write_failure(path, error: OSError) -> str:
  """Why a write to ``path`` failed, in words: the system's reason and, where it is a full disk
  or quota, the space left on the file system that holds ``path``."""
  reason = error.strerror or str(error) or type(error).__name__
  if error.errno in NO_SPACE:
    reason += f", {_free_space(Path(path))} free"
  return reason


def _free_space(path: Path) -> str:
  while not path.exists() and path != path.parent:
    path = path.parent
  try:
    free = shutil.disk_usage(path).free
  except OSError:
    return "unknown space"
  for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
    if free >= size:
      return f"{free / size:.1f} {unit}"
  return f"{free / 2**10:.0f} KiB"
