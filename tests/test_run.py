"""Checkpoints: the state comes back exactly, and a checkpoint of another model is refused."""

import jax
import numpy as np
import pytest

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


def test_checkpoint_of_another_model_is_refused(tmp_path):
  run = RunFolder(tmp_path / "run")
  run.save("best", 1, placed_state(), {"epoch": 1})
  with pytest.raises(JaxsegError, match=r"checkpoints/best/1: not a checkpoint of this model"):
    run.restore("best", placed_state(unet_filters=8))
  run.close()
