"""Commands run as a user runs them: ``python -m jaxseg.NAME`` in a process of its own."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_command(name: str, *args, timeout: int = 120, env: dict | None = None):
  """``python -m jaxseg.NAME ARGS`` from the repository, with this checkout's jaxseg."""
  return subprocess.run([sys.executable, "-m", f"jaxseg.{name}", *map(str, args)], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def assert_one_line_error(result, *words):
  """``result`` failed with exit status 2 and one line, ``jaxseg: error: ...``, naming
  ``words``, no traceback."""
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("jaxseg: error:"), lines
  for word in words:
    assert word in lines[0], (word, lines)
