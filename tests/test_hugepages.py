"""jaxseg's commands re-run themselves once with glibc's huge pages on; nothing else does."""

import os
import subprocess
import sys

import pytest

from jaxseg import hugepages
from jaxseg.hugepages import TUNABLE, huge_page_tunables

PYTHON = "/usr/bin/python3"


@pytest.mark.parametrize("argv0, orig_argv", [
  (["-m"], [PYTHON, "-m", "jaxseg.train", "--backbone", "vgg19"]),
  (["-m"], [PYTHON, "-X", "importtime", "-mjaxseg.bench", "--peer", "smp"]),
  (["/venv/bin/jaxseg-train"], [PYTHON, "/venv/bin/jaxseg-train", "--epochs", "2"]),
])
def test_commands_get_the_setting(argv0, orig_argv):
  assert huge_page_tunables(None, argv0, orig_argv) == f"{TUNABLE}=1"
  assert (huge_page_tunables("glibc.malloc.arena_max=2", argv0, orig_argv)
          == f"glibc.malloc.arena_max=2:{TUNABLE}=1")


@pytest.mark.parametrize("argv0, orig_argv", [
  (["-c"], [PYTHON, "-c", "import jaxseg"]),  # a program that imports jaxseg
  (["-m"], [PYTHON, "-m", "pytest", "tests"]),
  (["-m"], [PYTHON, "-m", "jaxsegmentation.train"]),
  (["/home/me/train.py"], [PYTHON, "/home/me/train.py"]),
  ([""], [PYTHON]),  # the interactive interpreter
])
def test_other_programs_are_left_alone(argv0, orig_argv):
  assert huge_page_tunables(None, argv0, orig_argv) is None


@pytest.mark.parametrize("chosen", [f"{TUNABLE}=0", f"glibc.malloc.arena_max=2:{TUNABLE}=1"])
def test_a_setting_of_the_users_is_kept(chosen):
  assert huge_page_tunables(chosen, ["-m"], [PYTHON, "-m", "jaxseg.train"]) is None


def _run(args, tmp_path, **env):
  environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environ,
                        cwd=tmp_path, timeout=300, check=False)


@pytest.mark.skipif(not hugepages._supported(), reason="needs glibc >= 2.35 and madvise THP")
@pytest.mark.parametrize("env, expected", [
  ({}, f"{TUNABLE}=1"),
  ({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, f"{TUNABLE}=0"),
])
def test_a_command_runs_once_with_the_setting(tmp_path, env, expected):
  # A --config file runs inside the command: it reports the environment the command got,
  # and how often it ran, then stops the command.
  seen = tmp_path / "seen.txt"
  config = tmp_path / "experiment.py"
  config.write_text("import os\n\ndef get_config():\n"
                    f"  with open({str(seen)!r}, 'a') as f:\n"
                    "    f.write(os.environ.get('GLIBC_TUNABLES', '') + '\\n')\n"
                    "  raise SystemExit(7)\n")
  result = _run(["-m", "jaxseg.train", "--config", str(config)], tmp_path, **env)
  assert result.returncode == 7, result.stderr
  assert seen.read_text() == expected + "\n"


def test_importing_jaxseg_changes_nothing(tmp_path):
  result = _run(["-c", "import os, jaxseg; print(os.environ.get('GLIBC_TUNABLES'))"],
                tmp_path)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "None"
