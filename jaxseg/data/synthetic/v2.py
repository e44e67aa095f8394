"""Version 2 of the synthetic smears: a conventional Pap smear as cytology describes it.

docs/synthetic-data.md gives the cytology behind each choice. In short: every image has its
own magnification (+-30%), stain batch (haematoxylin from blue to purple, faded
counterstains), white-balance cast and uneven light; normal images hold superficial,
intermediate (pale nucleus), parabasal and metaplastic cells; LSIL images koilocytes; HSIL
images small cells with large hyperchromatic irregular nuclei, often in crowded groups.
Cells lie in overlapping groups, each at its own focus depth, whatever its class. Red blood
cells, neutrophils, bare nuclei, bacteria, Candida and mucus are drawn into the image only:
the mask keeps what lies beneath them (background on glass, the cell's class over a cell).

Rendering is v1's: optical densities add up (Beer-Lambert), then light, optics and noise.
Masks are exact, filled from the polygons that are drawn; a nucleus is placed where the
distance transform of its own cell's polygon leaves room for it, so it always lies inside.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from jaxseg.data.masks import BACKGROUND, CYTOPLASM, NUCLEUS
from jaxseg.data.synthetic import draw

PAPER_SIZE = 1130
PIXELS_PER_UM = 5.0  # of a 1130-pixel field at the middle magnification (226 um across)

# Random streams of one image: cells, look-alikes and the optics draw independently, so
# that the look-alikes can be left out (tests) without moving any cell.
_CELLS, _LOOKALIKES, _OPTICS = 0, 1, 2

# Optical density per unit stain (R, G, B): what each dye takes out of white light.
_HAEMATOXYLIN_BLUE = np.array([0.95, 0.72, 0.28], np.float32)
_HAEMATOXYLIN_PURPLE = np.array([0.70, 1.00, 0.50], np.float32)
_COUNTERSTAINS = np.array([
  [0.55, 0.20, 0.25],  # light green: cyanophilic (blue-green) cytoplasm
  [0.10, 0.45, 0.30],  # eosin: pink
  [0.08, 0.32, 0.64],  # orange G: orange, keratinised
], np.float32)
RED_CELL_OD = np.array([0.10, 0.62, 0.55], np.float32)  # eosin and orange G: red-orange
_FUNGUS_OD = np.array([0.40, 0.50, 0.42], np.float32)  # Candida: grey-pink


@dataclass(frozen=True)
class CellType:
  """How one type of cell looks; lengths in micrometres."""

  diameter: tuple[float, float]
  nucleus: tuple[float, float]  # diameter, or, where ``by_ratio``, about the N/C area ratio
  by_ratio: bool
  elongation: tuple[float, float]
  outline: str  # polygon (flat squamous), round, or ragged (metaplastic processes)
  cytoplasm: tuple[float, float]  # stain thickness: pale and thin to dense
  stains: tuple[float, float, float]  # chances of cyanophilic, eosinophilic, orangeophilic
  nucleus_density: tuple[float, float]  # pale vesicular to hyperchromatic
  chromatin: float  # contrast of the chromatin texture
  grain: float  # size of the chromatin clumps, um
  irregularity: float  # of the nuclear outline
  fold_chance: float = 0.0
  cavity_chance: float = 0.0  # koilocytes
  binucleate_chance: float = 0.0
  nuclei: int = 2  # where not one (chance binucleate_chance): 2, a neutrophil's lobes, or none


TYPES = {
  # Mature squamous cells: large flat polygons, pink or orange, small dense pyknotic nucleus.
  "superficial": CellType(
    diameter=(40, 60), nucleus=(4.5, 6.5), by_ratio=False, elongation=(1.0, 1.5),
    outline="polygon", cytoplasm=(0.25, 0.5), stains=(0.2, 0.5, 0.3),
    nucleus_density=(1.5, 2.0), chromatin=0.1, grain=0.6, irregularity=0.04, fold_chance=0.3),
  # The commonest cell: thin, translucent, blue-green, with a pale vesicular 7-9.5 um nucleus.
  "intermediate": CellType(
    diameter=(35, 55), nucleus=(7, 9.5), by_ratio=False, elongation=(1.0, 1.5),
    outline="polygon", cytoplasm=(0.15, 0.35), stains=(0.85, 0.12, 0.03),
    nucleus_density=(0.35, 0.6), chromatin=0.15, grain=0.5, irregularity=0.05,
    fold_chance=0.5),
  # Immature cells: small, round, dense cytoplasm, so a high N/C ratio in a normal smear.
  "parabasal": CellType(
    diameter=(15, 28), nucleus=(8, 11), by_ratio=False, elongation=(1.0, 1.3),
    outline="round", cytoplasm=(0.5, 0.9), stains=(0.9, 0.1, 0.0),
    nucleus_density=(0.7, 1.0), chromatin=0.2, grain=0.6, irregularity=0.06),
  "metaplastic": CellType(
    diameter=(16, 30), nucleus=(8, 11.5), by_ratio=False, elongation=(1.0, 1.6),
    outline="ragged", cytoplasm=(0.55, 0.95), stains=(0.9, 0.1, 0.0),
    nucleus_density=(0.7, 1.05), chromatin=0.25, grain=0.7, irregularity=0.08),
  # LSIL: mature cell, enlarged dark wrinkled nucleus in a large, eccentric, sharp-edged
  # perinuclear cavity rimmed by dense cytoplasm; a quarter binucleate.
  "koilocyte": CellType(
    diameter=(40, 58), nucleus=(11, 16), by_ratio=False, elongation=(1.0, 1.4),
    outline="polygon", cytoplasm=(0.3, 0.6), stains=(0.6, 0.3, 0.1),
    nucleus_density=(1.0, 1.5), chromatin=0.35, grain=0.8, irregularity=0.3,
    cavity_chance=0.9, binucleate_chance=0.25),
  # HSIL: small immature cells, nucleus up to about 0.7 of the cell's area (its notches take
  # some of the share asked for), hyperchromatic, coarse chromatin, notched membrane.
  "hsil": CellType(
    diameter=(12, 24), nucleus=(0.35, 0.85), by_ratio=True, elongation=(1.0, 1.3),
    outline="round", cytoplasm=(0.45, 0.85), stains=(0.8, 0.15, 0.05),
    nucleus_density=(1.1, 1.8), chromatin=0.5, grain=1.0, irregularity=0.35),
}


@dataclass(frozen=True)
class _Kind:
  """The cells of one kind of image."""

  cells: tuple[int, int]  # fewest and most
  mix: dict  # cell type: share
  bare_nuclei: float  # mean count
  crowded: str | None = None  # a type that also gathers in tight crowded groups


KINDS = {
  "nsil": _Kind(cells=(5, 30), bare_nuclei=4.0, mix={
    "superficial": 0.3, "intermediate": 0.45, "parabasal": 0.1, "metaplastic": 0.15}),
  "lsil": _Kind(cells=(5, 30), bare_nuclei=3.0, mix={
    "koilocyte": 0.4, "superficial": 0.2, "intermediate": 0.3, "metaplastic": 0.1}),
  "hsil": _Kind(cells=(10, 40), bare_nuclei=10.0, crowded="hsil", mix={
    "hsil": 0.55, "superficial": 0.1, "intermediate": 0.2, "metaplastic": 0.1,
    "parabasal": 0.05}),
}


@dataclass(frozen=True)
class Stains:
  """One slide's staining: its haematoxylin and counterstains (light green, eosin, orange G)."""

  haematoxylin: np.ndarray
  counterstains: np.ndarray


