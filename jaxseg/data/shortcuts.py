"""Shortcuts in a synthetic set: single rendering features that tell labelled objects from
their look-alikes.

Where a generator draws a labelled object otherwise than its look-alike (texture, focus, a dark
edge, where a nucleus sits), a network can learn the label from how the object was drawn, not
from what it is. For each pair of a labelled kind and a look-alike of the same sort of thing
(`PAIRS`), each feature (`FEATURES`) is measured the same way on both, on the photographed
image, and scored by the area under the ROC curve (AUC) with which it alone tells them apart.

The objects and their kinds come from the generator (`jaxseg.data.synthetic.generate_objects`);
a folder data set has no such record, so this measures synthetic sets only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.stats import mannwhitneyu
from tqdm import tqdm

from jaxseg.data import synthetic
from jaxseg.data.masks import BACKGROUND
from jaxseg.errors import DataError

RING_PIXELS = 4  # of a 1130-pixel field, about 0.8 um: the width of the rings either side
# Above this separation a single feature tells the two apart well enough to learn from.
SHORTCUT_SEPARATION = 0.70


@dataclass(frozen=True)
class Pair:
  """A labelled kind of object and a look-alike of it, compared on their ``part``: 'nucleus'
  (each nucleus of a labelled cell, each bare nucleus) or 'body' (the whole object)."""

  name: str
  part: str
  labelled: str  # a `Drawn` kind
  lookalike: str
  features: tuple[str, ...]


_SHARED = ("texture", "focus", "contrast", "edge")
PAIRS = (
  Pair("labelled nuclei / bare nuclei", "nucleus", "cell", "bare nucleus",
       _SHARED + ("area", "depth")),
  Pair("labelled cells / neutrophils", "body", "cell", "neutrophil", _SHARED),
  Pair("labelled cells / red blood cells", "body", "cell", "red cell", _SHARED),
)

FEATURES = {
  "texture": "standard deviation (from the median absolute deviation) of the fine detail of "
             "optical density inside the object, a cell's own nucleus left out",
  "focus": "mean square of the Laplacian of optical density across the boundary, over that of "
           "its gradient (sharpness, whatever the contrast)",
  "contrast": "optical density just inside the boundary less just outside it",
  "edge": "optical density just inside the boundary less in the ring inside that (a dark rim "
          "or membrane)",
  "area": "pixels of the nucleus",
  "depth": "distance from a nucleus lying on cells to the nearest glass, pixels",
}


def optical_density(image: np.ndarray) -> np.ndarray:
  """Optical density summed over RGB (up to a smooth offset from the light): stains add up in
  it, so an object's step is the same over glass and over a cell."""
  return -np.log1p(image.astype(np.float32)).sum(axis=2)


def auc(labelled, lookalike) -> float:
  """The chance that a labelled object scores higher than a look-alike, ties counting half."""
  labelled, lookalike = np.asarray(labelled, float), np.asarray(lookalike, float)
  if not (len(labelled) and len(lookalike)):
    raise DataError("an AUC needs objects of both kinds")
  # Only the statistic is used: the p-value's method (asymptotic: fast) does not change it.
  statistic = mannwhitneyu(labelled, lookalike, method="asymptotic").statistic
  return float(statistic / (len(labelled) * len(lookalike)))


def separation(value: float) -> float:
  """How well a feature with this AUC tells the two apart, whichever scores higher."""
  return max(value, 1 - value)


def measure(samples, ring: int | None = None) -> dict:
  """{pair name: {feature: {'labelled': n, 'lookalike': n, 'auc': AUC, 'separation': ...}}}
  over ``samples``, (image, mask, objects) triples as `generate_objects` gives; ``ring``: the
  rings' width in pixels (default `RING_PIXELS` at this image size)."""
  values = defaultdict(list)  # (part, kind, feature): measured values
  for image, mask, objects in samples:
    width = ring or max(round(RING_PIXELS * image.shape[0] / 1130), 1)
    for part, kind, features in object_features(image, mask, objects, width):
      for name, value in features.items():
        values[part, kind, name].append(value)
  table = {}
  for pair in PAIRS:
    rows = {}
    for feature in pair.features:
      labelled = values[pair.part, pair.labelled, feature]
      lookalike = values[pair.part, pair.lookalike, feature]
      if labelled and lookalike:
        value = auc(labelled, lookalike)
        rows[feature] = {"labelled": len(labelled), "lookalike": len(lookalike), "auc": value,
                         "separation": separation(value)}
    table[pair.name] = rows
  return table


