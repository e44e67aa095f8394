"""Version 3 of the synthetic smears draws look-alikes as their labelled counterparts are, and
version 2 still draws exactly what it drew."""

import hashlib

import cv2
import numpy as np
import pytest

from jaxseg.data import synthetic
from jaxseg.data.masks import BACKGROUND, NUCLEUS
from jaxseg.data.synthetic import v2, v3
from jaxseg.errors import DataError

SIZE = 256
PX = v2.PIXELS_PER_UM * 400 / 1130  # cells painted one at a time on 400-pixel fields
STYLE = v3.Style(np.random.default_rng(1))

# SHA-256 of the image and mask bytes of version 2's images, taken before version 2 was split
# into steps that version 3 shares (with NumPy 2.4 and OpenCV 5.1: other versions may round
# differently).
V2_HASHES = {
  (0, 0): "56a4e7fa9ac59c9924619b759589a887a8a91710f41e8837d9f97cc8ae560cbd",  # nsil
  (0, 1): "474b5ecf2376e6d9d9ceabf46a5f3a8c717cdbd4319769c856484f2c17ee25a9",  # hsil
  (0, 5): "d72ac2ad49679c7fc8943adffe4ebe7d7002029ab2500da50ff9eafbeb35fede",  # lsil
}


@pytest.mark.parametrize("seed, index", list(V2_HASHES))
def test_version_2_draws_what_it_drew_and_its_objects_change_nothing(seed, index):
  image, mask = synthetic.generate_sample(seed, index, SIZE, version=2)
  digest = hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()
  assert digest == V2_HASHES[seed, index]
  again, again_mask, objects = synthetic.generate_objects(seed, index, SIZE, version=2)
  np.testing.assert_array_equal(again, image)
  np.testing.assert_array_equal(again_mask, mask)
  assert {drawn.kind for drawn in objects} >= {"cell", "bare nucleus"}


def test_version_3_is_its_own_set_and_says_where_its_objects_lie():
  image, mask, objects = synthetic.generate_objects(0, 1, SIZE, version=3)
  np.testing.assert_array_equal(synthetic.generate_sample(0, 1, SIZE, version=3)[0], image)
  assert not np.array_equal(image, synthetic.generate_sample(0, 1, SIZE, version=2)[0])
  assert synthetic.default_root("/c", 3, 0, SIZE, 3).name == f"synthetic-v3-s0-n3-{SIZE}px"
  kinds = {drawn.kind for drawn in objects}
  assert kinds >= {"cell", "bare nucleus", "neutrophil"}
  for drawn in objects:
    region = mask[drawn.box]
    if drawn.kind == "cell":  # a labelled cell's nucleus is nucleus in the mask
      assert (region[drawn.nucleus == 1] == NUCLEUS).all()
  # Look-alikes change the image, never the mask.
  _, bare_mask = v3.sample((0, 1, 1), "hsil", SIZE, lookalikes=False)
  np.testing.assert_array_equal(v3.sample((0, 1, 1), "hsil", SIZE)[1], bare_mask)
  with pytest.raises(DataError, match="synthetic_version 1: records no objects"):
    synthetic.generate_objects(0, 0, SIZE, version=1)


def painted(paint, focus=None, monkeypatch=None, seed=0):
  """(density, Drawn) of one object painted alone by ``paint(density, rng, centre, stains)``."""
  if focus is not None:
    monkeypatch.setattr(v2, "focus_depth", lambda rng, px: focus)
  rng = np.random.default_rng(seed)
  stains = v2.stain_batch(rng)
  density = np.zeros((400, 400, 3), np.float32)
  return density, paint(density, rng, np.array([200.0, 200.0]), stains)


