"""The command runner: what a jaxseg command sets in its process, and its errors in one line.

Importing jaxseg changes nothing in the process. A command (``python -m jaxseg.NAME`` or its
console script ``jaxseg-NAME``) sets, and only while it runs:

- **Huge pages for malloc** (`jaxseg.hugepages`): a command about to compute on a CPU re-runs
  itself once, before importing JAX, with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``.
  ``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` turns it off.
- **A Ctrl-C or SIGTERM waits for a checkpoint being written** (`jaxseg.interrupts`), and a
  Ctrl-C that a finaliser swallowed still stops training. A SIGTERM, a scheduler's preemption
  notice, stops a command as a Ctrl-C does, with exit status 75 (`PREEMPTED`) for the
  scheduler to requeue the job on. ``JAXSEG_SIGNALS=0`` leaves Python's own handling (a
  SIGTERM then ends the process at once).
- **One-line errors and warnings**: a `JaxsegError` is one line and exit status 2, a Ctrl-C
  exit status 130, a warning one line, and Orbax's logged tracebacks of a failed checkpoint
  write (reported in one line instead) are dropped. ``JAXSEG_TRACEBACKS=1`` shows them all as
  Python and Orbax print them.
- **Compiled programs kept on disk** (the commands that train or predict): XLA's compilation
  cache in ``$JAX_COMPILATION_CACHE_DIR``, else the jaxseg cache's ``xla/`` folder.
  ``JAX_ENABLE_COMPILATION_CACHE=false`` turns it off.

A command module starts, before its other imports, with::

  if __name__ == "__main__":
    from jaxseg.cli import run_command
    run_command(__spec__.name)

so that huge pages cost a re-run of the interpreter alone, not of the imports; its ``main`` is
decorated with `command`, and calling ``main(argv)`` from Python applies everything but huge
pages.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path

from jaxseg import hugepages
from jaxseg.errors import JaxsegError
from jaxseg.interrupts import Preempted

# The exit status of a command stopped by SIGTERM: sysexits.h's EX_TEMPFAIL, "try again
# later". Apart from 143, the status of a process that SIGTERM ended before it could save.
PREEMPTED = 75


def run_command(module: str) -> None:
  """Run ``module``'s ``main`` as this process's command and exit with its status."""
  hugepages.rerun_with_huge_pages()
  importlib.import_module(module).main()
  raise SystemExit(0)


def _console_script(module: str):
  return functools.partial(run_command, module)


# Console scripts (pyproject.toml): jaxseg-NAME runs python -m jaxseg.NAME.
train = _console_script("jaxseg.train")
evaluate = _console_script("jaxseg.evaluate")
predict = _console_script("jaxseg.predict")
export = _console_script("jaxseg.export")
inspect = _console_script("jaxseg.inspect")
bench = _console_script("jaxseg.bench.steps")
make_masks = _console_script("jaxseg.make_masks")
dataset_report = _console_script("jaxseg.dataset_report")
convert_weights = _console_script("jaxseg.convert_weights")
reproduce = _console_script("jaxseg.reproduce")
build_tfds = _console_script("jaxseg.build_tfds")


def command(main=None, *, compilation_cache: bool = False):
  """Decorate a command's ``main(argv=None)``: its process settings (module docstring) while it
  runs, a `JaxsegError` as one line on stderr and exit status 2, a Ctrl-C as exit status 130,
  a SIGTERM as exit status `PREEMPTED`. ``compilation_cache``: the command compiles programs
  worth keeping on disk."""
  if main is None:
    return functools.partial(command, compilation_cache=compilation_cache)

  @functools.wraps(main)
  def run(argv=None):
    if compilation_cache:
      enable_compilation_cache()
    try:
      with process_settings():
        result = main(argv)
    except JaxsegError as error:
      print(f"jaxseg: error: {error}", file=sys.stderr)
      raise SystemExit(2) from None
    except Preempted as stop:
      print(f"jaxseg: {stop}", file=sys.stderr)
      raise SystemExit(PREEMPTED) from None
    except KeyboardInterrupt:
      print("jaxseg: interrupted", file=sys.stderr)
      raise SystemExit(130) from None
    # A console script hands main()'s return value to sys.exit, which would print it and
    # exit 1: only a call from Python (argv given) gets it.
    return None if argv is None else result

  return run


@contextlib.contextmanager
def process_settings():
  """The settings of the module docstring but huge pages, undone when the block ends."""
  from jaxseg import interrupts

  with contextlib.ExitStack() as stack:
    if os.environ.get("JAXSEG_SIGNALS", "1") != "0":
      stack.enter_context(interrupts.handling())
    if os.environ.get("JAXSEG_TRACEBACKS", "0") in ("", "0"):
      stack.enter_context(_one_line_warnings())
      stack.enter_context(_without_orbax_errors())
    yield


@contextlib.contextmanager
def _one_line_warnings():
  previous = warnings.formatwarning
  warnings.formatwarning = lambda message, *_, **__: f"jaxseg: warning: {message}\n"
  try:
    yield
  finally:
    warnings.formatwarning = previous


class _OrbaxErrors(logging.Filter):
  """Orbax logs a failed write with its traceback from every thread it passes through; the
  checkpoint writer reports it in one line instead."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR or "orbax" not in Path(record.pathname).parts


@contextlib.contextmanager
def _without_orbax_errors():
  logger, dropped = logging.getLogger("absl"), _OrbaxErrors()
  logger.addFilter(dropped)
  try:
    yield
  finally:
    logger.removeFilter(dropped)


def enable_compilation_cache() -> None:
  """Keep XLA's compiled programs on disk (``JAX_COMPILATION_CACHE_DIR``, else the jaxseg
  cache's ``xla/``): compiling that a second run, evaluate or predict then skips."""
  import jax

  from jaxseg.config import default_cache_dir

  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


class ArgumentParser(argparse.ArgumentParser):
  """argparse with a bad flag or value reported in one line; the usage is one --help away."""

  def error(self, message: str):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
