"""A trained model's scores on a split: each image's confusion counts and predicted mask (whole
images, or sliding windows over them at a run's scale), the Otsu baseline on the same images,
what summary.json keeps of them, and the tables a command prints."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from jaxseg import engine, tiling
from jaxseg.config import Config
from jaxseg.data.masks import CELL, CLASS_NAMES, TARGET_CLASSES, TARGETS
from jaxseg.data.pipeline import Loader
from jaxseg.datasets import split_loader
from jaxseg.metrics import (
  confusion_counts,
  confusion_matrices,
  run_scores,
  target_counts,
)


def evaluate_loader(steps: engine.Steps, state, loader: Loader) -> dict:
  return run_scores(count_loader(steps, state, loader)[0])


def count_loader(steps: engine.Steps, state, loader: Loader) -> tuple[np.ndarray, list]:
  """Each of ``loader``'s images' confusion counts (`engine.eval_step`) and predicted mask; of
  a scaled loader, from sliding windows over each whole image (`jaxseg.tiling.predict_tiled`)."""
  if not loader.scale:
    return steps.evaluate(state, loader.epoch(shuffle=False, drop_remainder=False))
  probabilities = tiling.predict_tiled(functools.partial(steps.predict, state), loader.images,
                                       loader.window)
  channels = 1 if probabilities[0].ndim == 2 else probabilities[0].shape[-1]
  predicted = [engine.predicted_mask(image, channels) for image in probabilities]
  return image_counts(predicted, loader.masks, channels), predicted


def image_counts(predicted, masks, channels: int) -> np.ndarray:
  """Per image, the (tp, fp, fn, tn) of binary masks (``channels`` 1) or the confusion matrix
  of class masks, of masks of any sizes."""
  def counts(pred, truth):
    pred, truth = pred[None], truth[None]
    return (confusion_counts(pred, truth) if channels == 1
            else confusion_matrices(pred, truth, channels))[0]

  return np.stack([counts(pred, truth) for pred, truth in zip(predicted, masks)])


def per_image(loader: Loader, counts: np.ndarray, target: str) -> dict:
  """``summary.json``'s ``test_images``: each image's name and, per target the run scores, its
  (tp, fp, fn, tn), in the same order; of a 3-class run also its confusion matrix (true class
  by predicted class), from which any statistic over images can be computed later."""
  result = {"names": [example.name for example in loader.examples]}
  if target != CELL:
    return {**result, target: counts.tolist()}
  return {**result, **{name: target_counts(counts, TARGET_CLASSES[name]).tolist()
                       for name in TARGETS}, "matrices": counts.tolist()}


def otsu_counts(config: Config, loader: Loader) -> np.ndarray:
  """Per image, the confusion counts of the paper's mask method as a baseline, made as the
  paper made its masks: Otsu's rule on each full-size image, brought to the evaluation size
  by nearest neighbour, scored against the same masks as the model (for ``cell``, class
  masks: both targets from one)."""
  otsu = split_loader(config, loader.examples, labels="otsu")
  otsu.warm("Otsu masks of the test images")
  return image_counts(otsu.masks, loader.masks, config.out_channels)


def median_areas(loader: Loader, target: str) -> dict:
  """The median area in pixels, at the evaluation scale, of the objects (8-connected regions)
  of each target in ``loader``'s masks: nuclei that touch count as one."""
  targets = TARGETS if target == CELL else (target,)
  areas = {name: [] for name in targets}
  for mask in loader.masks:
    for name in targets:
      inside = np.isin(mask, TARGET_CLASSES[name]) if target == CELL else mask > 0
      count, _, stats, _ = cv2.connectedComponentsWithStats(inside.astype(np.uint8), 8)
      areas[name] += stats[1:count, cv2.CC_STAT_AREA].tolist()
  return {name: float(np.median(values)) if values else None for name, values in areas.items()}


def figure_predictions(loader: Loader, predicted: np.ndarray, config: Config):
  """Names, images, true and predicted masks of a few of ``loader``'s images, one of each kind
  first (where file names start with it, as the synthetic set's do); ``predicted``: every
  image's predicted mask (`count_loader`)."""
  chosen, kinds = [], set()
  for index, example in enumerate(loader.examples):
    kind = example.name.split("_")[0]
    if kind not in kinds:
      kinds.add(kind)
      chosen.append(index)
  chosen = (chosen + [i for i in range(len(loader)) if i not in chosen])[: config.figure_images]
  names = [loader.examples[i].name for i in chosen]
  return (names, [loader.images[i] for i in chosen], [loader.masks[i] for i in chosen],
          [predicted[i] for i in chosen])


def scores_line(val: dict) -> str:
  """Validation Dice and IoU of the target, or each target's Dice and the mean IoU over the
  classes of a 3-class run."""
  if "classes" not in val:
    return f"dice {val['dice']:.4f}  iou {val['iou']:.4f}"
  return "  ".join([*(f"{target} dice {val[target]['dice']:.4f}" for target in TARGETS),
                    f"mean iou {val['mean_iou']:.4f}"])


def print_table(summary: dict) -> None:
  test, otsu = summary["test"], summary["otsu_test"]
  rows = [("model", test), ("Otsu threshold", otsu)]
  if summary["target"] == CELL:  # each target of the one model
    rows = [row for target in TARGETS
            for row in ((f"model, {target}", test[target]), (f"Otsu, {target}", otsu[target]))]
  keys = ("accuracy", "sensitivity", "precision", "iou", "dice", "mean_iou", "per_image_dice")
  print(f"\ntest set ({summary['images']['test']} images), target {summary['target']}, "
        f"best epoch {summary['best_epoch']}; pooled over pixels, mean_iou includes background")
  print(f"{'':16s}" + "".join(f"{k:>15s}" for k in keys))
  for label, values in rows:
    print(f"{label:16s}" + "".join(f"{values[k]:15.4f}" for k in keys))
  if summary["target"] == CELL:
    for label, values in (("model", test), ("Otsu threshold", otsu)):
      classes = ", ".join(f"{name} {values['classes'][name]['iou']:.4f}" for name in CLASS_NAMES)
      print(f"{label}: IoU per class {classes}; mean {values['mean_iou']:.4f}")