def object_features(image, mask, objects, ring):
  """(part, kind, {feature: value}) of each whole object in ``objects`` and each of its nuclei,
  where the part lies clear of the image's border."""
  density = optical_density(image)
  to_glass = cv2.distanceTransform((mask != BACKGROUND).astype(np.uint8), cv2.DIST_L2, 3)
  found = []
  for drawn in objects:
    count, nuclei = cv2.connectedComponents(drawn.nucleus)
    parts = [("body", drawn.body, drawn.nucleus)]
    parts += [("nucleus", (nuclei == label).astype(np.uint8), None) for label in range(1, count)]
    for name, part, own_nucleus in parts:
      window = _window(drawn.box, part, ring + 2, image.shape)
      if window is None:
        continue
      box, crop = window
      features = _features(density[box], crop(part),
                           crop(np.zeros_like(part) if own_nucleus is None else own_nucleus), ring)
      if name == "nucleus":
        pixels = crop(part) == 1
        features["area"] = float(pixels.sum())
        if (mask[box][pixels] != BACKGROUND).mean() >= 0.5:  # it lies on cells
          features["depth"] = float(to_glass[box][pixels].min())
      found.append((name, drawn.kind, features))
  return found


def _window(box, part, margin, shape):
  """(box, crop) of 0/1 ``part`` of the patch at ``box``: the image's box round the part with
  ``margin`` pixels each side, and what cuts a patch of ``box`` to it; None where that reaches
  past the image or the part is empty."""
  if not part.any():
    return None
  x, y, width, height = cv2.boundingRect(part)
  top, left = box[0].start + y - margin, box[1].start + x - margin
  bottom, right = top + height + 2 * margin, left + width + 2 * margin
  if top < 0 or left < 0 or bottom > shape[0] or right > shape[1]:
    return None

  def crop(patch):
    return np.pad(patch[y:y + height, x:x + width], margin).astype(np.uint8)

  return (slice(top, bottom), slice(left, right)), crop


def _features(density, part, own_nucleus, ring) -> dict:
  """The shared features of 0/1 ``part`` of ``density``, leaving ``own_nucleus`` out of its
  inside; a feature is missing where its region is too small to measure."""
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1,) * 2)
  core = cv2.erode(part, kernel)
  outer = (cv2.dilate(part, kernel) - part).astype(bool)
  own_nucleus = cv2.dilate(own_nucleus, kernel).astype(bool)
  inner = (part - core).astype(bool) & ~own_nucleus
  deeper = (core - cv2.erode(core, kernel)).astype(bool) & ~own_nucleus  # inside the inner ring
  inside = core.astype(bool) & ~own_nucleus
  features = {}
  if inner.sum() >= 4 and outer.sum() >= 4:
    features["contrast"] = float(density[inner].mean() - density[outer].mean())
    features["focus"] = _sharpness(density, inner | outer, ring)
  if inside.sum() >= 4:
    # Fine texture, measured robustly: a cell's inside also holds what lies on it (bacteria,
    # other cells' nuclei and edges), which a plain standard deviation would count.
    fine = density[inside] - cv2.GaussianBlur(density, (0, 0), ring / 2)[inside]
    features["texture"] = float(1.4826 * np.median(np.abs(fine - np.median(fine))))
  if inner.sum() >= 4 and deeper.sum() >= 4:
    # Ring against ring at the same places along the edge: what overlaps the object there
    # covers both alike.
    features["edge"] = float(density[inner].mean() - density[deeper].mean())
  return features


def _sharpness(density, band, ring) -> float:
  """The Laplacian's mean square over the gradient's, in ``band``: about the inverse square of
  the edge's blur width, whatever its contrast, length or shape. Over the optical density's
  own variance instead, it would fall as objects grow (their mottle varies more along a longer
  edge). Smoothed first, so that the sensor's noise does not outweigh the blur."""
  smooth = cv2.GaussianBlur(density, (0, 0), ring / 2)
  laplacian = cv2.Laplacian(smooth, cv2.CV_32F)
  gradient = (cv2.Sobel(smooth, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(smooth, cv2.CV_32F, 0, 1) ** 2)
  return float((laplacian[band] ** 2).mean() / max(gradient[band].mean() / 64, 1e-12))


def synthetic_shortcuts(num_images: int, seed: int = 0, size: int = synthetic.PAPER_SIZE,
                        version: int = synthetic.LATEST_VERSION, progress: bool = False) -> dict:
  """`measure` of the first ``num_images`` images of a synthetic set, drawn again with their
  objects (the cached files hold none)."""
  synthetic.check_version(version)
  indices = tqdm(range(num_images), desc="measuring shortcuts", unit="image", leave=False,
                 disable=None if progress else True)
  return measure(synthetic.generate_objects(seed, index, size, version) for index in indices)


def worst(table: dict) -> tuple[str, str, float]:
  """(pair, feature, separation) of the feature that separates its pair best."""
  rows = [(pair, feature, row["separation"]) for pair, features in table.items()
          for feature, row in features.items()]
  return max(rows, key=lambda row: row[2])
