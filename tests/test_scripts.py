"""The console scripts of pyproject.toml, called as their generated wrappers call them."""

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from jaxseg.errors import cli

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]


def test_every_command_has_a_script():
  assert set(SCRIPTS) == {f"jaxseg-{name}" for name in
                          ("train", "evaluate", "predict", "export", "inspect", "bench")}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs_like_its_wrapper(script, monkeypatch, capsys):
  module, name = SCRIPTS[script].split(":")
  main = getattr(importlib.import_module(module), name)
  monkeypatch.setattr(sys, "argv", [script, "--help"])
  with pytest.raises(SystemExit) as exit_info:
    sys.exit(main())  # what pip's wrapper does
  assert exit_info.value.code == 0
  assert "usage:" in capsys.readouterr().out


def test_a_returned_value_is_not_an_exit_status():
  main = cli(lambda argv: {"rows": []})
  assert main() is None  # a console script: sys.exit(None) is exit 0
  assert main([]) == {"rows": []}  # a call from Python keeps it
