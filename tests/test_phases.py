"""The wall-time clock of a run's phases, and a process's age."""

import subprocess
import sys

import pytest

from jaxseg.phases import PhaseClock, process_seconds


def test_phases_add_up_in_the_order_they_first_ran(monkeypatch):
  ticks = iter([0.0, 1.5, 2.0, 2.25, 10.0, 10.5])
  monkeypatch.setattr("jaxseg.phases.time.perf_counter", lambda: next(ticks))
  clock = PhaseClock({"imports": 3.0})
  with clock("data"):
    pass
  with clock("model"):
    pass
  with pytest.raises(ValueError), clock("data"):  # a phase that fails still counts
    raise ValueError
  assert clock.seconds == {"imports": 3.0, "data": 2.0, "model": 0.25}
  assert clock.rounded(["model", "absent", "imports"]) == {"model": 0.25, "imports": 3.0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_process_seconds_counts_from_the_start_of_the_process():
  # A process that waits 0.5 s before asking is at least that old, and not much older.
  age = float(subprocess.run(
    [sys.executable, "-c", ("import time; time.sleep(0.5); "
                            "from jaxseg.phases import process_seconds; print(process_seconds())")],
    capture_output=True, text=True, check=True).stdout)
  assert 0.5 <= age < 30
  assert process_seconds() > 0
