"""Version 1 of the synthetic smears (kept to compare with, ``synthetic_version=1``).

Rendering follows Beer-Lambert, as light through a stained smear does: every stained layer
adds optical density (OD), so translucent cells show through each other and darken where
they overlap. The picture is illumination x background colour x exp(-OD), then optics blur
and sensor noise. Normal (NSIL) cells are large with tiny sharp dark nuclei; LSIL nuclei are
enlarged, some with a koilocyte halo; HSIL cells are small with large pale nuclei, blurred
borders and low contrast, as the paper's section 2.1 describes abnormal cells. LSIL and HSIL
images hold some normal cells too, as real smears do.

Masks are exact: each cell's cytoplasm and nucleus are filled from the very polygons that
are drawn, before any blur. Debris (specks, fibres, mucus, inflammatory cells) never changes
the mask: on background it stays background, on a cell it stays that cell's class.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from jaxseg.data.masks import BACKGROUND, CYTOPLASM, NUCLEUS
from jaxseg.data.synthetic import draw
from jaxseg.data.synthetic.draw import blur as _blur
from jaxseg.data.synthetic.draw import odd_width as _odd_width
from jaxseg.data.synthetic.draw import pixel as _pixel
from jaxseg.data.synthetic.draw import width as _width

PAPER_SIZE = 1130

# Optical density per unit stain (R, G, B): what each dye takes out of white light.
_NUCLEUS_OD = np.array([1.0, 1.1, 0.6], np.float32)  # haematoxylin: dark purple-blue
_CYTOPLASM_OD = {
  "cyanophilic": np.array([0.60, 0.20, 0.22], np.float32),  # pale blue-green
  "eosinophilic": np.array([0.12, 0.44, 0.30], np.float32),  # pink
  "orangeophilic": np.array([0.08, 0.32, 0.64], np.float32),  # orange
}


@dataclass(frozen=True)
class _CellStyle:
  """How one type of cell looks; lengths in pixels of a 1130-pixel field."""

  nucleus_diameter: tuple[float, float]
  cell_diameter: tuple[float, float]  # or, where ``relative``, times the nucleus diameter
  relative: bool
  elongation: tuple[float, float]
  polygonal: bool  # flat squamous cells have corners; abnormal ones are rounder
  nucleus_strength: tuple[float, float]
  nucleus_blur: tuple[float, float]
  cytoplasm_strength: tuple[float, float]
  cytoplasm_blur: tuple[float, float]
  chromatin: float  # contrast of the nuclear texture
  nucleus_irregularity: float
  stains: tuple[float, float, float]  # chances of cyanophilic, eosinophilic, orangeophilic
  halo_chance: float  # koilocytes: a clear ring round the nucleus
  fold_chance: float


_STYLES = {
  "normal": _CellStyle(
    nucleus_diameter=(16, 30), cell_diameter=(170, 340), relative=False,
    elongation=(1.0, 1.5), polygonal=True,
    nucleus_strength=(1.1, 1.5), nucleus_blur=(0.5, 1.0),
    cytoplasm_strength=(0.6, 1.05), cytoplasm_blur=(0.8, 1.5),
    chromatin=0.2, nucleus_irregularity=0.04, stains=(0.55, 0.33, 0.12),
    halo_chance=0.0, fold_chance=0.35,
  ),
  "lsil": _CellStyle(
    nucleus_diameter=(30, 50), cell_diameter=(160, 300), relative=False,
    elongation=(1.0, 1.4), polygonal=True,
    nucleus_strength=(0.85, 1.15), nucleus_blur=(1.2, 2.2),
    cytoplasm_strength=(0.65, 1.0), cytoplasm_blur=(1.2, 2.0),
    chromatin=0.35, nucleus_irregularity=0.08, stains=(0.6, 0.3, 0.1),
    halo_chance=0.6, fold_chance=0.2,
  ),
  "hsil": _CellStyle(
    nucleus_diameter=(45, 90), cell_diameter=(1.5, 2.3), relative=True,
    elongation=(1.0, 1.3), polygonal=False,
    nucleus_strength=(0.45, 0.7), nucleus_blur=(3.0, 6.0),
    cytoplasm_strength=(0.45, 0.7), cytoplasm_blur=(2.5, 4.0),
    chromatin=0.3, nucleus_irregularity=0.12, stains=(0.85, 0.1, 0.05),
    halo_chance=0.0, fold_chance=0.0,
  ),
}


@dataclass(frozen=True)
class _Layout:
  """The cells of one kind of image."""

  cells: tuple[int, int]  # fewest and most
  abnormal_style: str
  abnormal_share: float
  spacing: float  # least centre distance over the sum of radii; below 1 cells overlap


_LAYOUTS = {
  "nsil": _Layout(cells=(3, 12), abnormal_style="normal", abnormal_share=0.0, spacing=0.6),
  "lsil": _Layout(cells=(4, 12), abnormal_style="lsil", abnormal_share=0.75, spacing=0.55),
  "hsil": _Layout(cells=(6, 16), abnormal_style="hsil", abnormal_share=0.75, spacing=0.45),
}


@dataclass(frozen=True)
class _Cell:
  style: _CellStyle
  centre: np.ndarray
  diameter: float
  nucleus_diameter: float










def sample(words: tuple[int, ...], kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """The image of random seed ``words`` and ``kind``: (RGB uint8 HxWx3, class mask uint8 HxW)."""
  rng = np.random.default_rng(words)
  scale = size / PAPER_SIZE
  density = np.zeros((size, size, 3), np.float32)
  mask = np.zeros((size, size), np.uint8)
  stain_intensity = rng.uniform(0.85, 1.2)
  for cell in _lay_out_cells(rng, _LAYOUTS[kind], size, scale):
    _paint_cell(density, mask, rng, cell, scale, stain_intensity)
  density += _debris(rng, size, scale)
  background = rng.uniform(0.86, 0.97) * (1 + rng.uniform(-0.04, 0.04, 3))
  return draw.photograph(density, rng, size, scale, background), mask


def _lay_out_cells(rng, layout, size, scale) -> list[_Cell]:
  """The cells of one image, placed biggest first, some overlapping, many in clusters."""
  sizes = []
  for _ in range(rng.integers(layout.cells[0], layout.cells[1] + 1)):
    abnormal = rng.random() < layout.abnormal_share
    style = _STYLES[layout.abnormal_style if abnormal else "normal"]
    nucleus_diameter = rng.uniform(*style.nucleus_diameter)
    diameter = rng.uniform(*style.cell_diameter) * (nucleus_diameter if style.relative else 1)
    sizes.append((style, diameter * scale, nucleus_diameter * scale))
  sizes.sort(key=lambda cell: -cell[1])
  clusters = rng.uniform(0.2 * size, 0.8 * size, (rng.integers(1, 4), 2))
  cells = []
  for style, diameter, nucleus_diameter in sizes:
    centre = _free_spot(rng, clusters, cells, diameter / 2, layout.spacing, size)
    if centre is not None:
      cells.append(_Cell(style, centre, diameter, nucleus_diameter))
  return cells


def _free_spot(rng, clusters, cells, radius, spacing, size, tries=25):
  """A centre near a cluster (or anywhere) not too close to the cells already placed."""
  for _ in range(tries):
    if rng.random() < 0.6:
      centre = clusters[rng.integers(len(clusters))] + rng.normal(0, 0.18 * size, 2)
    else:
      centre = rng.uniform(0, size, 2)
    centre = np.clip(centre, 0.05 * size, 0.95 * size)
    distances = [np.hypot(*(centre - cell.centre)) for cell in cells]
    if all(d > spacing * (radius + cell.diameter / 2) for d, cell in zip(distances, cells)):
      return centre
  return None
















def _paint_cell(density, mask, rng, cell, scale, stain_intensity):
  """Add one cell's optical density to ``density`` and its classes to ``mask``."""
  style = cell.style
  radii = draw.ellipse_radii(rng, cell.diameter, style.elongation)
  if style.polygonal:
    outline = draw.polygonal_outline(rng, cell.centre, radii)
  else:
    outline = draw.wobbly_outline(rng, cell.centre, radii, 0.25)
  nucleus_radii = draw.ellipse_radii(rng, cell.nucleus_diameter, (1.0, 1.3))
  room = max(radii.min() * 0.7 - nucleus_radii.max(), 0) * 0.5  # keeps the nucleus well inside
  nucleus_centre = cell.centre + rng.normal(0, 1, 2) / np.sqrt(2) * room
  nucleus_outline = draw.wobbly_outline(rng, nucleus_centre, nucleus_radii, style.nucleus_irregularity)

  cytoplasm_blur = rng.uniform(*style.cytoplasm_blur) * scale
  nucleus_blur = rng.uniform(*style.nucleus_blur) * scale
  box = draw.box(outline, int(3 * max(cytoplasm_blur, nucleus_blur)) + 2, mask.shape[0])
  if box is None:
    return
  origin = np.array([box[1].start, box[0].start])
  shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
  cytoplasm = draw.fill(shape, outline, origin)
  inner = cv2.erode(cytoplasm, np.ones((_odd_width(4, scale),) * 2, np.uint8))
  nucleus = draw.fill(shape, nucleus_outline, origin) & inner  # always within a rim of cytoplasm

  thickness = _cytoplasm_thickness(rng, style, cytoplasm, inner, scale)
  if rng.random() < style.halo_chance:
    thickness *= _halo(rng, shape, nucleus_outline - origin, nucleus_centre - origin, scale)
  stain = rng.choice(list(_CYTOPLASM_OD), p=style.stains)
  colour = _CYTOPLASM_OD[stain] * rng.uniform(0.85, 1.15, 3).astype(np.float32)
  colour *= rng.uniform(*style.cytoplasm_strength) * stain_intensity
  cell_density = _blur(thickness[..., None] * colour, cytoplasm_blur)
  nucleus_colour = _NUCLEUS_OD * rng.uniform(*style.nucleus_strength) * stain_intensity
  _add_nucleus(cell_density, rng, style, nucleus, nucleus_colour, nucleus_blur, scale)

  density[box] += cell_density
  region = mask[box]
  region[(cytoplasm == 1) & (region == BACKGROUND)] = CYTOPLASM
  region[nucleus == 1] = NUCLEUS


