"""A command computing on a CPU re-runs itself once with glibc's huge pages on; nothing else does."""

import os
import subprocess
import sys

import pytest

from jaxseg import hugepages
from jaxseg.hugepages import TUNABLE, computes_on_cpu, huge_page_tunables


def test_the_setting_joins_other_tunables():
  assert huge_page_tunables(None) == f"{TUNABLE}=1"
  assert huge_page_tunables("glibc.malloc.arena_max=2") == f"glibc.malloc.arena_max=2:{TUNABLE}=1"


@pytest.mark.parametrize("chosen", [f"{TUNABLE}=0", f"glibc.malloc.arena_max=2:{TUNABLE}=1"])
def test_a_setting_of_the_users_is_kept(chosen):
  assert huge_page_tunables(chosen) is None


@pytest.mark.parametrize("platforms, expected", [
  ("cpu", True), ("cpu,cuda", True), ("cuda", False), ("cuda,cpu", False), ("tpu", False),
])
def test_jax_platforms_decide_where_it_computes(platforms, expected):
  assert computes_on_cpu({"JAX_PLATFORMS": platforms}) is expected


def test_without_jax_platforms_an_accelerator_plugin_decides(monkeypatch):
  monkeypatch.setattr(hugepages.importlib.metadata, "entry_points",
                      lambda group: ["xla_cuda12"] if group == "jax_plugins" else [])
  assert not computes_on_cpu({})
  monkeypatch.setattr(hugepages.importlib.metadata, "entry_points", lambda group: [])
  assert computes_on_cpu({}) is (hugepages.importlib.util.find_spec("libtpu") is None)


def _run(args, tmp_path, **env):
  environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAX_PLATFORMS")}
  return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                        env=environ | env, cwd=tmp_path, timeout=300, check=False)


@pytest.mark.skipif(not hugepages.supported() or not computes_on_cpu(os.environ),
                    reason="needs glibc >= 2.35, madvise THP and JAX on the CPU")
@pytest.mark.parametrize("env, expected", [
  ({}, f"{TUNABLE}=1"),
  ({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, f"{TUNABLE}=0"),
  ({"JAX_PLATFORMS": "cuda"}, ""),  # where JAX would compute on a GPU: not measured, not set
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


def test_a_program_that_imports_jaxseg_is_left_alone(tmp_path):
  result = _run(["-c", "import os, jaxseg.train; print(os.environ.get('GLIBC_TUNABLES'))"],
                tmp_path)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "None"