@dataclass(frozen=True)
class Cell:
  type: CellType
  centre: np.ndarray
  diameter: float  # pixels
  focus: float  # blur sigma, pixels: how far from the focal plane


def sample(words: tuple[int, ...], kind: str, size: int,
           lookalikes: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The image of random seed ``words`` and ``kind``: (RGB uint8 HxWx3, class mask uint8 HxW)."""
  image, mask, _ = sample_objects(words, kind, size, lookalikes)
  return image, mask


def sample_objects(words: tuple[int, ...], kind: str, size: int,
                   lookalikes: bool = True) -> tuple[np.ndarray, np.ndarray, list[draw.Drawn]]:
  """`sample`'s image and mask, and where each cell, bare nucleus, neutrophil and red blood
  cell was drawn (a `draw.Drawn` each), to measure how each kind is drawn."""
  return render(words, kind, size, lookalikes, Style(), _lookalikes)


def render(words, kind, size, lookalikes, style, draw_lookalikes):
  """`sample_objects` with each cell drawn in ``style`` (a `Style`), and the look-alikes by
  ``draw_lookalikes``, which `_lookalikes` shows: version 3 passes its own."""
  rng = np.random.default_rng([*words, _CELLS])
  px = PIXELS_PER_UM * size / PAPER_SIZE * rng.uniform(0.7, 1.3)  # the magnification
  stains = stain_batch(rng)
  extras = np.random.default_rng([*words, _LOOKALIKES])
  density = _film(extras, size, px, stains, mucus=lookalikes)
  mask = np.zeros((size, size), np.uint8)
  cells = lay_out_cells(rng, KINDS[kind], size, px)
  objects = [paint_cell(density, mask, rng, cell, px, stains, style) for cell in cells]
  if lookalikes:
    lookalike_density, drawn = draw_lookalikes(extras, KINDS[kind], cells, size, px, stains)
    density += lookalike_density
    objects += drawn
  optics = np.random.default_rng([*words, _OPTICS])
  image = draw.photograph(density, optics, size, size / PAPER_SIZE, _glass(optics))
  return image, mask, [drawn for drawn in objects if drawn is not None]


def stain_batch(rng) -> Stains:
  """Haematoxylin between blue and purple, at its own strength; counterstains often faded."""
  mix = rng.uniform()
  haematoxylin = (1 - mix) * _HAEMATOXYLIN_BLUE + mix * _HAEMATOXYLIN_PURPLE
  haematoxylin *= rng.uniform(0.5, 1.4)
  counterstains = _COUNTERSTAINS * rng.uniform(0.85, 1.15, (3, 3)) * rng.uniform(0.45, 1.1)
  return Stains(haematoxylin.astype(np.float32), counterstains.astype(np.float32))


def _glass(rng) -> np.ndarray:
  """The empty glass's colour: a brightness and a white-balance cast of 10-15%."""
  cast = rng.normal(0, 1, 3)
  cast -= cast.mean()
  cast *= rng.uniform(0.10, 0.15) / (cast.max() - cast.min())  # strongest channel over weakest
  return rng.uniform(0.82, 0.96) * (1 + cast) / (1 + cast.max())


def _film(rng, size, px, stains, mucus: bool) -> np.ndarray:
  """What lies on the glass under the cells: a faint, uneven proteinaceous film and mucus
  strands (broad, faint, streaky), drawn at a quarter of the size: both are smooth."""
  small = max(size // 4, 8)
  film = draw.smooth_noise(rng, (small, small), (6, 6), 1.0) * rng.uniform(0.0, 0.025)
  film = film[..., None] * stains.counterstains[rng.integers(2)]
  for _ in range(rng.poisson(1.5) if mucus else 0):
    colour = stains.counterstains[rng.integers(2)] * rng.uniform(0.08, 0.2)
    path = draw.strand(rng, small, px / 4, 15)
    strands = np.zeros_like(film)
    for offset in rng.normal(0, 2 * px / 4, (rng.integers(2, 5), 2)):
      cv2.polylines(strands, [np.round(path + offset).astype(np.int32)], False,
                    colour.tolist(), draw.width(rng.uniform(3, 8), px / 4), cv2.LINE_AA)
    film += draw.blur(strands, px / 2)
  return cv2.resize(film, (size, size), interpolation=cv2.INTER_LINEAR)


# Cell layout ---------------------------------------------------------------------------------

def lay_out_cells(rng, kind: _Kind, size, px) -> list[Cell]:
  """Cells in overlapping groups (sheets) and alone, in random stacking order."""
  names = list(kind.mix)
  shares = np.array([kind.mix[name] for name in names])
  count = rng.integers(kind.cells[0], kind.cells[1] + 1)
  groups = [[] for _ in range(rng.integers(1, 5))]
  group_centres = rng.uniform(0.1 * size, 0.9 * size, (len(groups), 2))
  cells = []
  for name in rng.choice(names, count, p=shares / shares.sum()):
    cell_type = TYPES[name]
    diameter = rng.uniform(*cell_type.diameter) * px
    crowded = name == kind.crowded and rng.random() < 0.7
    if crowded or rng.random() < 0.65:  # crowded cells share one group: the densest
      number = 0 if crowded else rng.integers(len(groups))
      group = groups[number]
      centre = _next_to(rng, group, diameter, group_centres[number], crowded)
    else:
      group, centre = None, rng.uniform(0, size, 2)
    cell = Cell(cell_type, centre, diameter, focus_depth(rng, px))
    if group is not None:
      group.append(cell)
    cells.append(cell)
  rng.shuffle(cells)  # which lies on top is independent of the type
  return cells


def _next_to(rng, group, diameter, start, crowded):
  """A centre overlapping a member of ``group`` by 20-50% of the two radii (more if crowded)."""
  if not group:
    return start
  neighbour = group[rng.integers(len(group))]
  overlap = rng.uniform(0.35, 0.65) if crowded else rng.uniform(0.2, 0.5)
  reach = (neighbour.diameter + diameter) / 2 * (1 - overlap)
  angle = rng.uniform(0, 2 * np.pi)
  return neighbour.centre + reach * np.array([np.cos(angle), np.sin(angle)])


def focus_depth(rng, px):
  """Blur of one cell: most are sharp, about one in three lies well off the focal plane."""
  depth = abs(rng.normal(0, 0.3))
  if rng.random() < 0.35:
    depth += rng.uniform(0.6, 2.0)
  return depth * px


# One cell ------------------------------------------------------------------------------------

def _outline(rng, cell_type, centre, diameter):
  radii = draw.ellipse_radii(rng, diameter, cell_type.elongation)
  if cell_type.outline == "polygon":
    return draw.polygonal_outline(rng, centre, radii)
  return draw.wobbly_outline(rng, centre, radii, 0.15 if cell_type.outline == "round" else 0.7)


class Style:
  """How every cell's nucleus and edge are drawn: fixed here; version 3 draws them per cell."""

  def rim(self, px):
    """Cytoplasm left round every nucleus, pixels."""
    return max(0.5 * px, 2.0)

  def edge(self, inside, px):
    """Relative stain added towards the cell's edge, ``inside`` being the distance from it."""
    return 0.6 * np.exp(-inside / max(1.2 * px, 0.5))  # stands out on pale cells


def paint_cell(density, mask, rng, cell, px, stains, style=Style(),
                kind="cell") -> draw.Drawn | None:
  """Add one cell's optical density to ``density`` and its classes to ``mask`` (None: an
  unlabelled look-alike); return where it lies, as ``kind``, or None where it is off the image."""
  cell_type = cell.type
  outline = _outline(rng, cell_type, cell.centre, cell.diameter)
  box = draw.box(outline, int(3 * cell.focus) + 2, density.shape[0])
  if box is None:
    return None
  origin = np.array([box[1].start, box[0].start])
  shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
  cytoplasm = draw.fill(shape, outline, origin)
  if not cytoplasm.any():
    return None
  inside = cv2.distanceTransform(cytoplasm, cv2.DIST_L2, 3)
  rim = style.rim(px)  # cytoplasm left round every nucleus

  thickness = _cytoplasm_thickness(rng, cell_type, cytoplasm, inside, px, style)
  room = inside
  if rng.random() < cell_type.cavity_chance:
    cavity = _cavity(rng, inside, cell.diameter, rim)
    if cavity is not None:
      room = cv2.distanceTransform(cavity, cv2.DIST_L2, 3)
      # Clear cavity, sharply cut, its edge condensed into a dense rim.
      edge = cv2.dilate(cavity, np.ones((draw.odd_width(1.2, px),) * 2, np.uint8)) - cavity
      thickness *= 1 - 0.85 * cavity.astype(np.float32)
      thickness += 0.7 * (edge & cytoplasm)
  nucleus = np.zeros(shape, np.uint8)
  if cell_type.by_ratio:  # the nucleus fills a share of the cell: a shrunk, rougher outline
    nucleus_outline = _filling_nucleus(rng, outline, rng.uniform(*cell_type.nucleus),
                                       cell_type.irregularity)
    nucleus = draw.fill(shape, nucleus_outline, origin) & (inside >= rim).astype(np.uint8)
  else:
    nuclei = cell_type.nuclei if rng.random() < cell_type.binucleate_chance else 1
    nucleus_diameter = rng.uniform(*cell_type.nucleus) * px * (0.8 if nuclei > 1 else 1)
    centres = []
    for _ in range(nuclei):
      placed = _place_nucleus(rng, room, nucleus_diameter, cell_type.irregularity, rim, centres)
      if placed is None:
        break
      nucleus_outline, centre = placed
      centres.append(centre)
      nucleus |= draw.fill(shape, nucleus_outline, 0)
  # Inside by construction, up to rasterising; the mask must never say otherwise.
  nucleus &= cv2.erode(cytoplasm, np.ones((3, 3), np.uint8))

  colour = stains.counterstains[rng.choice(3, p=cell_type.stains)] * rng.uniform(0.9, 1.1, 3)
  cell_density = thickness[..., None] * colour.astype(np.float32)
  if nucleus.any():
    nucleus_colour = stains.haematoxylin * rng.uniform(*cell_type.nucleus_density)
    _add_nucleus(cell_density, rng, cell_type, nucleus, nucleus_colour, px)
  if cell.focus > 0.7:  # finer blur than the optics' own is not worth its time
    cell_density = draw.blur(cell_density, cell.focus)
  density[box] += cell_density
  if mask is not None:
    region = mask[box]
    region[(cytoplasm == 1) & (region == BACKGROUND)] = CYTOPLASM
    region[nucleus == 1] = NUCLEUS
  return draw.Drawn(kind, box, cytoplasm, nucleus)


def _cytoplasm_thickness(rng, cell_type, cytoplasm, inside, px, style):
  """Relative stain over the cell: mottled, denser towards the curled edge, maybe a fold."""
  shape = cytoplasm.shape
  fine_grid = tuple(max(side // max(int(1.5 * px), 1), 2) for side in shape)
  thickness = draw.smooth_noise(rng, shape, (4, 4), 0.25)
  thickness *= draw.smooth_noise(rng, shape, fine_grid, 0.15, cv2.INTER_LINEAR)
  thickness += style.edge(inside, px)
  if rng.random() < cell_type.fold_chance:
    thickness += 0.8 * draw.fold(rng, shape, px / PIXELS_PER_UM)
  return thickness * cytoplasm * rng.uniform(*cell_type.cytoplasm)


def _cavity(rng, inside, diameter, rim):
  """A koilocyte's perinuclear cavity: 0/1, 40-65% of the cell across, often off-centre."""
  radius = diameter / 2 * rng.uniform(0.4, 0.65)
  radius = min(radius, inside.max() - rim)
  if radius < 2 * rim:
    return None
  rows, columns = np.nonzero(inside >= min(radius + rim, inside.max()))
  pick = rng.integers(len(rows))
  centre = np.array([columns[pick], rows[pick]], np.float64)
  outline = draw.wobbly_outline(rng, centre, np.array([radius, radius * rng.uniform(0.7, 1)]), 0.2)
  return draw.fill(inside.shape, outline, 0) & (inside >= rim).astype(np.uint8)


def _filling_nucleus(rng, outline, ratio, irregularity):
  """A nucleus of about ``ratio`` of the cell's area: the cell's outline shrunk about its
  centre, its radius cut in by smooth notches (never pushed out, so it stays inside)."""
  centre = outline.mean(axis=0)
  offsets = outline - centre
  angles = np.arctan2(offsets[:, 1], offsets[:, 0])
  harmonics = np.arange(2, 9)[:, None]
  amplitudes = rng.uniform(0, irregularity, (len(harmonics), 1)) / harmonics
  phases = rng.uniform(0, 2 * np.pi, (len(harmonics), 1))
  wobble = 1 + (amplitudes * np.cos(harmonics * angles + phases)).sum(axis=0)
  return centre + offsets * (np.sqrt(ratio) * wobble / wobble.max())[:, None]


def _place_nucleus(rng, room, diameter, irregularity, rim, others):
  """(outline, centre) of a nucleus where the distance map ``room`` leaves space; shrunk
  where the cell is too small, away from the nuclei in ``others``; None where none fits."""
  radii = draw.ellipse_radii(rng, diameter, (1.0, 1.4))
  outline = draw.wobbly_outline(rng, np.zeros(2), radii, irregularity)
  reach = np.hypot(*outline.T).max()  # farthest point from the centre
  largest = room.max()
  if reach + rim > largest:
    outline *= max(largest - rim, 0) / reach
    reach = largest - rim
  if reach < 0.75:
    return None
  fits = room >= min(reach + rim, largest)
  for centre in others:  # binucleate: the second nucleus beside the first
    rows, columns = np.ogrid[: room.shape[0], : room.shape[1]]
    fits &= np.hypot(columns - centre[0], rows - centre[1]) > 2.05 * reach
  rows, columns = np.nonzero(fits)
  if not len(rows):
    return None
  pick = rng.integers(len(rows))
  centre = np.array([columns[pick], rows[pick]], np.float64)
  return outline + centre, centre


def _add_nucleus(cell_density, rng, cell_type, nucleus, colour, px):
  """Add the nucleus (chromatin texture, darker membrane) to the cell's optical density."""
  x, y, width, height = cv2.boundingRect(nucleus)
  rows, columns = slice(y, y + height), slice(x, x + width)
  nucleus = nucleus[rows, columns]
  membrane = (nucleus - cv2.erode(nucleus, np.ones((3, 3), np.uint8))).astype(np.float32)
  chromatin = draw.blur(rng.standard_normal(nucleus.shape, np.float32), cell_type.grain * px / 2)
  chromatin = np.clip(1 + cell_type.chromatin * chromatin / (chromatin.std() + 1e-6), 0.2, None)
  stain = nucleus * chromatin + 0.35 * membrane
  cell_density[rows, columns] += stain[..., None] * colour


# Look-alikes: image only, never the mask -----------------------------------------------------

def _lookalikes(rng, kind: _Kind, cells, size, px, stains) -> tuple[np.ndarray, list]:
  """Optical density of what is not a labelled cell (see the module's docstring), and where
  its bare nuclei, neutrophils and red blood cells lie."""
  density = np.zeros((size, size, 3), np.float32)
  spot = functools.partial(random_spot, rng, [cell.centre for cell in cells], size, px)
  drawn = red_cells(density, rng, spot, px)
  bacteria(density, rng, spot, px, stains)
  if rng.random() < 0.15:
    candida(density, rng, size, px)
  for _ in range(rng.poisson(kind.bare_nuclei)):
    drawn.append(_bare_nucleus(density, rng, spot(0.2), px, stains))
  drawn += neutrophils(density, rng, spot, px, stains)
  return density, drawn


def random_spot(rng, centres, size, px, over_cells):
  """Anywhere, or (with chance ``over_cells``) on a cell of those at ``centres``."""
  if centres and rng.random() < over_cells:
    return centres[rng.integers(len(centres))] + rng.normal(0, 8 * px, 2)
  return rng.uniform(0, size, 2)


def _red_cell(density, rng, centre, px):
  colour = RED_CELL_OD * rng.uniform(0.25, 0.5)
  radius = rng.uniform(3.5, 4.0) * px
  cv2.circle(density, draw.pixel(centre), draw.width(radius, 1), colour.tolist(), -1, cv2.LINE_AA)
  cv2.circle(density, draw.pixel(centre), draw.width(radius * 0.5, 1), (colour * 0.8).tolist(),
             -1, cv2.LINE_AA)
  return draw.discs("red cell", density.shape[0], centre, draw.width(radius, 1))


def red_cells(density, rng, spot, px, paint=_red_cell):
  """Red blood cells, 7-8 um biconcave discs (pale centre), few or, in bloody smears, sheets;
  each drawn by ``paint`` (as `_red_cell` is: its arguments, its answer)."""
  bloody = rng.random() < 0.25
  drawn = []
  for _ in range(rng.poisson(1.5) if bloody else rng.poisson(0.2)):  # sheets
    centre, spread = spot(0.3), rng.uniform(6, 20) * px
    for point in centre + rng.normal(0, spread, (rng.integers(10, 60), 2)):
      drawn.append(paint(density, rng, point, px))
  for _ in range(rng.poisson(15 if bloody else 3)):
    drawn.append(paint(density, rng, spot(0.3), px))
  return drawn


def bacteria(density, rng, spot, px, stains):
  """Lactobacilli: blue-grey rods, 2-6 um long; heavy loads gather on cells (cytolysis)."""
  load = rng.poisson(rng.choice([10, 150, 600], p=[0.4, 0.4, 0.2]))
  thickness = draw.width(0.6 * px, 1)
  for _ in range(load // 10 + 1):
    centre, spread = spot(0.6), rng.uniform(5, 40) * px
    for point in centre + rng.normal(0, spread, (10, 2)):
      angle, length = rng.uniform(0, np.pi), rng.uniform(1, 3) * px
      step = length * np.array([np.cos(angle), np.sin(angle)])
      colour = stains.haematoxylin * rng.uniform(0.2, 0.35)
      cv2.line(density, draw.pixel(point - step), draw.pixel(point + step), colour.tolist(),
               thickness, cv2.LINE_AA)


def candida(density, rng, size, px):
  """Candida pseudohyphae: long segmented tubes 2-3 um wide, pinched at the septa; spores."""
  for _ in range(rng.integers(1, 4)):
    path = draw.strand(rng, size, px, 12, turn=0.3, points=rng.integers(5, 20))
    colour = (_FUNGUS_OD * rng.uniform(0.4, 0.8)).tolist()
    tube = draw.width(2.5 * px, 1)
    for start, end in itertools.pairwise(path):
      shorter = (end - start) * 0.08  # the pinch between segments
      cv2.line(density, draw.pixel(start + shorter), draw.pixel(end - shorter), colour, tube,
               cv2.LINE_AA)
    for point in path[-1] + rng.normal(0, 6 * px, (rng.integers(0, 8), 2)):
      axes = (draw.width(2 * px, 1), draw.width(1.4 * px, 1))
      cv2.ellipse(density, draw.pixel(point), axes, rng.uniform(0, 180), 0, 360, colour, -1,
                  cv2.LINE_AA)


def _bare_nucleus(density, rng, centre, px, stains):
  """A nucleus stripped of its cytoplasm (cytolysis, or fragile abnormal cells): pale or dark."""
  radii = draw.ellipse_radii(rng, rng.uniform(7, 14) * px, (1.0, 1.4))
  outline = draw.wobbly_outline(rng, centre, radii, 0.15)
  colour = (stains.haematoxylin * rng.uniform(0.5, 1.6)).tolist()
  cv2.fillPoly(density, [np.round(outline * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)
  box = draw.box(outline, 1, density.shape[0])
  if box is None:
    return None
  shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
  nucleus = draw.fill(shape, outline, np.array([box[1].start, box[0].start]))
  return draw.Drawn("bare nucleus", box, nucleus, nucleus)


def _neutrophil(density, rng, centre, px, stains):
  """A neutrophil, 10-12 um: faint cytoplasm, 3-5 dark lobes."""
  radius = draw.width(rng.uniform(5, 6) * px, 1)
  cv2.circle(density, draw.pixel(centre), radius, (0.06, 0.05, 0.04), -1, cv2.LINE_AA)
  colour = (stains.haematoxylin * rng.uniform(0.9, 1.4)).tolist()
  lobes = []
  for lobe in centre + rng.normal(0, 1.6 * px, (rng.integers(3, 6), 2)):
    lobes.append((lobe, draw.width(rng.uniform(1.1, 1.6) * px, 1)))
    cv2.circle(density, draw.pixel(lobe), lobes[-1][1], colour, -1, cv2.LINE_AA)
  return draw.discs("neutrophil", density.shape[0], centre, radius, lobes)


def neutrophils(density, rng, spot, px, stains, paint=_neutrophil):
  """Neutrophils in groups, often over cells; each drawn by ``paint`` (as `_neutrophil` is:
  its arguments, its answer)."""
  drawn = []
  for _ in range(rng.choice([0, 1, 2, 4], p=[0.15, 0.25, 0.35, 0.25])):
    centre, spread = spot(0.6), rng.uniform(5, 25) * px
    for point in centre + rng.normal(0, spread, (rng.integers(3, 15), 2)):
      drawn.append(paint(density, rng, point, px, stains))
  return drawn
