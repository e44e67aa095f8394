"""Faults a shared cluster brings, on tiny runs: a scheduler's SIGTERM, a second writer, a full
disk. Each run resumed after one ends as the uninterrupted run does."""

import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest

from jaxseg import checkpoints, engine, evaluate, interrupts, loop, run_folder, train
from jaxseg.cli import PREEMPTED, command
from jaxseg.errors import JaxsegError
from jaxseg.platform import resolve_kernels
from jaxseg.run_folder import RunFolder
from tests.support.helpers import train_summary, write_folder

TINY = ["--image-size", "32", "--unet-filters", "4", "--batch-size", "2", "--loader", "plain",
        "--preset", "quick"]
STEPS = 4  # training steps per epoch: 9 training images in batches of 2
TIMING = ("train_images_per_second", "seconds", "phase_seconds")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp("data"), 12, size=64)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("runs") / "straight"
  return workdir, train_summary(data, workdir, *TINY, "--epochs", "2")


@pytest.fixture
def sigterm_default():
  """SIGTERM's handler is the default for the test, as in a command's process (the runner
  replaces only that one), and the one this process had afterwards."""
  previous = signal.getsignal(signal.SIGTERM)
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  yield
  signal.signal(signal.SIGTERM, previous)


def metrics(workdir):
  """metrics.jsonl's lines, their timing fields aside."""
  return [{name: value for name, value in json.loads(line).items() if name not in TIMING}
          for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def sigterm():
  signal.raise_signal(signal.SIGTERM)


def stopped_by_sigterm(capsys, *argv):
  """Run ``train.main(argv)``, which a SIGTERM stops: its one line."""
  with pytest.raises(SystemExit) as exit_info:
    train.main(list(argv))
  err = capsys.readouterr().err.strip().splitlines()
  assert exit_info.value.code == PREEMPTED, err
  assert err[-1].startswith("jaxseg: stopped by SIGTERM"), err
  return err[-1]


def test_sigterm_at_random_points_then_resume_gives_the_uninterrupted_metrics(
    data, straight, tmp_path, monkeypatch, capsys, sigterm_default):
  """Preempted during a step (with a checkpoint every 2 steps), during validation and during
  a save, each time resumed: the run ends with the uninterrupted run's metrics.jsonl and test
  metrics, and preempted.json lists the three stops. While the last resumed run trains, a
  second writer is refused in one line naming it, and evaluate reads its checkpoints."""
  workdir = tmp_path / "run"
  # Points each resumed run reaches: a step after the first checkpoint (at step 2); one of the
  # validations left; one of the saves left that every run makes (the checkpoints at the end of
  # epochs and at step 6; a best one only where Dice improved).
  at_step = random.randint(3, 2 * STEPS)
  at_validation = random.randint(1, 2 if at_step <= STEPS else 1)
  at_save = random.randint(1, 3 if at_step <= STEPS and at_validation == 1 else 1)
  where = f"SIGTERM at step {at_step}, validation {at_validation}, save {at_save}"

  def between_steps(step, original=loop.between_steps):
    original(step)
    if step == at_step:
      sigterm()

  monkeypatch.setattr(loop, "between_steps", between_steps)
  line = stopped_by_sigterm(capsys, "--data", str(data), "--workdir", str(workdir), *TINY,
                            "--epochs", "2", "--checkpoint-steps", "2")
  assert f"--resume --workdir {workdir}" in line
  monkeypatch.undo()

  validations = iter(range(1, 10))

  def evaluate_loader(*args, original=loop.evaluate_loader):
    if next(validations) == at_validation:
      sigterm()
    return original(*args)

  monkeypatch.setattr(loop, "evaluate_loader", evaluate_loader)
  stopped_by_sigterm(capsys, "--workdir", str(workdir), "--resume")
  monkeypatch.undo()

  saves = iter(range(1, 10))

  def save(manager, *args, original=ocp.CheckpointManager.save, **kwargs):
    if next(saves) == at_save:
      sigterm()  # as the save starts: it finishes first
    return original(manager, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  stopped_by_sigterm(capsys, "--workdir", str(workdir), "--resume")
  monkeypatch.undo()

  seen = {}

  def second_writer_and_reader(*args, original=loop.evaluate_loader):
    if not seen:  # the first validation of the resumed run
      capsys.readouterr()
      with pytest.raises(SystemExit) as exit_info:
        train.main(["--workdir", str(workdir), "--resume"])
      seen["code"], seen["refusal"] = exit_info.value.code, one_line(capsys)
      evaluate.main(["--workdir", str(workdir), "--json"])
      seen["evaluated"] = json.loads(capsys.readouterr().out)
    return original(*args)

  monkeypatch.setattr(loop, "evaluate_loader", second_writer_and_reader)
  train.main(["--workdir", str(workdir), "--resume"])
  assert metrics(workdir) == metrics(straight[0]), where
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["test"] == straight[1]["test"], where
  stops = json.loads((workdir / "preempted.json").read_text())["preemptions"]
  assert [stop["signal"] for stop in stops] == ["SIGTERM"] * 3
  assert stops[0]["pid"] == os.getpid() and stops[0]["host"] == socket.gethostname()
  assert (stops[0]["epochs_done"], stops[0]["steps_into_next_epoch"]) in ((0, 2), (1, 0), (1, 2))
  assert seen["code"] == 2
  assert f"in use by process {os.getpid()} on {socket.gethostname()}" in seen["refusal"]
  assert seen["evaluated"]["best_epoch"] in (1, 2)  # a finished checkpoint


def test_sigterm_before_the_first_checkpoint_keeps_nothing(data, tmp_path, monkeypatch, capsys,
                                                           sigterm_default):
  monkeypatch.setattr(loop, "between_steps", lambda step: sigterm())
  line = stopped_by_sigterm(capsys, "--data", str(data), "--workdir", str(tmp_path / "run"),
                            *TINY, "--epochs", "1")
  assert "before the first epoch was saved; nothing was kept" in line
  assert not (tmp_path / "run").exists()  # the same command runs again when requeued


def test_a_second_sigterm_does_not_cut_the_stop_short(sigterm_default):
  """A scheduler (or a user) may send SIGTERM again while the first one's stop waits for a
  checkpoint: only the first counts."""
  with interrupts.handling():
    with pytest.raises(interrupts.Preempted):
      sigterm()
    sigterm()  # ignored
    with interrupts.deferred():
      sigterm()  # ignored too: nothing is raised as the section ends
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sigterm_stops_any_command_with_the_preempted_status(capsys, sigterm_default):
  with pytest.raises(SystemExit) as exit_info:
    command(lambda argv: sigterm())([])
  assert exit_info.value.code == PREEMPTED == 75
  assert capsys.readouterr().err == "jaxseg: stopped by SIGTERM\n"
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def one_line(capsys, notes: int = 0) -> str:
  """The error line of a command that failed, the only line on stderr but progress bars and
  up to ``notes`` lines before it."""
  err = capsys.readouterr().err
  lines = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]  # after the bars' last redraw
  lines = [line for line in lines if line.strip()]
  assert 1 <= len(lines) <= 1 + notes and lines[-1].startswith("jaxseg: error:"), lines
  return lines[-1]


HOLD_LOCK = """
import sys
from jaxseg.run_folder import RunFolder
run = RunFolder(sys.argv[1])
run.create()
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_lock_dies_with_its_process(straight, tmp_path, capsys):
  """A process killed with SIGKILL while it holds a run folder leaves no stale lock."""
  workdir = tmp_path / "run"
  shutil.copytree(straight[0], workdir)
  holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workdir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(SystemExit):
      train.main(["--workdir", str(workdir), "--resume"])
    assert f"in use by process {holder.pid} on " in one_line(capsys)
  finally:
    holder.kill()
    holder.wait()
  run = RunFolder(workdir)
  run.create()  # free again
  run.close()


class SmallDisk:
  """A small file system to fill: a tmpfs mounted at ``folder`` where this process may mount
  one (as root), else ``folder`` itself with the writes that a full disk would fail failing
  with ENOSPC (checkpoints, and with nothing left, the run folder's files)."""

  def __init__(self, folder, monkeypatch):
    folder.mkdir()
    self.folder, self.monkeypatch, self.filler = folder, monkeypatch, folder / "filler"
    self.mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs",
                                   str(folder)], capture_output=True, check=False).returncode == 0

  def fill(self, leave: int) -> None:
    """Leave ``leave`` bytes free: 0, or room for small files but not for a checkpoint."""
    if self.mounted:
      with open(self.filler, "ab") as file:
        file.write(b"\0" * max(shutil.disk_usage(self.folder).free - leave, 0))
      return
    self.monkeypatch.setattr(checkpoints.PackedPyTreeHandler, "async_save", no_space)
    if not leave:
      self.monkeypatch.setattr(run_folder, "write_atomically", no_space)

  def free(self) -> None:
    self.filler.unlink(missing_ok=True)
    self.monkeypatch.undo()

  def close(self) -> None:
    """Unmount the tmpfs: a file left open on it (a leak) fails the test, and is let go."""
    if self.mounted and subprocess.run(["umount", str(self.folder)], check=False).returncode:
      subprocess.run(["umount", "--lazy", str(self.folder)], check=True)
      pytest.fail(f"{self.folder}: a file on it is still open")


