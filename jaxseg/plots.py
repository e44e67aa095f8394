"""Pictures a person would rather look at than read: training curves, Figures 2 and 4 of the paper."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from jaxseg.data.augment import Augment, augment_batch
from jaxseg.data.enhance import Enhance
from jaxseg.data.masks import CELL, NUCLEUS, TARGETS
from jaxseg.data.pipeline import prepare_image

OVERLAY_COLOUR = np.array([255, 40, 40], np.float32)
PANEL_INCHES, DPI = 2.0, 100  # Figure 2: one panel per image and row


def new_figure(**kwargs):
  """A Matplotlib figure that saves without pyplot: no process-wide backend or figure list to
  change, and pyplot's imports are not paid (Matplotlib is imported when a picture is drawn)."""
  from matplotlib.figure import Figure

  return Figure(**kwargs)


def training_curves(history: list[dict], path: Path, target: str) -> None:
  """Training loss and validation Dice / IoU per epoch (of each target of a 3-class run),
  best epoch marked."""
  epochs = [m["epoch"] for m in history]
  fig = new_figure(figsize=(10, 3.6))
  loss_ax, score_ax = fig.subplots(1, 2)
  loss_ax.plot(epochs, [m["train_loss"] for m in history], marker=".")
  loss_ax.set(xlabel="epoch", ylabel="soft Jaccard loss", title="training loss")
  for label, scores in _validation_curves(history, target):
    score_ax.plot(epochs, scores, marker=".", label=label)
  best = max(history, key=lambda m: m["val"]["dice"])
  score_ax.axvline(best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})")
  score_ax.set(xlabel="epoch", ylabel="score", title=f"validation, {target}", ylim=(0, 1.02))
  score_ax.legend(loc="lower right")
  for ax in (loss_ax, score_ax):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def _validation_curves(history: list[dict], target: str):
  """(label, per-epoch values) of the validation Dice and IoU of ``target``, or of both targets
  of a 3-class run."""
  if target != CELL:
    return [(f"val {key}", [m["val"][key] for m in history]) for key in ("dice", "iou")]
  return [(f"val {name} {key}", [m["val"][name][key] for m in history])
          for name in TARGETS for key in ("dice", "iou")]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
  """``image`` with ``mask`` tinted red."""
  out = image.astype(np.float32)
  out[mask > 0] = (1 - alpha) * out[mask > 0] + alpha * OVERLAY_COLOUR
  return out.astype(np.uint8)


def class_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """``image`` with a class mask's cells tinted red and their nuclei a deeper red."""
  return overlay(overlay(image, mask), mask == NUCLEUS)


