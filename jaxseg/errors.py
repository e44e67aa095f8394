"""User-facing errors: each is one line naming the file or flag and the problem."""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
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


class ArgumentParser(argparse.ArgumentParser):
  """argparse with a bad flag or value reported in one line; the usage is one --help away."""

  def error(self, message: str):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def cli(main):
  """Run a command-line entry point: a `JaxsegError` becomes one line on stderr and exit 2."""

  @functools.wraps(main)
  def run(argv=None):
    warnings.formatwarning = _one_line_warning
    sys.unraisablehook = _keeping_interrupts(sys.unraisablehook)
    try:
      result = main(argv)
    except JaxsegError as error:
      print(f"jaxseg: error: {error}", file=sys.stderr)
      raise SystemExit(2) from None
    except KeyboardInterrupt:
      print("jaxseg: interrupted", file=sys.stderr)
      raise SystemExit(130) from None
    # A console script hands main()'s return value to sys.exit, which would print it and
    # exit 1: only a call from Python (argv given) gets it.
    return None if argv is None else result

  return run


_lost_interrupts: list[bool] = []


def _keeping_interrupts(default):
  """An unraisable-exception hook that keeps a Ctrl-C Python swallowed: one that lands while
  a finaliser or a garbage-collection callback runs (TensorFlow's and JAX's have) is printed as
  "Exception ignored in ..." and lost, and training went on. `raise_lost_interrupt` raises it."""
  if getattr(default, "keeps_interrupts", False):
    return default

  def hook(unraisable):
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
      _lost_interrupts.append(True)
    else:
      default(unraisable)

  hook.keeps_interrupts = True
  return hook


def raise_lost_interrupt() -> None:
  """Raise the KeyboardInterrupt of a Ctrl-C that Python swallowed, if there was one."""
  if _lost_interrupts:
    _lost_interrupts.clear()
    raise KeyboardInterrupt


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
  return f"jaxseg: warning: {message}\n"
