"""The command runner: console scripts, one-line errors, and process settings that only a
running command makes (importing jaxseg changes nothing)."""

import importlib
import json
import signal
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

from jaxseg import cli
from jaxseg.errors import JaxsegError

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
COMMANDS = ("train", "evaluate", "predict", "export", "inspect", "bench", "make_masks",
            "dataset_report", "convert_weights", "reproduce", "build_tfds")


def test_every_command_has_a_script():
  assert set(SCRIPTS) == {"jaxseg-" + name.replace("_", "-") for name in COMMANDS}
  assert all(target.startswith("jaxseg.cli:") for target in SCRIPTS.values())


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs_like_its_wrapper(script, monkeypatch, capsys):
  module, name = SCRIPTS[script].split(":")
  main = getattr(importlib.import_module(module), name)
  monkeypatch.setattr(sys, "argv", [script, "--help"])
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")  # no re-run of pytest
  with pytest.raises(SystemExit) as exit_info:
    sys.exit(main())  # what pip's wrapper does
  assert exit_info.value.code == 0
  assert "usage:" in capsys.readouterr().out


def test_a_returned_value_is_not_an_exit_status():
  main = cli.command(lambda argv: {"rows": []})
  assert main() is None  # a console script: sys.exit(None) is exit 0
  assert main([]) == {"rows": []}  # a call from Python keeps it


def test_an_error_is_one_line_and_exit_status_2(capsys):
  def fails(argv):
    raise JaxsegError("--flag value: the problem")

  with pytest.raises(SystemExit) as exit_info:
    cli.command(fails)([])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == "jaxseg: error: --flag value: the problem\n"


def test_settings_hold_while_a_command_runs_and_are_undone_after():
  seen = {}

  def look(argv):
    seen["ctrl_c"] = signal.getsignal(signal.SIGINT)
    seen["warning"] = warnings.formatwarning("careful", UserWarning, "f.py", 3)
    seen["hook"] = sys.unraisablehook

  before = (signal.getsignal(signal.SIGINT), warnings.formatwarning, sys.unraisablehook)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    cli.command(look)([])
    assert seen["ctrl_c"] is not signal.default_int_handler
    assert seen["warning"] == "jaxseg: warning: careful\n"
    assert seen["hook"] is not before[2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert (warnings.formatwarning, sys.unraisablehook) == before[1:]
  finally:
    signal.signal(signal.SIGINT, before[0])


@pytest.mark.parametrize("variable", ["JAXSEG_SIGNALS=0", "JAXSEG_TRACEBACKS=1"])
def test_each_setting_turns_off(variable, monkeypatch):
  name, value = variable.split("=")
  monkeypatch.setenv(name, value)
  seen = {}
  signal.signal(signal.SIGINT, signal.default_int_handler)
  cli.command(lambda argv: seen.update(
    ctrl_c=signal.getsignal(signal.SIGINT),
    warning=warnings.formatwarning("careful", UserWarning, "f.py", 3)))([])
  if name == "JAXSEG_SIGNALS":
    assert seen["ctrl_c"] is signal.default_int_handler
  else:
    assert seen["warning"] != "jaxseg: warning: careful\n"


# The libraries jaxseg imports are imported first: what they change on import is theirs.
PROBE = """
import json, logging, os, signal, sys, warnings
import cv2, flax, jax, matplotlib, optax, orbax.checkpoint, tensorflow_datasets, tqdm
def settings():
  return {"environ": dict(os.environ), "signals": {s.name: repr(signal.getsignal(s))
          for s in (signal.SIGINT, signal.SIGTERM)}, "hook": repr(sys.unraisablehook),
          "warnings": repr(warnings.formatwarning), "filters": {name: repr(logger.filters)
          for name, logger in [("root", logging.getLogger())] + [(n, logging.getLogger(n))
          for n in ("absl", "jax", "orbax")]}, "excepthook": repr(sys.excepthook),
          "matplotlib backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),
          "pyplot": "matplotlib.pyplot" in sys.modules}
before = settings()
import jaxseg, jaxseg.loop, jaxseg.models, jaxseg.cli
import {modules}
print(json.dumps([before, settings()]))
"""


def test_importing_jaxseg_changes_nothing_in_the_process(tmp_path):
  modules = ", ".join(f"jaxseg.{name}" for name in COMMANDS if name != "bench")
  result = subprocess.run(
    [sys.executable, "-c", PROBE.replace("{modules}", modules + ", jaxseg.bench.steps")],
    capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  before, after = json.loads(result.stdout.splitlines()[-1])
  assert after == before
