"""User-facing errors: each is one line naming the file or flag and the problem."""

from __future__ import annotations

import argparse
import functools
import sys
import warnings


class JaxsegError(Exception):
  """An error in the user's input or setup, reported without a traceback."""


class DataError(JaxsegError):
  """A data file or folder that cannot be used; the message names it."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse with a bad flag or value reported in one line; the usage is one --help away."""

  def error(self, message: str):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def cli(main):
  """Run a command-line entry point: a `JaxsegError` becomes one line on stderr and exit 2."""

  @functools.wraps(main)
  def run(argv=None):
    warnings.formatwarning = _one_line_warning
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


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
  return f"jaxseg: warning: {message}\n"
