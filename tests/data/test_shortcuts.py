"""jaxseg.data.shortcuts on tiny images whose answers are known by construction."""

import cv2
import numpy as np
import pytest

from jaxseg import dataset_report
from jaxseg.data import shortcuts
from jaxseg.data.synthetic.draw import Drawn
from jaxseg.errors import DataError

SIZE = 96
GLASS = 230.0
WHOLE = (slice(0, SIZE), slice(0, SIZE))  # each record's box: the whole image


def disc(centre, radius):
  patch = np.zeros((SIZE, SIZE), np.uint8)
  cv2.circle(patch, centre, radius, 1, -1)
  return patch


def tiny_sample(rng):
  """A labelled cell (a sharp square) whose nucleus has chromatin, a flat bare nucleus as dark
  on average and as large, and a blurred red blood cell; with their records."""
  density = np.zeros((SIZE, SIZE), np.float32)
  body = np.zeros((SIZE, SIZE), np.uint8)
  body[6:46, 6:46] = 1
  nucleus, bare, red_cell = disc((26, 26), 8), disc((70, 70), 8), disc((70, 22), 10)
  density += 0.3 * body
  density += nucleus * np.clip(1 + 0.5 * rng.standard_normal((SIZE, SIZE)), 0.2, 1.8)
  density += 1.0 * bare
  density += cv2.GaussianBlur(0.4 * red_cell.astype(np.float32), (0, 0), 3)
  image = np.repeat((GLASS * np.exp(-density))[..., None], 3, axis=2).round().astype(np.uint8)
  mask = (body + nucleus).astype(np.uint8)  # cytoplasm 1, nucleus 2; the rest is background
  objects = [
    Drawn("cell", WHOLE, body, nucleus),
    Drawn("bare nucleus", WHOLE, bare, bare),
    Drawn("red cell", WHOLE, red_cell, np.zeros_like(red_cell)),
  ]
  return image, mask, objects


@pytest.fixture(scope="module")
def table():
  rng = np.random.default_rng(0)
  return shortcuts.measure([tiny_sample(rng) for _ in range(6)], ring=2)


def test_auc_counts_pairs_won_and_half_the_ties():
  assert shortcuts.auc([3, 4, 5], [0, 1, 2]) == 1.0
  assert shortcuts.auc([0, 1, 2], [3, 4, 5]) == 0.0
  assert shortcuts.auc([1, 2], [1, 2]) == 0.5
  assert shortcuts.auc([2, 2], [1, 2]) == 0.75
  assert shortcuts.separation(0.25) == shortcuts.separation(0.75) == 0.75
  with pytest.raises(DataError):
    shortcuts.auc([], [1.0])


def test_a_textured_labelled_nucleus_is_told_from_a_flat_bare_one(table):
  nuclei = table["labelled nuclei / bare nuclei"]
  assert nuclei["texture"]["labelled"] == nuclei["texture"]["lookalike"] == 6
  assert nuclei["texture"]["auc"] == 1.0  # chromatin: every labelled nucleus is rougher
  assert nuclei["area"]["auc"] == 0.5  # the same disc: area says nothing
  assert "depth" not in nuclei  # no bare nucleus lies on a cell


def test_a_blurred_look_alike_is_told_by_its_focus(table):
  red_cells = table["labelled cells / red blood cells"]
  assert red_cells["focus"]["auc"] == 1.0  # every labelled cell is sharper
  assert red_cells["focus"]["separation"] == 1.0
  assert table["labelled cells / neutrophils"] == {}  # none drawn


def test_the_report_prints_the_table_and_what_it_means(table, capsys):
  dataset_report.print_shortcuts({"version": 3, "images": 6, "pairs": table})
  printed = capsys.readouterr().out
  assert "largest separation 1.000" in printed and ": a shortcut" in printed
  assert "labelled nuclei / bare nuclei" in printed
  for feature in shortcuts.FEATURES:
    assert f"\n{feature}: " in printed
  assert "AUC: the chance" in printed and "separation: max(AUC, 1 - AUC)" in printed


def test_a_synthetic_set_is_measured_on_every_pair():
  found = shortcuts.synthetic_shortcuts(2, size=400, version=3)
  assert list(found) == [pair.name for pair in shortcuts.PAIRS]
  nuclei = found["labelled nuclei / bare nuclei"]["texture"]
  assert nuclei["labelled"] > 0 and nuclei["lookalike"] > 0
  assert 0 <= nuclei["auc"] <= 1
