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
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

METRIC_KEYS = ("accuracy", "sensitivity", "precision", "iou", "dice", "mean_iou")


def confusion_counts(pred, truth):
  """Per-image (tp, fp, fn, tn) of binary masks shaped (B, H, W); works on jax and numpy arrays."""
  xp = jnp if isinstance(pred, jnp.ndarray) else np
  pred, truth = pred.astype(bool), truth.astype(bool)
  axes = tuple(range(1, pred.ndim))
  tp = xp.sum(pred & truth, axis=axes)
  fp = xp.sum(pred & ~truth, axis=axes)
  fn = xp.sum(~pred & truth, axis=axes)
  tn = xp.sum(~pred & ~truth, axis=axes)
  return xp.stack([tp, fp, fn, tn], axis=-1)


def _ratio(num, den, disagreement):
  """``num / den``; where ``den`` is 0, 1 if ``disagreement`` (fp + fn) is 0, else 0."""
  return np.where(den > 0, num / np.maximum(den, 1), disagreement == 0)


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
    "dice": float(_ratio(2 * tp, 2 * tp + wrong, wrong)),
    "mean_iou": float((iou + background_iou) / 2),
    "per_image_dice": float(np.mean(_ratio(2 * per_tp, 2 * per_tp + per_wrong, per_wrong))),
    "per_image_mean_iou": float(np.mean((per_iou + per_background_iou) / 2)),
  }
