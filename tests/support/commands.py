"""Commands run as a user runs them: ``python -m jaxseg.NAME`` in a process of its own, or
their ``main`` called from Python."""

import json
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


def json_written(main, argv: list, path) -> dict:
  """Run ``main(argv + ["--json", path])``; the JSON it wrote, checked to be what it returned."""
  returned = main([*argv, "--json", str(path)])
  written = json.loads(path.read_text())
  assert written == json.loads(json.dumps(returned))
  return written
