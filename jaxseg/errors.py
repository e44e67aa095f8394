"""User-facing errors: each is one line naming the file or flag and the problem (the command
runner, `jaxseg.cli`, prints it without a traceback)."""

from __future__ import annotations

from pathlib import Path


class JaxsegError(Exception):
  """An error in the user's input or setup, reported without a traceback."""


class DataError(JaxsegError):
  """A data file or folder that cannot be used; the message names it."""


def refuse_existing(flag: str, path, command: str) -> None:
  """Stop before any work where ``path``, a file the command is to create, exists already: no
  command writes over a file it did not create."""
  if path is not None and Path(path).exists():
    raise JaxsegError(f"{flag} {path}: exists; {command} never writes over a file")
