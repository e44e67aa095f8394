"""Checkpoints: the state comes back exactly, and a checkpoint of another model is refused."""

import logging
import resource
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxseg.engine import TrainState
from jaxseg.errors import JaxsegError
from jaxseg.run import RunFolder
from tests.helpers import tiny_model


def placed_state(**changes):
  return tiny_model(**changes)[2]


def test_checkpoint_round_trip_is_exact(tmp_path):
  state = placed_state(seed=1)
  state = state.replace(step=state.step + 7)  # an int32 beside the float32 arrays
  run = RunFolder(tmp_path / "run")
  run.save("latest", 3, state, {"epoch": 3, "best_dice": 0.5})
  restored, meta = run.restore("latest", placed_state(seed=2))
  run.close()
  assert meta == {"epoch": 3, "best_dice": 0.5}
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for expected, actual in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
    assert actual.dtype == expected.dtype and actual.sharding == expected.sharding
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))
  assert int(restored.step) == 7


@pytest.fixture
def ctrl_c_handler():
  """Sets SIGINT's handler for the test and puts back the one this process had: a process a
  shell starts in the background begins with SIGINT ignored."""
  previous = signal.getsignal(signal.SIGINT)
  yield lambda handler: signal.signal(signal.SIGINT, handler)
  signal.signal(signal.SIGINT, previous)


