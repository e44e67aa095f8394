"""BatchNorm statistics recomputed over training images ("precise BatchNorm"); evaluation's
predicted masks."""

import jax
import numpy as np
from flax import nnx

from jaxseg.config import Config
from jaxseg.data.folder import find_examples
from jaxseg.engine import predicted_mask
from jaxseg.loop import statistics_batches
from jaxseg.models.kernels import KERNELS
from tests.support.helpers import loader, tiny_model, write_folder

BATCH = 2  # tiny_model's


def batches(images: np.ndarray):
  masks = np.zeros(images.shape[:3], np.uint8)
  return [(images[i:i + BATCH], masks[i:i + BATCH]) for i in range(0, len(images), BATCH)]


def test_first_statistics_are_pooled_over_every_batch():
  """Mean and variance over all images, not an average of per-batch variances: the batches
  differ in brightness, so the spread between them counts."""
  rng = np.random.default_rng(0)
  images = np.concatenate([rng.integers(low, low + 60, (BATCH, 16, 16, 3))
                           for low in (0, 100, 190)]).astype(np.uint8)
  model, steps, state = tiny_model(unet_depth=4)  # 16 pixels need no padding at 4 poolings
  state = steps.recompute_statistics(state, batches(images))
  network = nnx.merge(model.eval_graph, state.params, state.model_state)
  block = network.encoder.stages[0].first
  inputs = np.asarray(block.conv(images.astype(np.float32) / 255.0))  # the first norm's input
  np.testing.assert_allclose(block.norm.mean[...], inputs.mean((0, 1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(block.norm.var[...], inputs.var((0, 1, 2)), rtol=1e-3, atol=1e-6)
  per_batch = np.mean([inputs[i:i + BATCH].var((0, 1, 2)) for i in range(0, len(images), BATCH)],
                      axis=0)
  assert np.all(block.norm.var[...] > 1.5 * per_batch)


def test_one_batch_statistics_make_evaluation_match_training_mode():
  """Every layer: evaluating with one batch's statistics normalises as training does on it."""
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (BATCH, 16, 16, 3)).astype(np.uint8)
  model, steps, state = tiny_model(dropout=0.0)
  training = nnx.merge(model.train_graph, state.params, state.model_state, copy=True)
  expected = np.asarray(training(images.astype(np.float32)))
  structure = jax.tree.structure(state.model_state)
  recomputed = steps.recompute_statistics(state, batches(images))  # donates ``state``
  assert jax.tree.structure(recomputed.model_state) == structure
  logits = np.asarray(steps.predict(recomputed, images))
  np.testing.assert_allclose(logits, jax.nn.sigmoid(expected[..., 0]), rtol=1e-4, atol=1e-5)


def test_statistics_use_the_same_whole_batches_every_epoch(tmp_path):
  root = write_folder(tmp_path / "data", 7, size=32)
  train_loader = loader(find_examples(root), "plain", batch_size=BATCH)
  chosen = lambda images: [batch[0] for batch in
                           statistics_batches(train_loader, Config(batch_size=BATCH,
                                                                   batchnorm_images=images))]
  assert [len(batch) for batch in chosen(0)] == [BATCH] * 3  # every whole batch
  assert len(chosen(3)) == 2 and len(chosen(100)) == 3       # rounded up to batches, capped
  first, again = chosen(3), chosen(3)
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  in_file_order = np.concatenate([images for images, _ in
                                  train_loader.epoch(shuffle=False, drop_remainder=True)])
  assert not np.array_equal(np.concatenate(first), in_file_order[:2 * BATCH])  # mixed kinds


def test_tracing_the_steps_never_asks_a_traced_value_for_its_sharding(monkeypatch):
  """Flax's ``variable[...] = value`` asks a new value for its sharding, and the error a
  traced value answers with walks the whole trace so far: 40% of tracing a DenseNet121 train
  step. BatchNorm's updates and the statistics pass assign through
  `jaxseg.models.layers.assign` instead, in both kernel forms. (Dropout's key counter still
  assigns, a few times a step; without dropout here.)"""
  traced = []
  setitem = nnx.Variable.__setitem__

  def recording(variable, index, value):
    if isinstance(value, jax.core.Tracer):
      traced.append(variable)
    return setitem(variable, index, value)

  monkeypatch.setattr(nnx.Variable, "__setitem__", recording)
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (2 * BATCH, 16, 16, 3)).astype(np.uint8)
  for kernels in KERNELS:
    _, steps, state = tiny_model(dropout=0.0, kernels=kernels)
    batch = steps.batch(*batches(images)[0])
    steps.train.lower(state, *batch, jax.random.key(0))
    steps.recompute_statistics(state, batches(images))
  assert not traced


def test_evaluation_decides_as_predict_does():
  """The evaluation step's masks and counts are `predicted_mask` of `Steps.predict`'s
  probabilities, the rule sliding windows and `jaxseg.predict` use."""
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (2 * BATCH, 16, 16, 3)).astype(np.uint8)
  masks = rng.integers(0, 2, images.shape[:3]).astype(np.uint8)
  _, steps, state = tiny_model(unet_depth=4)
  # Shift the head's bias (the one variable of shape (1,)) so half the pixels lie above 0.5.
  probabilities = steps.predict(state, images)
  logits = np.log(probabilities / (1 - probabilities))
  state = state.replace(params=jax.tree.map(
    lambda x: x - np.median(logits) if x.shape == (1,) else x, state.params))
  counts, predicted = steps.evaluate(state, [(images[i:i + BATCH], masks[i:i + BATCH])
                                             for i in range(0, len(images), BATCH)])
  expected = predicted_mask(steps.predict(state, images), 1)
  assert 0 < expected.sum() < expected.size  # both classes predicted: the rule is exercised
  np.testing.assert_array_equal(predicted, expected)
  np.testing.assert_array_equal(counts[:, 0], (expected & masks).sum((1, 2)))  # true positives