def segmented(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Only the segmented region of ``image``, the rest black."""
  return np.where(mask[..., None] > 0, image, 0).astype(np.uint8)


def prediction_figure(names, images, truths, predictions, path: Path, target: str) -> None:
  """Figure 4's columns: image, true mask, predicted mask, overlay, segmented region; for a
  3-class run (``target`` cell) class masks, and the segmented region of each target."""
  columns = ["image", "true mask", "predicted mask", "overlay", f"segmented {target}"]
  if target == CELL:
    columns[-1:] = [f"segmented {name}" for name in TARGETS]
  top = NUCLEUS if target == CELL else 1  # the masks' largest value: gray levels by class
  fig = new_figure(figsize=(12 * len(columns) / 5, 2.6 * len(images)))
  axes = fig.subplots(len(images), len(columns), squeeze=False)
  for row, (name, image, truth, pred) in enumerate(zip(names, images, truths, predictions)):
    panels = (image, truth, pred, overlay(image, pred), segmented(image, pred))
    if target == CELL:  # the whole cell, then the nuclei
      panels = (image, truth, pred, class_overlay(image, pred), segmented(image, pred),
                segmented(image, pred == NUCLEUS))
    for col, (ax, panel) in enumerate(zip(axes[row], panels)):
      ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0,
                vmax=top if panel.ndim == 2 else None)
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(columns[col], fontsize=9)
    axes[row][0].set_ylabel(name, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def enhancement_figure(images, size: int, enhancement: Enhance, augmentation: Augment,
                       path: Path, *, augmented_rows: int = 2, seed: int = 0) -> None:
  """Figure 2: RGB ``images`` resized to ``size``, then as training prepares them (enhanced,
  through the one path training, evaluation and prediction share), then ``augmented_rows``
  random augmentations of those, drawn as the train step draws them, on the device.

  One column per image; the figure is ``PANEL_INCHES * DPI`` pixels per panel.
  """
  resized = np.stack([prepare_image(image, (size, size), Enhance()) for image in images])
  enhanced = np.stack([prepare_image(image, (size, size), enhancement) for image in images])
  augment = jax.jit(augment_batch, static_argnums=3)
  masks = np.zeros(enhanced.shape[:3], np.uint8)  # augment_batch moves a mask along; none here
  augmented = [
    np.clip(np.rint(augment(key, enhanced.astype(np.float32), masks, augmentation)[0]), 0, 255)
    .astype(np.uint8) for key in jax.random.split(jax.random.key(seed), augmented_rows)
  ]
  rows = [("as read", resized),
          (f"enhanced\n{enhancement.contrast:g} x pixel {enhancement.brightness:+g}"
           + " + CLAHE" * enhancement.clahe, enhanced),
          *((f"augmented ({i})", batch) for i, batch in enumerate(augmented, 1))]
  fig = new_figure(figsize=(PANEL_INCHES * len(images), PANEL_INCHES * len(rows)))
  axes = fig.subplots(len(rows), len(images), squeeze=False)
  for axes_row, (label, batch) in zip(axes, rows):
    for ax, image in zip(axes_row, batch):
      ax.imshow(image)
      ax.set_xticks([])
      ax.set_yticks([])
    axes_row[0].set_ylabel(label, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)


STUDY_AXES = (("train_images_per_second", "training images/s (measured)"),
              ("gflops", "forward GFLOPs per image"),
              ("variables", "variables (millions)"))


def _two_and_five(value: float, _) -> str:
  """Log-axis minor tick labels at 2 and 5 times a power of ten, so that a range within one
  decade still has numbers."""
  leading = round(value / 10 ** np.floor(np.log10(value)))
  return f"{value:g}" if leading in (2, 5) else ""


def study_figure(rows: dict[str, dict[str, dict]], labels: dict[str, str], path: Path) -> None:
  """Test Dice of each method against its cost, one row of panels per target: measured
  training speed, FLOPs and variables (log scales); error bars are each Dice's 95% interval
  (``pooled_dice_interval``). A row without costs (the Otsu baseline) is a dashed line with its
  interval shaded."""
  from matplotlib import colormaps, ticker

  fig = new_figure(figsize=(4.2 * len(STUDY_AXES), 3.6 * len(rows)))
  axes = fig.subplots(len(rows), len(STUDY_AXES), squeeze=False)
  for ax_row, (target, by_method) in zip(axes, rows.items()):
    for ax, (key, label) in zip(ax_row, STUDY_AXES):
      for colour, (method, row) in zip(colormaps["tab10"].colors, by_method.items()):
        dice = 100 * row["pooled_dice"]
        low, high = (100 * value for value in row["pooled_dice_interval"])
        if key not in row:
          ax.axhline(dice, color="gray", linestyle="--", linewidth=1, label=labels[method])
          ax.axhspan(low, high, color="gray", alpha=0.15)
          ax.annotate(labels[method], (0.01, dice), xycoords=("axes fraction", "data"),
                      textcoords="offset points", xytext=(0, 3), fontsize=7, color="dimgray")
          continue
        x = row[key] / 1e6 if key == "variables" else row[key]
        ax.errorbar(x, dice, yerr=[[dice - low], [high - dice]], fmt="o", color=colour,
                    capsize=4, label=labels[method])
        ax.annotate(labels[method].removeprefix("U-Net + "), (x, dice),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
      ax.set(xscale="log", xlabel=label, ylabel=f"test Dice, {target} (%)")
      ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
      ax.xaxis.set_minor_formatter(ticker.FuncFormatter(_two_and_five))
      ax.margins(x=0.15, y=0.12)
      ax.grid(alpha=0.3, which="both")
  fig.suptitle("Test Dice against cost (error bars: 95% intervals over seeds and test images)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
