"""The learning-rate schedule: constant as ever, or cosine with linear warm-up, carried by the
optimizer state so that a resumed run continues along it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxseg import engine
from jaxseg.config import Config

PEAK = 0.01
STEPS_PER_EPOCH = 5


def cosine(**changes) -> Config:
  return Config(**{"learning_rate": PEAK, "lr_schedule": "cosine", "warmup_epochs": 2,
                   "epochs": 10, **changes})


def rates(config: Config) -> list[float]:
  """The rate after every step count of the run, 0 to its last step done."""
  return [engine.learning_rate_at(config, STEPS_PER_EPOCH, step)
          for step in range(config.epochs * STEPS_PER_EPOCH + 1)]


def tiny(**changes) -> Config:
  """A 4-wide plain U-Net for 16x16 batches of 2, as `tests.support.helpers.tiny_model`'s."""
  return Config(**{"unet_filters": 4, "image_size": 16, "batch_size": 2, "weights": "none",
                   **changes})


def test_cosine_rises_over_the_warm_up_then_decays_to_zero_at_the_last_step():
  config = cosine()
  values = rates(config)
  warm_up, total = 2 * STEPS_PER_EPOCH, 10 * STEPS_PER_EPOCH
  assert values[0] == 0.0
  assert values[warm_up] == pytest.approx(PEAK)
  assert np.all(np.diff(values[:warm_up + 1]) > 0)
  assert np.all(np.diff(values[warm_up:]) < 0)
  # Half-way through the decay (which follows the warm-up), half the peak.
  assert values[(warm_up + total) // 2] == pytest.approx(PEAK / 2)
  # The last step's rate is one decay step short of 0, reached once that step is done.
  last = PEAK * (1 - np.cos(np.pi / (total - warm_up))) / 2
  assert values[total - 1] == pytest.approx(last, rel=1e-3) and last < 2e-3 * PEAK
  assert values[total] == pytest.approx(0.0, abs=1e-9)


def test_cosine_without_warm_up_starts_at_the_peak():
  values = rates(cosine(warmup_epochs=0))
  assert values[0] == pytest.approx(PEAK)
  assert np.all(np.diff(values) < 0)
  assert values[-1] == pytest.approx(0.0, abs=1e-9)


def test_constant_rate_is_the_learning_rate_and_its_optimizer_state_plain_adams():
  config = tiny(learning_rate=PEAK)
  assert engine.learning_rate_schedule(config) == PEAK
  assert [engine.learning_rate_at(config, None, step) for step in (0, 7, 10**6)] == [PEAK] * 3
  _, state = engine.build(config, "xla", abstract=True)
  plain = jax.eval_shape(optax.adam(PEAK).init, state.params)
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(plain)  # checkpoints restore
  _, scheduled = engine.build(tiny(lr_schedule="cosine"), "xla", abstract=True,
                              steps_per_epoch=STEPS_PER_EPOCH)
  assert jax.tree.structure(scheduled.opt_state) != jax.tree.structure(plain)  # holds a count


def test_cosine_needs_the_steps_per_epoch_to_build_an_optimizer():
  config = tiny(lr_schedule="cosine", warmup_epochs=1, epochs=2)
  with pytest.raises(ValueError, match="steps per epoch"):
    engine.build(config, "xla", abstract=True)
  with pytest.raises(ValueError, match="steps per epoch"):
    engine.build(config, "xla", abstract=True, steps_per_epoch=0)
  with pytest.raises(ValueError, match="steps per epoch"):
    engine.learning_rate_at(config, None, 0)
  model, state = engine.build(config, "xla", optimizer=False, abstract=True)  # for prediction
  assert model.tx is None and state.opt_state is None


def test_built_optimizer_takes_the_scheduled_rate():
  """Gradients of 1 make each Adam step move a parameter by the rate itself (up to rounding):
  0, then the warm-up's next rates."""
  config = tiny(lr_schedule="cosine", warmup_epochs=1, epochs=2, learning_rate=PEAK)
  model, _ = engine.build(config, "xla", abstract=True, steps_per_epoch=STEPS_PER_EPOCH)
  params = {"w": jnp.zeros(3)}
  opt_state = model.tx.init(params)
  for step in range(3):
    updates, opt_state = model.tx.update({"w": jnp.ones(3)}, opt_state, params)
    expected = engine.learning_rate_at(config, STEPS_PER_EPOCH, step)
    assert expected == pytest.approx(PEAK * step / STEPS_PER_EPOCH)
    np.testing.assert_allclose(updates["w"], -expected, rtol=1e-4)


def test_first_train_step_of_a_warm_up_leaves_the_parameters():
  """The tiny U-Net's first jitted train step under a warm-up: rate 0, so the parameters stay,
  while Adam takes in the step's gradients and the schedule counts it."""
  config = tiny(lr_schedule="cosine", warmup_epochs=1, epochs=2, learning_rate=PEAK,
                unet_depth=4)
  model, state = engine.build(config, "xla", steps_per_epoch=STEPS_PER_EPOCH)
  steps = engine.Steps(model, config.augment, config.batch_size)
  state = steps.place(state)
  before = jax.device_get(state.params)
  rng = np.random.default_rng(0)
  images, masks = steps.batch(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
                              rng.integers(0, 2, (2, 16, 16), dtype=np.uint8))
  state, _ = steps.train(state, images, masks, jax.random.key(config.seed))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params), before)
  adam, schedule = state.opt_state
  assert int(schedule.count) == 1
  assert any(np.any(np.asarray(mu) != 0) for mu in jax.tree.leaves(adam.mu))


def test_a_resumed_run_continues_the_schedule():
  """N steps, the optimizer state saved to host arrays and restored into a freshly built
  optimizer's state (as a resumed run restores its checkpoint), then N more: the same as 2N
  steps in one go, and not the same as restarting the schedule."""
  config = cosine(warmup_epochs=1, epochs=2)
  half = STEPS_PER_EPOCH  # the run ends after 2N steps, when the schedule reaches 0
  target = {"w": jnp.arange(4.0), "b": jnp.ones(())}

  def run(params, opt_state, tx, count):
    for _ in range(count):
      grads = jax.grad(lambda p: sum(jnp.sum((p[k] - target[k]) ** 2) for k in p))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    return params, opt_state

  def optimizer():
    return optax.adam(engine.learning_rate_schedule(config, STEPS_PER_EPOCH))

  start = {"w": jnp.zeros(4), "b": jnp.zeros(())}
  tx = optimizer()
  whole, whole_state = run(start, tx.init(start), tx, 2 * half)
  params, saved = run(start, tx.init(start), tx, half)
  saved = jax.device_get(saved)
  resumed_tx = optimizer()
  restored = jax.tree.unflatten(jax.tree.structure(resumed_tx.init(params)),
                                [jnp.asarray(leaf) for leaf in jax.tree.leaves(saved)])
  resumed, resumed_state = run(params, restored, resumed_tx, half)
  jax.tree.map(np.testing.assert_array_equal, resumed, whole)
  jax.tree.map(np.testing.assert_array_equal, resumed_state, whole_state)
  assert int(whole_state[1].count) == 2 * half  # adam's scaling, then the schedule's count
  restarted, _ = run(params, resumed_tx.init(params), resumed_tx, half)
  assert not np.allclose(restarted["w"], whole["w"])
