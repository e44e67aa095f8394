"""User-facing errors: each is one line naming the file or flag and the problem."""

from __future__ import annotations

import functools
import sys
import warnings


class JaxsegError(Exception):
  """An error in the user's input or setup, reported without a traceback."""


class DataError(JaxsegError):
  """A data file or folder that cannot be used; the message names it."""


def cli(main):
  """Run a command-line entry point: a `JaxsegError` becomes one line on stderr and exit 2."""

  @functools.wraps(main)
  def run(argv=None):
    warnings.formatwarning = _one_line_warning
    try:
      return main(argv)
    except JaxsegError as error:
      print(f"jaxseg: error: {error}", file=sys.stderr)
      raise SystemExit(2) from None
    except KeyboardInterrupt:
      print("jaxseg: interrupted", file=sys.stderr)
      raise SystemExit(130) from None

  return run


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
  return f"jaxseg: warning: {message}\n"
