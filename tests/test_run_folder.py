"""The run folder's files: its config read back, and its creation by several processes."""

from pathlib import Path

import jax
import pytest

from jaxseg.errors import JaxsegError
from jaxseg.run_folder import RunFolder


def test_corrupt_config_is_one_line(tmp_path):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text('{"config": {"backbone": ')
  with pytest.raises(JaxsegError, match=r"config.json: cannot read it as JSON"):
    RunFolder(tmp_path / "run").read_config()


def test_processes_probe_the_run_folder_with_files_of_their_own(tmp_path, monkeypatch):
  """Every process of a multi-process run creates the folder at the same moment: each probes
  it with its own file, so that one's removal cannot fail another's."""
  probes, touch = [], Path.touch
  monkeypatch.setattr(Path, "touch", lambda path, *a, **k: (probes.append(path), touch(path, *a, **k)))
  for process in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda process=process: process)
    run = RunFolder(tmp_path / "run")
    run.create()
    run.close()
  assert len(probes) == 2 and probes[0] != probes[1]
  # Each removed its own; process 0's lock stays, free.
  assert [path.name for path in (tmp_path / "run").iterdir()] == ["writer.lock"]
