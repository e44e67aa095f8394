"""Class masks, the targets the paper segments, and colour-coded masks.

A mask is one 8-bit channel: 0 background, 1 cytoplasm, 2 nucleus. A mask holding only 0
and 255 is already a binary mask of the target (as Otsu mask making writes them). A data set
whose masks give each class a colour instead is read through a mapping of colours to classes
(`parse_mask_colors`, the ``--mask-colors`` setting).

A run's target is one of the paper's binary targets, each a set of classes against the rest
(`TARGET_CLASSES`), or ``cell``: the three classes at once, one model with a softmax over
them.
"""

from __future__ import annotations

import numpy as np

from jaxseg.errors import DataError

BACKGROUND, CYTOPLASM, NUCLEUS = 0, 1, 2
CLASS_NAMES = ("background", "cytoplasm", "nucleus")  # by class value
TARGETS = ("cytoplasm", "nuclei")  # the binary targets: one model each, a sigmoid output
CELL = "cell"  # the three classes in one model
RUN_TARGETS = (*TARGETS, CELL)  # what a run's ``--target`` may be
# The classes each binary target covers: the paper's cytoplasm masks mark the whole cell.
TARGET_CLASSES = {"cytoplasm": (CYTOPLASM, NUCLEUS), "nuclei": (NUCLEUS,)}
_CLASS_VALUES = {BACKGROUND, CYTOPLASM, NUCLEUS}
_BINARY_VALUES = {0, 255}

Colour = tuple[int, int, int]


def output_channels(target: str) -> int:
  """Channels of a model of ``target``: one logit of a binary target, one per class of cell."""
  return len(CLASS_NAMES) if target == CELL else 1


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


def target_mask(mask: np.ndarray, target: str, path=None) -> np.ndarray:
  """The binary mask (0/1, uint8) of ``target``: 'cytoplasm' is the whole cell, 'nuclei' class 2;
  for 'cell', the class mask itself, which a binary 0/255 mask (of ``path``) cannot give."""
  if mask.max(initial=0) == 255:
    if target == CELL:
      raise DataError(f"{path}: a binary mask (0/255) marks one target; --target cell needs "
                      "class masks (0 background, 1 cytoplasm, 2 nucleus)")
    return (mask == 255).astype(np.uint8)
  if target == CELL:
    return mask
  if target == "cytoplasm":
    return (mask != BACKGROUND).astype(np.uint8)
  if target == "nuclei":
    return (mask == NUCLEUS).astype(np.uint8)
  raise ValueError(f"unknown target {target!r}; choose from {', '.join(RUN_TARGETS)}")


def parse_mask_colors(text: str) -> dict[Colour, int]:
  """``"R,G,B:CLASS R,G,B:CLASS ..."`` as {(r, g, b): class}; a `ValueError` says what is wrong.

  >>> parse_mask_colors("0,0,0:0 255,0,0:1 0,0,255:2")
  {(0, 0, 0): 0, (255, 0, 0): 1, (0, 0, 255): 2}
  """
  colours = {}
  for entry in text.split():
    colour, _, value = entry.partition(":")
    try:
      rgb = tuple(int(part) for part in colour.split(","))
      label = int(value)
    except ValueError:
      rgb, label = (), -1
    if len(rgb) != 3 or not all(0 <= part <= 255 for part in rgb) or label not in _CLASS_VALUES:
      raise ValueError(f"{entry!r} is not R,G,B:CLASS (channels 0-255, class 0, 1 or 2)")
    if rgb in colours:
      raise ValueError(f"colour {colour} is named twice")
    colours[rgb] = label
  if not colours:
    raise ValueError("no colours; write R,G,B:CLASS pairs such as \"0,0,0:0 255,0,0:1 0,0,255:2\"")
  return colours


def colour_classes(rgb: np.ndarray, colours: dict[Colour, int], path) -> np.ndarray:
  """The class mask (uint8, H x W) of an RGB mask (H x W x 3) whose colours ``colours`` names;
  a colour it does not name is a `DataError` naming ``path``, the colour and its pixel count."""
  codes = _packed(rgb.reshape(-1, 3))
  known = _packed(np.array(list(colours), np.uint32))
  order = np.argsort(known)
  known, labels = known[order], np.array(list(colours.values()), np.uint8)[order]
  index = np.minimum(np.searchsorted(known, codes), len(known) - 1)
  found = known[index] == codes
  if not found.all():
    unknown, counts = np.unique(codes[~found], return_counts=True)
    most = int(np.argmax(counts))
    code = int(unknown[most])
    more = len(unknown) - 1
    others = (f"; {more} more unknown colour{'s' * (more > 1)} ({counts.sum() - counts[most]} "
              "pixels)" if more else "")
    raise DataError(f"{path}: colour {code >> 16},{code >> 8 & 255},{code & 255} "
                    f"({counts[most]} pixels) is not in --mask-colors{others}")
  return labels[index].reshape(rgb.shape[:2])


def _packed(rgb: np.ndarray) -> np.ndarray:
  rgb = rgb.astype(np.uint32)
  return rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]
