"""Cell measurements on drawn masks whose areas are counted independently with NumPy."""

import csv
import math

import cv2
import numpy as np
import pytest

from jaxseg.measure import Cell, ImageSummary, measure_cells, summarize, write_csv


def drawn_mask():
  """Four cells: a rectangle, a disc, a rectangle with two nuclei, a bare nucleus."""
  mask = np.zeros((120, 140), np.uint8)
  mask[10:30, 10:40] = 1  # 20x30 rectangle
  mask[15:21, 20:26] = 2  # 6x6 nucleus
  cv2.circle(mask, (100, 70), 15, 1, -1)
  cv2.circle(mask, (100, 70), 10, 2, -1)
  mask[60:80, 10:40] = 1
  mask[65:71, 15:21] = 2  # the larger of two nuclei
  mask[70:74, 30:34] = 2
  mask[100:103, 120:123] = 2  # a nucleus without cytoplasm
  return mask


def by_box(cells):
  return {(c.x, c.y, c.width, c.height): c for c in cells}


def test_areas_counts_and_ratios_are_exact():
  mask = drawn_mask()
  cells = by_box(measure_cells(mask))
  assert len(cells) == 4

  rectangle = cells[(10, 10, 30, 20)]
  assert (rectangle.cytoplasm_area, rectangle.nucleus_area) == (20 * 30 - 36, 36)
  assert rectangle.nucleus_count == 1
  assert rectangle.nc_ratio == pytest.approx(36 / 564)
  assert not rectangle.flagged
  # The contour of a 6x6 square runs through pixel centres: a 5x5 square, circularity pi/4.
  assert rectangle.nucleus_circularity == pytest.approx(math.pi / 4)

  disc_region = mask[55:86, 85:116]
  cytoplasm, nucleus = int(np.sum(disc_region == 1)), int(np.sum(disc_region == 2))
  disc = cells[(85, 55, 31, 31)]
  assert (disc.cytoplasm_area, disc.nucleus_area) == (cytoplasm, nucleus)
  assert disc.nc_ratio == pytest.approx(nucleus / cytoplasm)
  assert disc.flagged == (nucleus / cytoplasm > 0.5)
  assert 0.94 < disc.nucleus_circularity <= 1.0

  two = cells[(10, 60, 30, 20)]
  assert two.nucleus_count == 2
  assert (two.cytoplasm_area, two.nucleus_area) == (600 - 36 - 16, 52)
  assert two.nucleus_circularity == pytest.approx(math.pi / 4)

  bare = cells[(120, 100, 3, 3)]
  assert (bare.cytoplasm_area, bare.nucleus_area, bare.nucleus_count) == (0, 9, 1)
  assert bare.nc_ratio == math.inf and bare.flagged


def test_flagging_follows_the_threshold():
  mask = drawn_mask()
  ratios = {c.cell: c.nc_ratio for c in measure_cells(mask)}
  for threshold in (0.01, 0.1, 0.5, 2.0):
    flagged = {c.cell for c in measure_cells(mask, threshold) if c.flagged}
    assert flagged == {cell for cell, ratio in ratios.items() if ratio > threshold}


def test_cells_are_8_connected_and_without_nucleus_have_no_circularity():
  mask = np.zeros((10, 10), np.uint8)
  mask[2, 2] = mask[3, 3] = 1  # diagonal neighbours: one cell
  [cell] = measure_cells(mask)
  assert (cell.cytoplasm_area, cell.nucleus_count, cell.nc_ratio) == (2, 0, 0.0)
  assert math.isnan(cell.nucleus_circularity) and not cell.flagged


def test_summary_and_csv(tmp_path):
  cells = measure_cells(drawn_mask())
  summary = summarize("drawn.png", cells)
  assert (summary.cells, summary.nuclei) == (4, 5)
  assert summary.flagged_cells == sum(c.flagged for c in cells)
  assert summary.median_nc_ratio == pytest.approx(np.median([c.nc_ratio for c in cells]))
  assert summary.max_nc_ratio == math.inf
  assert math.isnan(summarize("empty.png", []).median_nc_ratio)

  write_csv(tmp_path / "cells.csv", Cell, cells)
  rows = list(csv.DictReader((tmp_path / "cells.csv").open()))
  assert len(rows) == 4 and list(rows[0]) == list(Cell.__dataclass_fields__)
  assert sorted(int(r["nucleus_area"]) for r in rows) == sorted(c.nucleus_area for c in cells)
  write_csv(tmp_path / "images.csv", ImageSummary, [summary])
  [row] = csv.DictReader((tmp_path / "images.csv").open())
  assert row["image"] == "drawn.png" and int(row["flagged_cells"]) == summary.flagged_cells
