"""Where a run's wall time goes: start-up, epochs and wrap-up, phase by phase.

`jaxseg.loop` times its phases with a `PhaseClock` and keeps them in ``summary.json``'s
``wall_seconds``, beside ``metrics.jsonl``'s seconds of each epoch's phases, so that the fixed
cost of a run (what a short run pays whatever its epochs) can be read from the run itself.
"""

from __future__ import annotations

import contextlib
import os
import time


class PhaseClock:
  """Wall seconds of named phases, kept in the order they first ran.

  ``before``: seconds spent before the clock was made, by name (a command's imports).
  """

  def __init__(self, before: dict[str, float] | None = None):
    self.seconds: dict[str, float] = dict(before or {})

  @contextlib.contextmanager
  def __call__(self, name: str):
    """Time the block as phase ``name``; a phase timed twice adds up."""
    start = time.perf_counter()
    try:
      yield
    finally:
      self.add(name, time.perf_counter() - start)

  def add(self, name: str, seconds: float) -> None:
    self.seconds[name] = self.seconds.get(name, 0.0) + seconds

  def rounded(self, names) -> dict[str, float]:
    """The phases ``names`` that ran, to 10 ms."""
    return {name: round(self.seconds[name], 2) for name in names if name in self.seconds}

  def wall_seconds(self, start_up, wrap_up) -> dict:
    """A run's phases: ``start_up`` (the phases named, before the first epoch), ``epochs``,
    ``wrap_up`` (the phases named, after the last), and ``total``: the process's age where the
    clock holds a command's ``imports`` (its interpreter start-up included), else the sum."""
    age = process_seconds() if "imports" in self.seconds else None
    return {"start_up": self.rounded(start_up), "epochs": round(self.seconds["epochs"], 2),
            "wrap_up": self.rounded(wrap_up),
            "total": round(age if age is not None else sum(self.seconds.values()), 2)}


def process_seconds() -> float | None:
  """Seconds since this process started (the interpreter's start-up and every import with it),
  where the system says (Linux's /proc); else None."""
  try:
    with open("/proc/self/stat") as stat:
      # The fields after the command name, which may hold spaces, end with ')'.
      fields = stat.read().rsplit(")", 1)[1].split()
    with open("/proc/uptime") as uptime:
      now = float(uptime.read().split()[0])
  except (OSError, ValueError, IndexError):
    return None
  started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime, field 22 of stat
  return max(0.0, now - started)
