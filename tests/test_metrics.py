import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.data.masks import CLASS_NAMES, CYTOPLASM, NUCLEUS, TARGETS, target_mask
from jaxseg.losses import multiclass_soft_jaccard_loss, soft_jaccard_loss
from jaxseg.metrics import (
  class_scores,
  confusion_counts,
  confusion_matrices,
  run_scores,
  scores,
)


def test_scores_from_known_counts():
  truth = np.zeros((2, 4, 4), bool)
  pred = np.zeros((2, 4, 4), bool)
  truth[0, :2] = True        # 8 target pixels in image 0
  pred[0, :1] = True         # 4 found
  pred[0, 3, :2] = True      # 2 false positives
  counts = confusion_counts(pred, truth)
  np.testing.assert_array_equal(counts, [[4, 2, 4, 6], [0, 0, 0, 16]])
  s = scores(counts)
  assert s["accuracy"] == pytest.approx(26 / 32)
  assert s["sensitivity"] == pytest.approx(4 / 8)
  assert s["precision"] == pytest.approx(4 / 6)
  assert s["iou"] == pytest.approx(4 / 10)
  assert s["dice"] == pytest.approx(8 / 14)
  background_iou = 22 / 28
  assert s["mean_iou"] == pytest.approx((0.4 + background_iou) / 2)
  # Image 1 has no target and none predicted: it scores 1, as an empty match.
  assert s["per_image_dice"] == pytest.approx((8 / 14 + 1) / 2)
  assert s["per_image_mean_iou"] == pytest.approx(((0.4 + 6 / 12) / 2 + 1) / 2)


def test_a_model_that_predicts_nothing_scores_precision_0():
  truth = np.zeros((3, 4, 4), bool)
  truth[0, 1:3, 1:3] = True
  truth[1, 0] = True         # image 2 has no target: prediction and truth are both empty there
  s = scores(confusion_counts(np.zeros_like(truth), truth))
  assert s["precision"] == 0 and s["sensitivity"] == 0
  assert s["iou"] == 0 and s["dice"] == 0
  assert s["accuracy"] == pytest.approx(40 / 48)
  assert s["mean_iou"] == pytest.approx(40 / 48 / 2)  # background IoU 40/48, target 0
  # Per image: 0 where a target was missed, 1 where both are empty.
  assert s["per_image_dice"] == pytest.approx(1 / 3)
  assert s["per_image_mean_iou"] == pytest.approx(((12 / 16) / 2 + (12 / 16) / 2 + 1) / 3)


def test_empty_prediction_of_an_empty_target_scores_1():
  empty = np.zeros((2, 4, 4), bool)
  s = scores(confusion_counts(empty, empty))
  assert all(s[key] == 1 for key in ("precision", "sensitivity", "iou", "dice", "accuracy",
                                     "per_image_dice"))
  # Background IoU is 1 as well, so the means are 1 too.
  assert s["mean_iou"] == 1 and s["per_image_mean_iou"] == 1


def test_foreground_predicted_where_there_is_none_scores_sensitivity_0():
  pred = np.zeros((1, 4, 4), bool)
  pred[0, 0, 0] = True
  s = scores(confusion_counts(pred, np.zeros_like(pred)))
  assert s["sensitivity"] == 0 and s["precision"] == 0 and s["dice"] == 0


def test_jax_and_numpy_counts_agree():
  rng = np.random.default_rng(0)
  pred, truth = rng.random((3, 8, 8)) > 0.5, rng.random((3, 8, 8)) > 0.3
  np.testing.assert_array_equal(confusion_counts(jnp.asarray(pred), jnp.asarray(truth)),
                                confusion_counts(pred, truth))


def test_dice_is_at_least_iou():
  rng = np.random.default_rng(1)
  for _ in range(20):
    s = scores(confusion_counts(rng.random((2, 16, 16)) > 0.5, rng.random((2, 16, 16)) > 0.6))
    assert s["dice"] >= s["iou"]


