"""Cell measurements from a three-class mask (0 background, 1 cytoplasm, 2 nucleus).

A cell is a connected region of mask > 0 (8-connectivity): touching cells count as one.
Areas are in pixels of the mask. Per cell:

- ``nc_ratio``: nucleus area / cytoplasm area; infinite for a bare nucleus without cytoplasm.
- ``nucleus_circularity``: 4 pi A / P^2 of the cell's largest nucleus, where P is the length
  of its outer contour (cv2.findContours through the boundary pixels' centres, simplified by
  cv2.approxPolyDP within 1 pixel so that the pixel staircase does not lengthen it) and A the
  area that contour encloses: near 1 for a disc (0.94 at radius 5, 0.99 at 30), pi/4 for a
  square, lower for ragged or elongated shapes; 0 for a nucleus one pixel thin, NaN for a
  cell without nucleus.
- ``flagged``: N/C ratio above the threshold (`NC_THRESHOLD`). Normal squamous cells have
  tiny nuclei (N/C ratio about 0.01 to 0.05); a high-grade lesion's nucleus takes much of
  the cell.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

import cv2
import numpy as np

from jaxseg.data.masks import CYTOPLASM, NUCLEUS
from jaxseg.errors import DataError, write_failure
from jaxseg.outputs import write_atomically

# Flag a cell whose nucleus is more than half as large as its cytoplasm (a third of the cell).
NC_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class Cell:
  cell: int  # 1, 2, ... in the order of cv2.connectedComponentsWithStats
  x: int  # bounding box: left, top, width, height
  y: int
  width: int
  height: int
  cytoplasm_area: int
  nucleus_area: int
  nucleus_count: int
  nc_ratio: float
  nucleus_circularity: float
  flagged: bool


def measure_cells(mask: np.ndarray, nc_threshold: float = NC_THRESHOLD) -> list[Cell]:
  """One `Cell` per connected region of ``mask > 0``."""
  count, labels, stats, _ = cv2.connectedComponentsWithStats(
    (mask > 0).astype(np.uint8), connectivity=8)
  cells = []
  for label in range(1, count):
    x, y, width, height = (int(v) for v in stats[label, :4])
    box = np.s_[y:y + height, x:x + width]
    inside = labels[box] == label
    cytoplasm_area = int(np.sum(inside & (mask[box] == CYTOPLASM)))
    nucleus = (inside & (mask[box] == NUCLEUS)).astype(np.uint8)
    nucleus_area = int(nucleus.sum())
    nucleus_count, circularity = _nuclei(nucleus)
    ratio = _nc_ratio(nucleus_area, cytoplasm_area)
    cells.append(Cell(label, x, y, width, height, cytoplasm_area, nucleus_area, nucleus_count,
                      ratio, circularity, ratio > nc_threshold))
  return cells


def _nc_ratio(nucleus_area: int, cytoplasm_area: int) -> float:
  if cytoplasm_area == 0:
    return math.inf if nucleus_area else 0.0
  return nucleus_area / cytoplasm_area


def _nuclei(nucleus: np.ndarray) -> tuple[int, float]:
  """Number of nuclei (8-connected) in a 0/1 mask, and the circularity of the largest."""
  count, labels, stats, _ = cv2.connectedComponentsWithStats(nucleus, connectivity=8)
  if count == 1:
    return 0, math.nan
  largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
  contours, _ = cv2.findContours((labels == largest).astype(np.uint8), cv2.RETR_EXTERNAL,
                                 cv2.CHAIN_APPROX_NONE)
  outline = cv2.approxPolyDP(contours[0], epsilon=1.0, closed=True)
  perimeter, area = cv2.arcLength(outline, closed=True), cv2.contourArea(outline)
  return count - 1, 4 * math.pi * area / perimeter**2 if perimeter > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class ImageSummary:
  """One image's cells: counts, and medians over its cells (NaN without cells)."""

  image: str
  cells: int
  flagged_cells: int
  nuclei: int
  median_nc_ratio: float
  max_nc_ratio: float
  median_cytoplasm_area: float
  median_nucleus_area: float
  median_nucleus_circularity: float  # over the cells that have a nucleus


def summarize(image: str, cells: list[Cell]) -> ImageSummary:
  def median(values):
    return float(np.median(values)) if values else math.nan

  ratios = [cell.nc_ratio for cell in cells]
  return ImageSummary(
    image=image,
    cells=len(cells),
    flagged_cells=sum(cell.flagged for cell in cells),
    nuclei=sum(cell.nucleus_count for cell in cells),
    median_nc_ratio=median(ratios),
    max_nc_ratio=max(ratios, default=math.nan),
    median_cytoplasm_area=median([cell.cytoplasm_area for cell in cells]),
    median_nucleus_area=median([cell.nucleus_area for cell in cells]),
    median_nucleus_circularity=median([cell.nucleus_circularity for cell in cells
                                       if cell.nucleus_count]),
  )


def write_csv(path: Path, kind: type, rows: list) -> None:
  """Dataclass instances of ``kind`` as a CSV file, a header of its fields first; `DataError`
  naming ``path`` where it cannot be written."""
  text = io.StringIO(newline="")
  writer = csv.writer(text)
  writer.writerow([field.name for field in dataclasses.fields(kind)])
  writer.writerows(dataclasses.astuple(row) for row in rows)
  try:
    write_atomically(Path(path), text.getvalue())
  except OSError as error:
    raise DataError(f"{path}: cannot write it: {write_failure(path, error)}") from None
