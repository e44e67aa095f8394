"""The paper's mask making (section 2.2): grayscale, Otsu threshold, erosion then dilation.

This is the classical baseline: the paper trains its U-Nets on these masks, and
`python -m jaxseg.make_masks` scores them against hand-drawn masks where those exist, so that a
trained model can be set beside the method that made its labels.
"""

from __future__ import annotations

import cv2
import numpy as np

from jaxseg.data.masks import CELL, NUCLEUS, RUN_TARGETS


def _darker_side(values: np.ndarray) -> np.ndarray:
  """0/1 of the pixels at or below the Otsu threshold of ``values``: cells are darker than glass."""
  _, darker = cv2.threshold(values, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
  return darker


def _open(mask: np.ndarray, kernel_size: int, erode_iterations: int, dilate_iterations: int):
  # Erosion removes specks of noise, dilation brings the surviving shapes back to size.
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
  if erode_iterations:
    mask = cv2.erode(mask, kernel, iterations=erode_iterations)
  if dilate_iterations:
    mask = cv2.dilate(mask, kernel, iterations=dilate_iterations)
  return mask


def otsu_mask(
  image: np.ndarray,
  target: str = "cytoplasm",
  *,
  kernel_size: int = 3,
  erode_iterations: int = 1,
  dilate_iterations: int = 1,
) -> np.ndarray:
  """The uint8 mask (H, W) of ``target`` in an RGB uint8 image, by Otsu thresholding.

  'cytoplasm' (the whole cell) is the darker side of one Otsu threshold of the blurred
  grayscale image. 'nuclei' is the darker side of a second Otsu threshold computed over the
  cell pixels alone. Each mask, 0/1, is then opened with an elliptical kernel. 'cell' gives
  both in one class mask: 1 in the cells, 2 in their nuclei.
  """
  if target not in RUN_TARGETS:
    raise ValueError(f"unknown target {target!r}; choose from {', '.join(RUN_TARGETS)}")
  gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (5, 5), 0)
  morphology = (kernel_size, erode_iterations, dilate_iterations)
  cells = _open(_darker_side(gray), *morphology)
  if target == "cytoplasm":
    return cells
  inside = cells.astype(bool)
  if not inside.any():
    return cells
  nuclei = np.zeros_like(cells)
  nuclei[inside] = _darker_side(gray[inside][:, None])[:, 0]
  nuclei = _open(nuclei, *morphology)
  return np.where(nuclei > 0, NUCLEUS, cells).astype(np.uint8) if target == CELL else nuclei
