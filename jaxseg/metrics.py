"""The paper's metrics, from per-image confusion counts of the target against the rest.

Counts are summed over images ("pooled": every pixel of the test set weighs the same), as
the paper's accuracy, sensitivity, precision, IoU and Dice of the target are. Two more
numbers help to set results beside the paper's honestly:

- ``mean_iou``: pooled IoU averaged over the two classes, target and background. The
  paper's IoU columns sit above its Dice, which a single class cannot do (Dice >= IoU);
  a mean including the large, easy background class can.
- ``per_image_dice`` / ``per_image_mean_iou``: the same scores averaged over images.

A score with an empty denominator is 1 where prediction and truth agree (both empty: nothing
to find, nothing found) and 0 where they do not, pooled and per image alike. So a model that
predicts no foreground where there is some scores precision 0, as scikit-learn's
``zero_division=0`` has it, not a perfect 1; likewise sensitivity for foreground predicted
where there is none. Dice's and IoU's denominators are empty only when both masks are.

A 3-class run (``--target cell``) counts per image the confusion matrix of its most probable
class against the true one (`confusion_matrices`). Each of the paper's targets is a set of
classes (`jaxseg.data.masks.TARGET_CLASSES`), and its counts add up cells of that matrix
(`target_counts`): they equal the counts of the binary masks of the target, so the target's
scores are a binary run's, keys and rules alike (`class_scores`).
"""

from __future__ import annotations

import numpy as np

from jaxseg.data.masks import CLASS_NAMES, TARGET_CLASSES

METRIC_KEYS = ("accuracy", "sensitivity", "precision", "iou", "dice", "mean_iou")


def confusion_counts(pred, truth):
  """Per-image (tp, fp, fn, tn) of binary masks shaped (B, H, W); works on jax and numpy arrays."""
  xp = pred.__array_namespace__()  # NumPy's or JAX's, without importing JAX here
  pred, truth = pred.astype(bool), truth.astype(bool)
  axes = tuple(range(1, pred.ndim))
  tp = xp.sum(pred & truth, axis=axes)
  fp = xp.sum(pred & ~truth, axis=axes)
  fn = xp.sum(~pred & truth, axis=axes)
  tn = xp.sum(~pred & ~truth, axis=axes)
  return xp.stack([tp, fp, fn, tn], axis=-1)


def confusion_matrices(pred, truth, classes: int):
  """Per-image confusion matrices (B, C, C) of class masks shaped (B, H, W): entry [i, t, p]
  counts image i's pixels of true class t predicted as p. Works on jax and numpy arrays."""
  xp = pred.__array_namespace__()  # NumPy's or JAX's, without importing JAX here
  pairs = truth.astype(xp.int32) * classes + pred.astype(xp.int32)
  pairs = pairs.reshape(pairs.shape[0], -1)
  counts = xp.stack([xp.sum(pairs == pair, axis=1) for pair in range(classes * classes)], axis=-1)
  return counts.reshape(-1, classes, classes)


def target_counts(matrices, classes) -> np.ndarray:
  """Per-image (tp, fp, fn, tn) of the target made of ``classes`` against the rest, from
  confusion matrices (N, C, C): as `confusion_counts` of the target's binary masks."""
  matrices = np.asarray(matrices)
  inside = np.isin(np.arange(matrices.shape[-1]), classes)

  def total(true, predicted):
    return matrices[:, true][:, :, predicted].sum(axis=(1, 2))

  return np.stack([total(inside, inside), total(~inside, inside), total(inside, ~inside),
                   total(~inside, ~inside)], axis=-1)


def _ratio(num, den, disagreement):
  """``num / den``; where ``den`` is 0, 1 if ``disagreement`` (fp + fn) is 0, else 0."""
  return np.where(den > 0, num / np.maximum(den, 1), disagreement == 0)


def dice(counts) -> np.ndarray:
  """Dice of counts shaped (..., 4) along the last axis, by the rule above: 1 where target and
  prediction are both empty."""
  tp, fp, fn, _ = np.moveaxis(np.asarray(counts, np.float64), -1, 0)
  wrong = fp + fn
  return _ratio(2 * tp, 2 * tp + wrong, wrong)


def scores(counts: np.ndarray) -> dict[str, float]:
  """Metrics from per-image counts shaped (N, 4): pooled scores and per-image means."""
  counts = np.asarray(counts, np.float64).reshape(-1, 4)
  tp, fp, fn, tn = counts.sum(axis=0)
  wrong = fp + fn
  iou = _ratio(tp, tp + wrong, wrong)
  background_iou = _ratio(tn, tn + wrong, wrong)
  per_tp, per_fp, per_fn, per_tn = counts.T
  per_wrong = per_fp + per_fn
  per_iou = _ratio(per_tp, per_tp + per_wrong, per_wrong)
  per_background_iou = _ratio(per_tn, per_tn + per_wrong, per_wrong)
  return {
    "accuracy": float((tp + tn) / max(tp + wrong + tn, 1)),
    "sensitivity": float(_ratio(tp, tp + fn, wrong)),
    "precision": float(_ratio(tp, tp + fp, wrong)),
    "iou": float(iou),
    "dice": float(dice(counts.sum(axis=0))),
    "mean_iou": float((iou + background_iou) / 2),
    "per_image_dice": float(np.mean(dice(counts))),
    "per_image_mean_iou": float(np.mean((per_iou + per_background_iou) / 2)),
  }


def class_scores(matrices) -> dict:
  """Metrics of a 3-class run from per-image confusion matrices (N, C, C).

  - ``nuclei``, ``cytoplasm``: each target's `scores`, as a binary run of it reports them;
  - ``classes``: each class against the rest (``background``, ``cytoplasm``: the ring around
    the nucleus, ``nucleus``), `scores` as well;
  - ``dice``, ``iou``: the two targets' mean, by which the best epoch is chosen;
  - ``mean_iou``: pooled IoU averaged over the classes; ``accuracy``: pixels of the right class.
  """
  matrices = np.asarray(matrices, np.int64)
  targets = {target: scores(target_counts(matrices, classes))
             for target, classes in TARGET_CLASSES.items()}
  per_class = {name: scores(target_counts(matrices, [value]))
               for value, name in enumerate(CLASS_NAMES)}
  total = matrices.sum(axis=0)
  return {
    "dice": float(np.mean([values["dice"] for values in targets.values()])),
    "iou": float(np.mean([values["iou"] for values in targets.values()])),
    "mean_iou": float(np.mean([values["iou"] for values in per_class.values()])),
    "accuracy": float(np.trace(total) / max(total.sum(), 1)),
    **targets,
    "classes": per_class,
  }


def run_scores(counts) -> dict:
  """A run's metrics from what its eval step counted: `scores` of a binary run's (N, 4)
  counts, `class_scores` of a 3-class run's (N, C, C) confusion matrices."""
  return class_scores(counts) if np.ndim(counts) == 3 else scores(counts)
