import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.losses import soft_jaccard_loss
from jaxseg.metrics import confusion_counts, scores


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
