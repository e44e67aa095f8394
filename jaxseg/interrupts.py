"""Interrupts that wait for a checkpoint: a Ctrl-C that arrives while one is written takes
effect once it is on disk.

Training marks those sections with `deferred` and asks between steps for an interrupt that
arrived meanwhile or that Python swallowed (`raise_pending`). The signal handler and the
unraisable-exception hook that feed them are installed by `handling`, which the command runner
(`jaxseg.cli`) alone enters; without it, a Ctrl-C is Python's own KeyboardInterrupt wherever
it lands.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

_deferring = 0
_pending: list[int] = []


@contextlib.contextmanager
def deferred():
  """A section that an interrupt, where `handling` is in force, waits for; it is raised as the
  section ends."""
  global _deferring
  _deferring += 1
  try:
    yield
  finally:
    _deferring -= 1
    if not _deferring:
      raise_pending()


def raise_pending() -> None:
  """Raise the KeyboardInterrupt of a Ctrl-C that waited for a section to end or that Python
  swallowed, if there was one."""
  if _pending:
    _pending.clear()
    raise KeyboardInterrupt


@contextlib.contextmanager
def handling():
  """Install, for the block, a SIGINT handler that defers a Ctrl-C inside `deferred` sections,
  and an unraisable-exception hook that keeps a Ctrl-C Python would otherwise swallow: one that
  lands while a finaliser or a garbage-collection callback runs (TensorFlow's and JAX's have)
  is printed as "Exception ignored in ..." and lost, and training would go on.

  Only Python's own Ctrl-C handling is replaced: an ignored Ctrl-C (a process started in the
  background) stays ignored, and a handler of the caller's stays in place."""
  replace = (threading.current_thread() is threading.main_thread()
             and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
  previous_hook = sys.unraisablehook
  sys.unraisablehook = _keeping_interrupts(previous_hook)
  if replace:
    signal.signal(signal.SIGINT, _on_interrupt)
  try:
    yield
  finally:
    if replace:
      signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.unraisablehook = previous_hook
    _pending.clear()


def _on_interrupt(signum, frame) -> None:
  if _deferring:
    _pending.append(signum)
  else:
    raise KeyboardInterrupt


def _keeping_interrupts(default):
  def hook(unraisable):
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
      _pending.append(signal.SIGINT)
    else:
      default(unraisable)

  return hook