def no_space(*args, **kwargs):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def disk(tmp_path, monkeypatch):
  disk = SmallDisk(tmp_path / "disk", monkeypatch)
  yield disk
  disk.close()


NO_SPACE = r"\(No space left on device, [\d.]+ [KMG]iB free\)"


def test_a_full_disk_stops_training_in_one_line_and_loses_no_checkpoint(
    data, straight, disk, monkeypatch, capsys, sigterm_default):
  """The disk fills up as epoch 2 trains: its checkpoint fails in one line naming the folder
  and the space left, epoch 1's checkpoints stay restorable, and once space is freed the
  resumed run ends as the uninterrupted one. A SIGTERM as the write goes on waits for it, and
  the failure is what the run reports (exit status 2: a requeued job would fail again)."""
  workdir = disk.folder / "run"

  def between_steps(step, original=loop.between_steps):
    original(step)
    if step == STEPS + 1:
      disk.fill(leave=200 * 2**10)  # room for metrics.jsonl, not for a checkpoint

  def write(message, original=loop.tqdm.write):
    original(message)
    if message.startswith("epoch   2/"):  # epoch 2's checkpoint is being written
      sigterm()

  monkeypatch.setattr(loop, "between_steps", between_steps)
  monkeypatch.setattr(loop.tqdm, "write", write)
  with pytest.raises(SystemExit) as exit_info:
    train.main(["--data", str(data), "--workdir", str(workdir), *TINY, "--epochs", "2"])
  assert exit_info.value.code == 2
  assert re.fullmatch(rf"jaxseg: error: {workdir}/checkpoints/(latest|best): cannot write the "
                      rf"checkpoint {NO_SPACE}", one_line(capsys, notes=1))
  assert not (workdir / "preempted.json").exists()
  like = train_state_like(workdir)
  for which, state in (("latest", like), ("best", like.replace(opt_state=None))):
    saved = RunFolder(workdir).checkpoints
    assert saved.restore(which, state)[1]["epoch"] == 1
    saved.close()
  disk.free()
  monkeypatch.undo()  # the disk fills no more
  train.main(["--workdir", str(workdir), "--resume"])
  assert metrics(workdir) == metrics(straight[0])


def test_a_run_folder_file_that_finds_no_space_is_one_line_and_unchanged(disk):
  run = RunFolder(disk.folder / "run")
  run.create()
  run.rewrite_metrics([{"epoch": 1}])
  disk.fill(leave=0)
  with pytest.raises(JaxsegError) as error:
    run.append_metrics({"epoch": 2})
  assert re.fullmatch(rf"{run.metrics_file}: cannot write it {NO_SPACE}", str(error.value))
  assert run.read_metrics() == [{"epoch": 1}]
  assert sorted(path.name for path in run.path.iterdir()) == ["metrics.jsonl", "writer.lock"]
  run.close()


def train_state_like(workdir):
  """The abstract train state of the run at ``workdir``, placed as training places it."""
  config, _ = RunFolder(workdir).read_config()
  model, state = engine.build(config, resolve_kernels(config.kernels), abstract=True)
  return engine.Steps(model, config.augment, config.batch_size).placement(state)