def test_a_bare_nucleus_is_a_nucleus_of_its_kind_without_cytoplasm(monkeypatch):
  for seed in range(4):
    density, drawn = painted(
      lambda density, rng, centre, stains: v3.bare_nucleus(
        density, rng, v2.KINDS["hsil"], centre, PX, stains, STYLE), 0.0, monkeypatch, seed)
    assert drawn.kind == "bare nucleus" and drawn.nucleus.any()
    stain = density[drawn.box].sum(axis=2)
    nucleus = drawn.nucleus.astype(bool)
    # Nothing but the nucleus: no cytoplasm round it.
    near = cv2.dilate(drawn.nucleus, np.ones((5, 5), np.uint8)).astype(bool)
    assert stain[~near].max() == 0 and stain.sum() == pytest.approx(stain[near].sum())
    # Chromatin (version 2's bare nuclei were one flat fill) and a darker membrane.
    core = cv2.erode(drawn.nucleus, np.ones((5, 5), np.uint8)).astype(bool)
    assert stain[core].std() > 0.05 * stain[core].mean()
    membrane = nucleus & ~cv2.erode(drawn.nucleus, np.ones((3, 3), np.uint8)).astype(bool)
    deeper = cv2.erode(drawn.nucleus, np.ones((3, 3), np.uint8)).astype(bool) & ~core
    assert stain[membrane].mean() > stain[deeper].mean()


@pytest.mark.parametrize("make", [
  lambda density, rng, centre, stains: v3.lookalike(v3.RED_CELL, "red cell", density, rng,
                                                     centre, PX, stains, STYLE),
  lambda density, rng, centre, stains: v3.lookalike(v3.NEUTROPHIL, "neutrophil", density, rng,
                                                     centre, PX, stains, STYLE),
], ids=["red cell", "neutrophil"])
def test_look_alikes_take_their_focus_from_the_cells_model(make, monkeypatch):
  spread = []
  for focus in (0.0, 6.0):
    density, drawn = painted(make, focus, monkeypatch)
    body = np.zeros(density.shape[:2], np.uint8)
    body[drawn.box] = drawn.body
    around = ~cv2.dilate(body, np.ones((7, 7), np.uint8)).astype(bool)
    spread.append(density.sum(axis=2)[around].sum() / density.sum())
  assert spread[0] == 0 and spread[1] > 0.05  # blurred past its outline only out of focus


def boundary_edges(style):
  """The edge stain ``style`` adds on the boundary of a 60-pixel disc, per cell drawn."""
  disc = np.zeros((80, 80), np.uint8)
  cv2.circle(disc, (40, 40), 30, 1, -1)
  inside = cv2.distanceTransform(disc, cv2.DIST_L2, 3)
  return [style.edge(inside, 5.0)[(inside > 0) & (inside <= 1)] for _ in range(40)]


def test_the_edge_varies_per_cell_and_along_it_down_to_none():
  edges = boundary_edges(v3.Style(np.random.default_rng(0)))
  strengths = np.array([edge.mean() for edge in edges])
  assert strengths.std() > 0.3 * strengths.mean()  # per cell
  assert np.median([edge.std() / (edge.mean() + 1e-9) for edge in edges]) > 0.3  # along it
  assert np.mean([(edge == 0).mean() for edge in edges]) > 0.05  # none in places
  # Version 2's dark edge is the same on every cell, all round.
  assert np.ptp(np.concatenate(boundary_edges(v2.Style()))) < 0.1


def nucleus_distances(style, px=v2.PIXELS_PER_UM, field=600):
  """How far inside its cell each nucleus reaches, at least, in pixels: cells painted one at a
  time, at the full-size field's scale."""
  rng = np.random.default_rng(0)
  stains = v2.stain_batch(rng)
  distances = []
  for name in ("intermediate", "parabasal", "koilocyte", "hsil") * 6:
    cell_type = v2.TYPES[name]
    cell = v2.Cell(cell_type, np.array([field / 2, field / 2]),
                    rng.uniform(*cell_type.diameter) * px, 0.0)
    mask = np.zeros((field, field), np.uint8)
    v2.paint_cell(np.zeros((field, field, 3), np.float32), mask, rng, cell, px, stains, style)
    inside = cv2.distanceTransform((mask != BACKGROUND).astype(np.uint8), cv2.DIST_L2, 3)
    if (mask == NUCLEUS).any():
      distances.append(inside[mask == NUCLEUS].min())
  return np.array(distances)


def test_nuclei_are_not_held_half_a_micrometre_inside_their_cells():
  half_micrometre = 0.5 * v2.PIXELS_PER_UM
  assert nucleus_distances(v2.Style()).min() >= half_micrometre
  distances = nucleus_distances(v3.Style(np.random.default_rng(1)))
  assert distances.min() < half_micrometre
  assert distances.min() >= 0.9  # still inside: cytoplasm on every side in the mask