def _add_nucleus(cell_density, rng, style, nucleus, colour, blur, scale):
  """Add the nucleus (granular chromatin, darker membrane) to the cell's optical density."""
  x, y, width, height = cv2.boundingRect(nucleus)
  if width == 0:
    return  # the nucleus lies outside the image
  margin = int(3 * blur) + 2
  rows = slice(max(y - margin, 0), y + height + margin)
  columns = slice(max(x - margin, 0), x + width + margin)
  nucleus = nucleus[rows, columns]
  membrane = (nucleus - cv2.erode(nucleus, np.ones((3, 3), np.uint8))).astype(np.float32)
  chromatin = _blur(rng.standard_normal(nucleus.shape, np.float32), 1.2 * scale)
  chromatin = np.clip(1 + style.chromatin * chromatin / (chromatin.std() + 1e-6), 0.3, None)
  stain = (nucleus * chromatin + 0.3 * membrane)[..., None] * colour
  cell_density[rows, columns] += _blur(stain, blur)


def _cytoplasm_thickness(rng, style, cytoplasm, inner, scale):
  """Relative stain thickness over the cell: mottled, denser at the border, maybe a fold."""
  shape = cytoplasm.shape
  fine_grid = tuple(max(side // max(int(8 * scale), 1), 2) for side in shape)
  thickness = draw.smooth_noise(rng, shape, (5, 5), 0.2) * draw.smooth_noise(rng, shape, fine_grid, 0.12)
  thickness += 0.2 * (cytoplasm - inner).astype(np.float32)
  if rng.random() < style.fold_chance:
    thickness += 0.3 * draw.fold(rng, shape, scale)
  return thickness * cytoplasm






def _halo(rng, shape, nucleus_outline, nucleus_centre, scale):
  """Thickness factor of a koilocyte: a clear ring round the nucleus, rimmed by dense cytoplasm."""
  ring = (nucleus_outline - nucleus_centre) * rng.uniform(1.8, 2.5) + nucleus_centre
  clear = draw.fill(shape, ring, 0)
  rim = cv2.dilate(clear, np.ones((_odd_width(6, scale),) * 2, np.uint8)) - clear
  return (1 - 0.75 * clear + 0.6 * rim).astype(np.float32)








def _debris(rng, size, scale):
  """Optical density of what is not a squamous cell: mucus, fibres, specks, inflammatory cells."""
  debris = np.zeros((size, size, 3), np.float32)
  for _ in range(rng.poisson(2)):  # mucus: broad faint strands
    colour = (_CYTOPLASM_OD["cyanophilic"] * rng.uniform(0.04, 0.09)).tolist()
    strand = draw.strand(rng, size, scale, 40)
    cv2.polylines(debris, [strand], False, colour, _width(rng.uniform(10, 25), scale), cv2.LINE_AA)
  for _ in range(rng.poisson(3)):  # fibres: thin and faint
    colour = (np.array([0.3, 0.3, 0.2]) * rng.uniform(0.3, 0.8)).tolist()
    strand = draw.strand(rng, size, scale, 25)
    cv2.polylines(debris, [strand], False, colour, _width(rng.uniform(1, 3), scale), cv2.LINE_AA)
  for _ in range(rng.poisson(40 * scale**2) + 5):  # specks of dirt
    colour = (np.array([0.9, 0.95, 1.0]) * rng.uniform(0.4, 1.2)).tolist()
    centre = _pixel(rng.uniform(0, size, 2))
    cv2.circle(debris, centre, _width(rng.uniform(0.8, 2.5), scale), colour, -1, cv2.LINE_AA)
  for cluster in rng.uniform(0, size, (rng.poisson(1.5), 2)):  # inflammatory cells
    for centre in cluster + rng.normal(0, 40 * scale, (rng.integers(2, 14), 2)):
      _inflammatory_cell(debris, rng, centre, scale)
  return debris




def _inflammatory_cell(debris, rng, centre, scale):
  """A small lobed dark blob (neutrophil-like) on a faint halo: debris, not a labelled cell."""
  halo = _width(rng.uniform(10, 15), scale)
  cv2.circle(debris, _pixel(centre), halo, (0.1, 0.07, 0.05), -1, cv2.LINE_AA)
  colour = (_NUCLEUS_OD * rng.uniform(0.8, 1.2)).tolist()
  for lobe in centre + rng.normal(0, 3.5 * scale, (rng.integers(2, 5), 2)):
    cv2.circle(debris, _pixel(lobe), _width(rng.uniform(3.5, 6), scale), colour, -1, cv2.LINE_AA)
