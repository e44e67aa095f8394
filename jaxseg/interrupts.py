"""Interrupts that wait for a checkpoint: a Ctrl-C, or the SIGTERM with which a scheduler
preempts a job, that arrives while one is written takes effect once it is on disk.

Training marks those sections with `deferred` and asks between steps for an interrupt that
arrived meanwhile or that Python swallowed (`between_steps`). The signal handlers and the
unraisable-exception hook that feed them are installed by `handling`, which the command runner
(`jaxseg.cli`) alone enters; without it, a Ctrl-C is Python's own KeyboardInterrupt wherever
it lands, and a SIGTERM ends the process at once.

A SIGTERM raises `Preempted`, a KeyboardInterrupt: everything that cleans up after a Ctrl-C
cleans up after it too, and the runner exits with a status a scheduler requeues the job on.
With several processes (`jax.distributed`), JAX's preemption service catches SIGTERM in place
of `handling`'s handler, and `between_steps` stops every process at the step they agree on.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

_deferring = 0
_pending: list[int] = []
_preempted = False  # a SIGTERM has been raised: the stop it asked for is under way


class Preempted(KeyboardInterrupt):
  """A SIGTERM: the notice with which a scheduler (SLURM, Kubernetes) stops a job before its
  time, to requeue it or because its time is up."""

  def __init__(self, message: str = "stopped by SIGTERM"):
    super().__init__(message)


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
  """Raise the interrupt of a Ctrl-C or SIGTERM that waited for a section to end or that Python
  swallowed, if there was one: `Preempted` where a SIGTERM was among them."""
  if _pending:
    signals = set(_pending)
    _pending.clear()
    raise _interrupt(signal.SIGTERM if signal.SIGTERM in signals else signal.SIGINT)


def between_steps(step: int) -> None:
  """Where training may stop, before its global step ``step`` (counted from 1 over the whole
  run): a pending interrupt is raised, and, with several processes, `Preempted` at the step
  they agreed to stop at after a SIGTERM to any of them.

  A process that stopped alone would leave the others waiting in the step's collectives, and
  a checkpoint is written by all of them together. JAX's preemption service agrees on the
  step: one past the furthest any process had reached when the notice came, so every process
  stops before that same step and the last checkpoint is the same for all. It tracks the
  ``step`` each process passes (and the steps Orbax's saves pass it, which name checkpoints
  by the same count): every process calls this before every step.
  """
  raise_pending()
  if _agreed_to_stop(step):
    raise _interrupt(signal.SIGTERM)


def _agreed_to_stop(step: int) -> bool:
  # Imported here: the runner imports this module in every command, JAX only where one trains.
  import jax
  from jax.experimental import multihost_utils

  return (jax.process_count() > 1 and jax.config.jax_enable_preemption_service
          and multihost_utils.reached_preemption_sync_point(step))


def _interrupt(signum: int) -> KeyboardInterrupt:
  global _preempted
  if signum != signal.SIGTERM:
    return KeyboardInterrupt()
  _preempted = True
  return Preempted()


@contextlib.contextmanager
def handling():
  """Install, for the block, SIGINT and SIGTERM handlers that defer a Ctrl-C or SIGTERM inside
  `deferred` sections, and an unraisable-exception hook that keeps a Ctrl-C Python would
  otherwise swallow: one that lands while a finaliser or a garbage-collection callback runs
  (TensorFlow's and JAX's have) is printed as "Exception ignored in ..." and lost, and training
  would go on. A SIGTERM after the first is ignored: the stop is under way, and a scheduler
  that sends it again (or a user) would otherwise cut short the checkpoint it waits for.

  Only Python's own handling is replaced: an ignored signal (a Ctrl-C of a process started in
  the background) stays ignored, and a handler of the caller's stays in place."""
  global _preempted
  defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
  main = threading.current_thread() is threading.main_thread()
  replaced = [signum for signum, default in defaults.items()
              if main and signal.getsignal(signum) is default]
  previous_hook = sys.unraisablehook
  sys.unraisablehook = _keeping_interrupts(previous_hook)
  for signum in replaced:
    signal.signal(signum, _on_interrupt)
  try:
    yield
  finally:
    for signum in replaced:
      signal.signal(signum, defaults[signum])
    sys.unraisablehook = previous_hook
    _pending.clear()
    _preempted = False


def _on_interrupt(signum, frame) -> None:
  if signum == signal.SIGTERM and _preempted:
    return
  if _deferring:
    _pending.append(signum)
  else:
    raise _interrupt(signum)


def _keeping_interrupts(default):
  def hook(unraisable):
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
      _pending.append(signal.SIGTERM if issubclass(unraisable.exc_type, Preempted)
                      else signal.SIGINT)
    else:
      default(unraisable)

  return hook
