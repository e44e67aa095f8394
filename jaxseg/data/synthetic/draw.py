"""Drawing helpers shared by the synthetic generators: outlines, fills, blur, noise, optics.

Lengths are pixels; ``scale`` is pixels of this image per pixel of a 1130-pixel field.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import cv2
import numpy as np


@dataclass(frozen=True)
class Drawn:
  """Where one drawn object lies, to measure how it was drawn (jaxseg.data.shortcuts).

  ``box`` is its (rows, columns) slices of the image; ``body`` and ``nucleus`` are 0/1 patches
  of the box: all of the object (for a bare nucleus, version 3 gives the cell it lost), and its
  nucleus or lobes (empty where it has none). ``kind`` says what it is: 'cell' (labelled),
  'bare nucleus', 'neutrophil' or 'red cell'.
  """

  kind: str
  box: tuple[slice, slice]
  body: np.ndarray
  nucleus: np.ndarray


def ellipse_points(rng, centre, radii, angles, reach):
  """Points (N, 2) at ``angles`` on an ellipse scaled by ``reach``, turned at random."""
  x, y = radii[0] * reach * np.cos(angles), radii[1] * reach * np.sin(angles)
  turn = rng.uniform(0, np.pi)
  cos, sin = np.cos(turn), np.sin(turn)
  return np.stack([x * cos - y * sin, x * sin + y * cos], 1) + centre


def ellipse_radii(rng, diameter, elongation):
  stretch = np.sqrt(rng.uniform(*elongation))
  return np.array([diameter / 2 * stretch, diameter / 2 / stretch])


def wobbly_outline(rng, centre, radii, irregularity, points=72):
  """Polygon (N, 2) of a rotated ellipse whose radius wobbles smoothly (low harmonics)."""
  angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
  harmonics = np.arange(2, 7)[:, None]
  amplitudes = rng.uniform(0, irregularity, (len(harmonics), 1)) / harmonics
  phases = rng.uniform(0, 2 * np.pi, (len(harmonics), 1))
  wobble = 1 + (amplitudes * np.cos(harmonics * angles + phases)).sum(axis=0)
  return ellipse_points(rng, centre, radii, angles, wobble)


def polygonal_outline(rng, centre, radii):
  """A squamous cell: a rotated 4-7 cornered polygon, corners rounded by Chaikin cutting."""
  corners = rng.integers(4, 8)
  angles = (np.arange(corners) + rng.uniform(-0.35, 0.35, corners)) * 2 * np.pi / corners
  reach = rng.uniform(0.85, 1.25, corners)
  points = ellipse_points(rng, centre, radii, angles, reach)
  for _ in range(2):
    following = np.roll(points, -1, axis=0)
    cuts = [0.75 * points + 0.25 * following, 0.25 * points + 0.75 * following]
    points = np.stack(cuts, 1).reshape(-1, 2)
  return points


def box(polygon, margin, size):
  """(rows, columns) slices of the polygon's bounding box plus ``margin``, inside the image."""
  x0, y0 = np.clip(np.floor(polygon.min(axis=0)).astype(int) - margin, 0, size)
  x1, y1 = np.clip(np.ceil(polygon.max(axis=0)).astype(int) + margin + 1, 0, size)
  return (slice(y0, y1), slice(x0, x1)) if x1 > x0 and y1 > y0 else None


def fill(shape, polygon, origin):
  """0/1 uint8 patch of ``shape`` with ``polygon`` (image coordinates) filled, sub-pixel exact."""
  patch = np.zeros(shape, np.uint8)
  points = np.round((polygon - origin) * 16).astype(np.int32)  # shift=4: 1/16-pixel vertices
  cv2.fillPoly(patch, [points], 1, cv2.LINE_8, shift=4)
  return patch


def discs(kind, size, centre, radius, lobes=()):
  """The `Drawn` of a disc drawn by cv2.circle at ``centre`` and ``radius`` (pixels) in an
  image of ``size``, with ``lobes``, (centre, radius) pairs, as its nucleus; None if outside."""
  reach = max([radius] + [np.abs(point - centre).max() + width for point, width in lobes])
  found = box(np.array([centre - reach, centre + reach]), 1, size)
  if found is None:
    return None
  origin = np.array([found[1].start, found[0].start])
  shape = (found[0].stop - found[0].start, found[1].stop - found[1].start)
  body, nucleus = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
  cv2.circle(body, _local(centre, origin), radius, 1, -1)
  for point, width in lobes:
    cv2.circle(nucleus, _local(point, origin), width, 1, -1)
  return Drawn(kind, found, body, nucleus)


