"""Pictures a person would rather look at than read: training curves and Figure 4 of the paper."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OVERLAY_COLOUR = np.array([255, 40, 40], np.float32)


def training_curves(history: list[dict], path: Path, target: str) -> None:
  """Training loss and validation Dice / IoU per epoch, best epoch marked."""
  epochs = [m["epoch"] for m in history]
  fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
  loss_ax.plot(epochs, [m["train_loss"] for m in history], marker=".")
  loss_ax.set(xlabel="epoch", ylabel="soft Jaccard loss", title="training loss")
  for key in ("dice", "iou"):
    score_ax.plot(epochs, [m["val"][key] for m in history], marker=".", label=f"val {key}")
  best = max(history, key=lambda m: m["val"]["dice"])
  score_ax.axvline(best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})")
  score_ax.set(xlabel="epoch", ylabel="score", title=f"validation, {target}", ylim=(0, 1.02))
  score_ax.legend(loc="lower right")
  for ax in (loss_ax, score_ax):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
  """``image`` with ``mask`` tinted red."""
  out = image.astype(np.float32)
  out[mask > 0] = (1 - alpha) * out[mask > 0] + alpha * OVERLAY_COLOUR
  return out.astype(np.uint8)


def segmented(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Only the segmented region of ``image``, the rest black."""
  return np.where(mask[..., None] > 0, image, 0).astype(np.uint8)


def prediction_figure(names, images, truths, predictions, path: Path, target: str) -> None:
  """Figure 4's columns: image, true mask, predicted mask, overlay, segmented region."""
  columns = ("image", "true mask", "predicted mask", "overlay", f"segmented {target}")
  fig, axes = plt.subplots(len(images), 5, figsize=(12, 2.6 * len(images)), squeeze=False)
  for row, (name, image, truth, pred) in enumerate(zip(names, images, truths, predictions)):
    panels = (image, truth, pred, overlay(image, pred), segmented(image, pred))
    for col, (ax, panel) in enumerate(zip(axes[row], panels)):
      ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.ndim == 2 else None)
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(columns[col], fontsize=9)
    axes[row][0].set_ylabel(name, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
