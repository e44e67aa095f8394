"""Checkpoints: the state comes back exactly, and a checkpoint of another model is refused."""

import logging
import resource
import signal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from jaxseg import interrupts
from jaxseg.checkpoints import Checkpoints
from jaxseg.cli import process_settings
from jaxseg.engine import TrainState
from jaxseg.errors import JaxsegError
from tests.support.helpers import tiny_model


def placed_state(**changes):
  return tiny_model(**changes)[2]


def test_checkpoint_round_trip_is_exact(tmp_path):
  state = placed_state(seed=1)
  state = state.replace(step=state.step + 7)  # an int32 beside the float32 arrays
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("latest", 3, state, {"epoch": 3, "best_dice": 0.5})
  restored, meta = checkpoints.restore("latest", placed_state(seed=2))
  checkpoints.close()
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
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  with pytest.raises(KeyboardInterrupt), interrupts.handling():
    checkpoints.save("latest", 3, state, {"epoch": 3})
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  restored, meta = checkpoints.restore("latest", placed_state(seed=2))
  checkpoints.close()
  assert meta["epoch"] == 3
  np.testing.assert_array_equal(*(np.asarray(jax.tree.leaves(s)[0]) for s in (state, restored)))


def test_an_ignored_ctrl_c_stays_ignored_through_a_save(tmp_path, monkeypatch, ctrl_c_handler):
  ctrl_c_handler(signal.SIG_IGN)
  interrupt_saves(monkeypatch)
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  with interrupts.handling():
    checkpoints.save("latest", 3, placed_state(seed=1), {"epoch": 3})
  checkpoints.close()
  assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
  assert checkpoints.has("latest")


def test_a_checkpoint_holds_the_state_as_saved_while_training_goes_on(tmp_path):
  """Saves return before the files are written: what the next steps do to the state's
  buffers (donated, overwritten) must not reach the checkpoint."""
  state = placed_state(seed=1)
  expected = [np.array(leaf) for leaf in jax.tree.leaves(state)]
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("latest", 1, state, {"epoch": 1})
  overwrite = jax.jit(lambda tree: jax.tree.map(lambda x: x * 0 - 1, tree), donate_argnums=0)
  for _ in range(3):
    state = overwrite(state)
  restored, _ = checkpoints.restore("latest", placed_state(seed=2))
  checkpoints.close()
  for want, got in zip(expected, jax.tree.leaves(restored), strict=True):
    np.testing.assert_array_equal(np.asarray(got), want)


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_loses_nothing(tmp_path, caplog):
  """A write that fails in the background (here: files capped at 1 kB, as a full disk
  would) stops the run at the next wait with one line naming the checkpoint folder and the
  reason, Orbax's logged tracebacks held back by the command runner, and the checkpoint it was to replace stays the
  latest."""
  state = hand_state({"kernel": jnp.ones((64, 64))})
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("latest", 1, state, {"epoch": 1})
  checkpoints.wait()
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # Python ignores SIGXFSZ
  try:
    with process_settings():  # from the save on: the write fails in the background at once
      checkpoints.save("latest", 2, state, {"epoch": 2})
      with pytest.raises(JaxsegError, match=r"checkpoints/latest: cannot write the checkpoint "
                                            r"\(File too large\)$"):
        checkpoints.wait()
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
  assert checkpoints.has("latest")
  assert checkpoints.restore("latest", state)[1]["epoch"] == 1
  checkpoints.close()


def test_checkpoint_of_another_model_is_refused(tmp_path):
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("best", 1, placed_state(), {"epoch": 1})
  with pytest.raises(JaxsegError, match=r"checkpoints/best/1: not a checkpoint of this model: it "):
    checkpoints.restore("best", placed_state(unet_filters=8))
  checkpoints.close()


class Hand(nnx.Module):
  """A module of the variables a test names, and a BatchNorm statistic."""

  def __init__(self, params: dict):
    for name, value in params.items():
      setattr(self, name, nnx.Param(value))
    self.mean = nnx.BatchStat(jnp.arange(4.0))


def hand_state(params, with_optimizer=True):
  _, params, model_state = nnx.split(Hand(params), nnx.Param, ...)
  return TrainState(step=jnp.array(3, jnp.int32), params=params, model_state=model_state,
                    opt_state={"mu": jnp.ones(6)} if with_optimizer else None)


@pytest.mark.parametrize("like, where", [
  ({"kernel": jnp.zeros((2, 3)), "renamed": jnp.zeros((3, 2))}, "['renamed']"),  # renamed leaf
  ({"bias": jnp.zeros((3, 2)), "kernel": jnp.zeros((2, 3))}, "['bias'].value (3, 2)"),  # moved
])
def test_checkpoint_with_another_leaf_of_the_same_size_is_refused(tmp_path, like, where):
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("best", 1, hand_state({"kernel": jnp.ones((2, 3)), "other": jnp.ones((3, 2))}), {})
  with pytest.raises(JaxsegError, match=r"best/1: not a checkpoint of this model: it holds "):
    try:
      checkpoints.restore("best", hand_state(like))
    except JaxsegError as error:
      assert where in str(error)
      raise
  checkpoints.close()


def test_inference_restores_the_model_alone(tmp_path):
  saved = hand_state({"kernel": jnp.full((2, 3), 5.0)})
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("best", 2, saved, {"epoch": 2})
  restored, meta = checkpoints.restore("best", hand_state({"kernel": jnp.zeros((2, 3))}, False))
  checkpoints.close()
  assert meta == {"epoch": 2} and restored.opt_state is None
  np.testing.assert_array_equal(restored.params["kernel"][...], saved.params["kernel"][...])
  np.testing.assert_array_equal(restored.model_state["mean"][...], saved.model_state["mean"][...])


def test_a_state_without_optimizer_saves_the_model_alone(tmp_path):
  """``best`` is saved without Adam's moments: nothing of them on disk, and resuming from it
  is refused in one line."""
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("best", 2, hand_state({"kernel": jnp.full((2, 3), 5.0)}, False), {"epoch": 2})
  checkpoints.wait()
  assert not (tmp_path / "run" / "checkpoints" / "best" / "2" / "optimizer").exists()
  assert (tmp_path / "run" / "checkpoints" / "best" / "2" / "model").is_dir()
  restored, _ = checkpoints.restore("best", hand_state({"kernel": jnp.zeros((2, 3))}, False))
  np.testing.assert_array_equal(restored.params["kernel"][...], np.full((2, 3), 5.0))
  with pytest.raises(JaxsegError, match=r"best/2: holds the model alone, no optimizer state"):
    checkpoints.restore("best", hand_state({"kernel": jnp.zeros((2, 3))}))
  checkpoints.close()


def test_truncated_checkpoint_is_one_line(tmp_path):
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  checkpoints.save("latest", 1, hand_state({"kernel": jnp.ones((64, 64))}), {"epoch": 1})
  checkpoints.close()
  for path in (tmp_path / "run" / "checkpoints" / "latest" / "1" / "model").rglob("*"):
    if path.is_file() and path.stat().st_size > 100:
      path.write_bytes(path.read_bytes()[:40])
  checkpoints = Checkpoints(tmp_path / "run" / "checkpoints")
  with pytest.raises(JaxsegError, match=r"latest/1: cannot read this checkpoint") as error:
    checkpoints.restore("latest", hand_state({"kernel": jnp.zeros((64, 64))}))
  checkpoints.close()
  assert "\n" not in str(error.value)