def interrupt_saves(monkeypatch):
  save = ocp.CheckpointManager.save

  def interrupted_save(manager, *args, **kwargs):
    signal.raise_signal(signal.SIGINT)  # Ctrl-C as the save starts
    return save(manager, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", interrupted_save)


def test_ctrl_c_during_a_save_stops_after_it(tmp_path, monkeypatch, ctrl_c_handler):
  ctrl_c_handler(signal.default_int_handler)
  interrupt_saves(monkeypatch)
  state = placed_state(seed=1)
  run = RunFolder(tmp_path / "run")
  with pytest.raises(KeyboardInterrupt):
    run.save("latest", 3, state, {"epoch": 3})
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  restored, meta = run.restore("latest", placed_state(seed=2))
  run.close()
  assert meta["epoch"] == 3
  np.testing.assert_array_equal(*(np.asarray(jax.tree.leaves(s)[0]) for s in (state, restored)))


def test_an_ignored_ctrl_c_stays_ignored_through_a_save(tmp_path, monkeypatch, ctrl_c_handler):
  ctrl_c_handler(signal.SIG_IGN)
  interrupt_saves(monkeypatch)
  run = RunFolder(tmp_path / "run")
  run.save("latest", 3, placed_state(seed=1), {"epoch": 3})
  run.close()
  assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
  assert run.has_checkpoint("latest")


def test_a_checkpoint_holds_the_state_as_saved_while_training_goes_on(tmp_path):
  """Saves return before the files are written: what the next steps do to the state's
  buffers (donated, overwritten) must not reach the checkpoint."""
  state = placed_state(seed=1)
  expected = [np.array(leaf) for leaf in jax.tree.leaves(state)]
  run = RunFolder(tmp_path / "run")
  run.save("latest", 1, state, {"epoch": 1})
  overwrite = jax.jit(lambda tree: jax.tree.map(lambda x: x * 0 - 1, tree), donate_argnums=0)
  for _ in range(3):
    state = overwrite(state)
  restored, _ = run.restore("latest", placed_state(seed=2))
  run.close()
  for want, got in zip(expected, jax.tree.leaves(restored), strict=True):
    np.testing.assert_array_equal(np.asarray(got), want)


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_loses_nothing(tmp_path, caplog):
  """A write that fails in the background (here: files capped at 1 kB, as a full disk
  would) stops the run at the next wait with one line naming the checkpoint folder and the
  reason, Orbax's logged tracebacks held back, and the checkpoint it was to replace stays the
  latest."""
  state = hand_state({"kernel": jnp.ones((64, 64))})
  run = RunFolder(tmp_path / "run")
  run.save("latest", 1, state, {"epoch": 1})
  run.wait()
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # Python ignores SIGXFSZ
  try:
    run.save("latest", 2, state, {"epoch": 2})
    with pytest.raises(JaxsegError, match=r"checkpoints/latest: cannot write the checkpoint "
                                          r"\(File too large\)$"):
      run.wait()
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
  assert run.has_checkpoint("latest")
  assert run.restore("latest", state)[1]["epoch"] == 1
  run.close()


def test_checkpoint_of_another_model_is_refused(tmp_path):
  run = RunFolder(tmp_path / "run")
  run.save("best", 1, placed_state(), {"epoch": 1})
  with pytest.raises(JaxsegError, match=r"checkpoints/best/1: not a checkpoint of this model: it "):
    run.restore("best", placed_state(unet_filters=8))
  run.close()


def hand_state(params, with_optimizer=True):
  return TrainState(step=jnp.array(3, jnp.int32), params=params,
                    model_state={"mean": jnp.arange(4.0)},
                    opt_state={"mu": jnp.ones(6)} if with_optimizer else None)


@pytest.mark.parametrize("like, where", [
  ({"kernel": jnp.zeros((2, 3)), "renamed": jnp.zeros((3, 2))}, "['renamed']"),  # renamed leaf
  ({"bias": jnp.zeros((3, 2)), "kernel": jnp.zeros((2, 3))}, "['bias'] (3, 2)"),  # moved leaf
])
def test_checkpoint_with_another_leaf_of_the_same_size_is_refused(tmp_path, like, where):
  run = RunFolder(tmp_path / "run")
  run.save("best", 1, hand_state({"kernel": jnp.ones((2, 3)), "other": jnp.ones((3, 2))}), {})
  with pytest.raises(JaxsegError, match=r"best/1: not a checkpoint of this model: it holds "):
    try:
      run.restore("best", hand_state(like))
    except JaxsegError as error:
      assert where in str(error)
      raise
  run.close()


def test_inference_restores_the_model_alone(tmp_path):
  saved = hand_state({"kernel": jnp.full((2, 3), 5.0)})
  run = RunFolder(tmp_path / "run")
  run.save("best", 2, saved, {"epoch": 2})
  restored, meta = run.restore("best", hand_state({"kernel": jnp.zeros((2, 3))}, False))
  run.close()
  assert meta == {"epoch": 2} and restored.opt_state is None
  np.testing.assert_array_equal(restored.params["kernel"], saved.params["kernel"])
  np.testing.assert_array_equal(restored.model_state["mean"], saved.model_state["mean"])


def test_a_state_without_optimizer_saves_the_model_alone(tmp_path):
  """``best`` is saved without Adam's moments: nothing of them on disk, and resuming from it
  is refused in one line."""
  run = RunFolder(tmp_path / "run")
  run.save("best", 2, hand_state({"kernel": jnp.full((2, 3), 5.0)}, False), {"epoch": 2})
  run.wait()
  assert not (tmp_path / "run" / "checkpoints" / "best" / "2" / "optimizer").exists()
  assert (tmp_path / "run" / "checkpoints" / "best" / "2" / "model").is_dir()
  restored, _ = run.restore("best", hand_state({"kernel": jnp.zeros((2, 3))}, False))
  np.testing.assert_array_equal(restored.params["kernel"], np.full((2, 3), 5.0))
  with pytest.raises(JaxsegError, match=r"best/2: holds the model alone, no optimizer state"):
    run.restore("best", hand_state({"kernel": jnp.zeros((2, 3))}))
  run.close()


def test_truncated_checkpoint_is_one_line(tmp_path):
  run = RunFolder(tmp_path / "run")
  run.save("latest", 1, hand_state({"kernel": jnp.ones((64, 64))}), {"epoch": 1})
  run.close()
  for path in (tmp_path / "run" / "checkpoints" / "latest" / "1" / "model").rglob("*"):
    if path.is_file() and path.stat().st_size > 100:
      path.write_bytes(path.read_bytes()[:40])
  run = RunFolder(tmp_path / "run")
  with pytest.raises(JaxsegError, match=r"latest/1: cannot read this checkpoint") as error:
    run.restore("latest", hand_state({"kernel": jnp.zeros((64, 64))}))
  run.close()
  assert "\n" not in str(error.value)


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
    RunFolder(tmp_path / "run").create()
  assert len(probes) == 2 and probes[0] != probes[1]
  assert not any((tmp_path / "run").iterdir())  # each removed its own