def _local(point, origin):
  """The pixel `pixel` gives ``point``, in a patch whose corner is at ``origin``."""
  return tuple(int(value) for value in np.subtract(pixel(point), origin))


def odd_width(pixels, scale):
  """An odd kernel width of about ``2 * pixels`` at this scale."""
  return max(int(round(pixels * scale)), 1) * 2 + 1


def width(pixels, scale):
  """A line width or radius of ``pixels`` in a 1130-pixel field, at least 1."""
  return max(int(round(pixels * scale)), 1)


def pixel(point):
  return tuple(int(round(value)) for value in point)


def blur(array, sigma):
  return cv2.GaussianBlur(array, (0, 0), max(sigma, 0.3))


def smooth_noise(rng, shape, grid, spread, interpolation=cv2.INTER_CUBIC):
  """A field of ``shape`` around 1 (within about +-spread): a random ``grid`` smoothly enlarged."""
  values = rng.uniform(1 - spread, 1 + spread, grid).astype(np.float32)
  return cv2.resize(values, shape[::-1], interpolation=interpolation)


def fold(rng, shape, scale):
  """A thin curved crease across the cell, where the cytoplasm lies double."""
  height, width_ = shape
  turns = np.cumsum(rng.normal(0, 0.25, 12)) + rng.uniform(0, 2 * np.pi)
  steps = np.stack([np.cos(turns), np.sin(turns)], 1) * 12 * scale
  points = np.round(rng.uniform(0, 1, 2) * [width_, height] + np.cumsum(steps, axis=0))
  crease = np.zeros(shape, np.float32)
  cv2.polylines(crease, [points.astype(np.int32)], False, 1.0, width(2, scale), cv2.LINE_AA)
  return crease


def strand(rng, size, scale, step, turn=0.15, points=30):
  """Points of a smooth random curve starting anywhere in the field."""
  turns = np.cumsum(rng.normal(0, turn, points)) + rng.uniform(0, 2 * np.pi)
  steps = np.stack([np.cos(turns), np.sin(turns)], 1) * step * scale
  return np.round(rng.uniform(0, size, 2) + np.cumsum(steps, axis=0)).astype(np.int32)


def illumination(rng, size):
  """Smooth brightness field: off-centre vignetting, a gradient and gentle unevenness."""
  grid = 9
  y, x = np.mgrid[-1 : 1 : grid * 1j, -1 : 1 : grid * 1j]
  cx, cy = rng.uniform(-0.35, 0.35, 2)
  field = 1 - rng.uniform(0.08, 0.3) * ((x - cx) ** 2 + (y - cy) ** 2) / 2
  field += rng.uniform(-0.08, 0.08) * x + rng.uniform(-0.08, 0.08) * y
  field += rng.normal(0, 0.02, (grid, grid))
  field = cv2.resize(field.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
  return np.clip(field, 0.45, 1.05)


# Standard normal quantiles of the 256 byte values: Gaussian noise by table lookup of random
# bytes is several times faster than drawing normals.
_NORMAL_QUANTILES = np.array(
  [NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32
)


def photograph(density, rng, size, scale, background, field=None):
  """Brightfield picture of the optical density: light, absorption, optics blur, sensor noise.

  ``background`` is the glass's RGB colour (0..1); ``field`` the illumination (else drawn).
  ``density`` is used up (overwritten).
  """
  if field is None:
    field = illumination(rng, size)
  light = field[..., None] * (255 * np.asarray(background)).astype(np.float32)
  image = cv2.exp(np.negative(density, out=density))
  image *= light
  image = blur(image, rng.uniform(0.7, 1.2) * scale)
  noise_table = _NORMAL_QUANTILES * np.float32(rng.uniform(1.5, 3.5))
  image += cv2.LUT(rng.integers(0, 256, image.shape, dtype=np.uint8), noise_table)
  return cv2.convertScaleAbs(np.maximum(image, 0, out=image))  # rounds and saturates to uint8
