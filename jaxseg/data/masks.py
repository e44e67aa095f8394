"""Class masks and the binary targets the paper segments.

A mask is one 8-bit channel: 0 background, 1 cytoplasm, 2 nucleus. A mask holding only 0
and 255 is already a binary mask of the target (as Otsu mask making writes them).
"""

from __future__ import annotations

import numpy as np

from jaxseg.errors import DataError

BACKGROUND, CYTOPLASM, NUCLEUS = 0, 1, 2
TARGETS = ("cytoplasm", "nuclei")
_CLASS_VALUES = {BACKGROUND, CYTOPLASM, NUCLEUS}
_BINARY_VALUES = {0, 255}


def check_mask_values(mask: np.ndarray, path) -> None:
  """Raise `DataError` naming ``path`` unless ``mask`` holds class values or 0/255 only."""
  if mask.max(initial=0) <= NUCLEUS:  # class values only: the common case, no sort needed
    return
  values = set(np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist())
  if not (values <= _CLASS_VALUES or values <= _BINARY_VALUES):
    unknown = sorted(values - _CLASS_VALUES - _BINARY_VALUES) or sorted(values)
    raise DataError(
      f"{path}: mask values {unknown} are not classes (0, 1, 2) nor a binary mask (0, 255)"
    )


def target_mask(mask: np.ndarray, target: str) -> np.ndarray:
  """The binary mask (0/1, uint8) of ``target``: 'cytoplasm' is the whole cell, 'nuclei' class 2."""
  if mask.max(initial=0) == 255:
    return (mask == 255).astype(np.uint8)
  if target == "cytoplasm":
    return (mask != BACKGROUND).astype(np.uint8)
  if target == "nuclei":
    return (mask == NUCLEUS).astype(np.uint8)
  raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