def test_soft_jaccard_loss():
  targets = jnp.array([[1.0, 1.0, 0.0, 0.0]])
  confident = jnp.where(targets > 0, 30.0, -30.0)
  assert float(soft_jaccard_loss(confident, targets)) == pytest.approx(0.0, abs=1e-6)
  assert float(soft_jaccard_loss(-confident, targets)) == pytest.approx(1 - 1 / 5, abs=1e-6)
  # Logits at 0 give probability 1/2 everywhere: intersection 1, union 2 + 2 - 1.
  assert float(soft_jaccard_loss(jnp.zeros((1, 4)), targets)) == pytest.approx(1 - 2 / 4)


def reference_multiclass_loss(logits: np.ndarray, labels: np.ndarray, smooth: float = 1.0) -> float:
  """The formula in float64, class by class: softmax, one-hot, each class's sums over the
  whole batch, the mean of 1 - Jaccard over the classes."""
  logits = logits.astype(np.float64)
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  probs = exp / exp.sum(axis=-1, keepdims=True)
  losses = []
  for c in range(logits.shape[-1]):
    p, t = probs[..., c], (labels == c).astype(np.float64)
    intersection = (p * t).sum()
    losses.append(1 - (intersection + smooth) / (p.sum() + t.sum() - intersection + smooth))
  return float(np.mean(losses))


@pytest.mark.parametrize("absent", [None, 2], ids=["every_class", "no_nucleus"])
def test_multiclass_loss_and_gradient_equal_a_float64_reference(absent):
  rng = np.random.default_rng(3)
  logits = rng.normal(0, 2, (2, 5, 4, 3))
  labels = rng.integers(0, 3, (2, 5, 4))
  if absent is not None:  # a class that no pixel of the batch holds still counts
    labels[labels == absent] = 0
  loss, grad = jax.value_and_grad(multiclass_soft_jaccard_loss)(
    jnp.asarray(logits, jnp.float32), jnp.asarray(labels, jnp.uint8))
  assert float(loss) == pytest.approx(reference_multiclass_loss(logits, labels), abs=1e-6)
  step, expected = 1e-6, np.zeros_like(logits)  # central differences of the reference
  for index in np.ndindex(logits.shape):
    shifted = [logits.copy(), logits.copy()]
    shifted[0][index] += step
    shifted[1][index] -= step
    expected[index] = (reference_multiclass_loss(shifted[0], labels)
                       - reference_multiclass_loss(shifted[1], labels)) / (2 * step)
  np.testing.assert_allclose(np.asarray(grad), expected, atol=1e-7)


def test_multiclass_loss_is_0_for_a_confident_right_answer():
  labels = jnp.array([[[0, 1], [2, 1]]])
  logits = 30.0 * jax.nn.one_hot(labels, 3)
  assert float(multiclass_soft_jaccard_loss(logits, labels)) == pytest.approx(0.0, abs=1e-6)


def test_three_class_scores_equal_the_binary_masks_scores():
  """A 3-class prediction scores each target as its binary masks do, and each class as the
  binary masks of that class; an image without nuclei included."""
  rng = np.random.default_rng(4)
  truth, pred = rng.integers(0, 3, (3, 8, 8)), rng.integers(0, 3, (3, 8, 8))
  truth[1][truth[1] == NUCLEUS] = CYTOPLASM
  matrices = confusion_matrices(pred, truth, 3)
  np.testing.assert_array_equal(confusion_matrices(jnp.asarray(pred), jnp.asarray(truth), 3),
                                matrices)
  assert matrices.sum() == truth.size
  result = class_scores(matrices)
  for target in TARGETS:
    binary = scores(confusion_counts(target_mask(pred.astype(np.uint8), target),
                                     target_mask(truth.astype(np.uint8), target)))
    assert result[target] == binary
  for value, name in enumerate(CLASS_NAMES):
    assert result["classes"][name] == scores(confusion_counts(pred == value, truth == value))
  assert result["mean_iou"] == pytest.approx(np.mean([result["classes"][name]["iou"]
                                                      for name in CLASS_NAMES]))
  assert result["dice"] == pytest.approx((result["nuclei"]["dice"]
                                          + result["cytoplasm"]["dice"]) / 2)
  assert result["accuracy"] == pytest.approx(np.mean(pred == truth))
  assert run_scores(matrices) == result and run_scores(confusion_counts(pred, truth)) == scores(
    confusion_counts(pred, truth))
