"""The built-in synthetic Pap-smear data set: brightfield-like images with exact class masks.

It stands in for the paper's private data (419 BMP images of 1130x1130; HSIL 124, LSIL 61,
NSIL 234). Image ``i`` depends only on ``(seed, i)``, so a larger set begins with the images
of a smaller one, and the kinds follow the paper's proportions in every run of 419 images.

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

import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np
from tqdm import tqdm

from jaxseg.data.masks import BACKGROUND, CYTOPLASM, NUCLEUS
from jaxseg.errors import DataError

KINDS = ("hsil", "lsil", "nsil")
PAPER_COUNTS = {"hsil": 124, "lsil": 61, "nsil": 234}
PAPER_SIZE = 1130

# Random streams: the kind order and each image draw from their own seed sequences.
_KIND_STREAM, _IMAGE_STREAM = 0, 1

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


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, *stream])


@functools.lru_cache(maxsize=16)
def _kind_cycle(seed: int) -> tuple[int, ...]:
  """A seeded shuffle of the paper's 419 kinds; image ``i`` takes entry ``i mod 419``."""
  kinds = np.repeat(np.arange(len(KINDS)), [PAPER_COUNTS[kind] for kind in KINDS])
  return tuple(_rng(seed, _KIND_STREAM).permutation(kinds).tolist())


def kind_of(index: int, seed: int) -> str:
  """The kind ('hsil', 'lsil' or 'nsil') of image ``index``; 419 in a row hold 124/61/234."""
  cycle = _kind_cycle(seed)
  return KINDS[cycle[index % len(cycle)]]


def default_root(cache_dir: Path, num_images: int, seed: int, size: int) -> Path:
  """Where the data set of these settings is cached under ``cache_dir``."""
  return Path(cache_dir) / f"synthetic-s{seed}-n{num_images}-{size}px"


def generate_sample(seed: int, index: int, size: int = PAPER_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """Image ``index`` of the set of ``seed``: (RGB uint8 HxWx3, class mask uint8 HxW)."""
  rng = _rng(seed, _IMAGE_STREAM, index)
  scale = size / PAPER_SIZE
  density = np.zeros((size, size, 3), np.float32)
  mask = np.zeros((size, size), np.uint8)
  stain_intensity = rng.uniform(0.85, 1.2)
  for cell in _lay_out_cells(rng, _LAYOUTS[kind_of(index, seed)], size, scale):
    _paint_cell(density, mask, rng, cell, scale, stain_intensity)
  density += _debris(rng, size, scale)
  return _photograph(density, rng, size, scale), mask


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


def _ellipse_points(rng, centre, radii, angles, reach):
  """Points (N, 2) at ``angles`` on an ellipse scaled by ``reach``, turned at random."""
  x, y = radii[0] * reach * np.cos(angles), radii[1] * reach * np.sin(angles)
  turn = rng.uniform(0, np.pi)
  cos, sin = np.cos(turn), np.sin(turn)
  return np.stack([x * cos - y * sin, x * sin + y * cos], 1) + centre


def _ellipse_radii(rng, diameter, elongation):
  stretch = np.sqrt(rng.uniform(*elongation))
  return np.array([diameter / 2 * stretch, diameter / 2 / stretch])


def _wobbly_outline(rng, centre, radii, irregularity, points=72):
  """Polygon (N, 2) of a rotated ellipse whose radius wobbles smoothly (low harmonics)."""
  angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
  harmonics = np.arange(2, 7)[:, None]
  amplitudes = rng.uniform(0, irregularity, (len(harmonics), 1)) / harmonics
  phases = rng.uniform(0, 2 * np.pi, (len(harmonics), 1))
  wobble = 1 + (amplitudes * np.cos(harmonics * angles + phases)).sum(axis=0)
  return _ellipse_points(rng, centre, radii, angles, wobble)


def _polygonal_outline(rng, centre, radii):
  """A squamous cell: a rotated 4-7 cornered polygon, corners rounded by Chaikin cutting."""
  corners = rng.integers(4, 8)
  angles = (np.arange(corners) + rng.uniform(-0.35, 0.35, corners)) * 2 * np.pi / corners
  reach = rng.uniform(0.85, 1.25, corners)
  points = _ellipse_points(rng, centre, radii, angles, reach)
  for _ in range(2):
    following = np.roll(points, -1, axis=0)
    cuts = [0.75 * points + 0.25 * following, 0.25 * points + 0.75 * following]
    points = np.stack(cuts, 1).reshape(-1, 2)
  return points


def _box(polygon, margin, size):
  """(rows, columns) slices of the polygon's bounding box plus ``margin``, inside the image."""
  x0, y0 = np.clip(np.floor(polygon.min(axis=0)).astype(int) - margin, 0, size)
  x1, y1 = np.clip(np.ceil(polygon.max(axis=0)).astype(int) + margin + 1, 0, size)
  return (slice(y0, y1), slice(x0, x1)) if x1 > x0 and y1 > y0 else None


def _fill(shape, polygon, origin):
  """0/1 uint8 patch of ``shape`` with ``polygon`` (image coordinates) filled, sub-pixel exact."""
  patch = np.zeros(shape, np.uint8)
  points = np.round((polygon - origin) * 16).astype(np.int32)  # shift=4: 1/16-pixel vertices
  cv2.fillPoly(patch, [points], 1, cv2.LINE_8, shift=4)
  return patch


def _odd_width(pixels, scale):
  """An odd kernel width of about ``2 * pixels`` at this scale."""
  return max(int(round(pixels * scale)), 1) * 2 + 1


def _paint_cell(density, mask, rng, cell, scale, stain_intensity):
  """Add one cell's optical density to ``density`` and its classes to ``mask``."""
  style = cell.style
  radii = _ellipse_radii(rng, cell.diameter, style.elongation)
  if style.polygonal:
    outline = _polygonal_outline(rng, cell.centre, radii)
  else:
    outline = _wobbly_outline(rng, cell.centre, radii, 0.25)
  nucleus_radii = _ellipse_radii(rng, cell.nucleus_diameter, (1.0, 1.3))
  room = max(radii.min() * 0.7 - nucleus_radii.max(), 0) * 0.5  # keeps the nucleus well inside
  nucleus_centre = cell.centre + rng.normal(0, 1, 2) / np.sqrt(2) * room
  nucleus_outline = _wobbly_outline(rng, nucleus_centre, nucleus_radii, style.nucleus_irregularity)

  cytoplasm_blur = rng.uniform(*style.cytoplasm_blur) * scale
  nucleus_blur = rng.uniform(*style.nucleus_blur) * scale
  box = _box(outline, int(3 * max(cytoplasm_blur, nucleus_blur)) + 2, mask.shape[0])
  if box is None:
    return
  origin = np.array([box[1].start, box[0].start])
  shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
  cytoplasm = _fill(shape, outline, origin)
  inner = cv2.erode(cytoplasm, np.ones((_odd_width(4, scale),) * 2, np.uint8))
  nucleus = _fill(shape, nucleus_outline, origin) & inner  # always within a rim of cytoplasm

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
  thickness = _smooth_noise(rng, shape, (5, 5), 0.2) * _smooth_noise(rng, shape, fine_grid, 0.12)
  thickness += 0.2 * (cytoplasm - inner).astype(np.float32)
  if rng.random() < style.fold_chance:
    thickness += 0.3 * _fold(rng, shape, scale)
  return thickness * cytoplasm


def _smooth_noise(rng, shape, grid, spread):
  """A field of ``shape`` around 1 (within about +-spread): a random ``grid`` smoothly enlarged."""
  values = rng.uniform(1 - spread, 1 + spread, grid).astype(np.float32)
  return cv2.resize(values, shape[::-1], interpolation=cv2.INTER_CUBIC)


def _fold(rng, shape, scale):
  """A thin curved crease across the cell, where the cytoplasm lies double."""
  height, width = shape
  turns = np.cumsum(rng.normal(0, 0.25, 12)) + rng.uniform(0, 2 * np.pi)
  steps = np.stack([np.cos(turns), np.sin(turns)], 1) * 12 * scale
  points = np.round(rng.uniform(0, 1, 2) * [width, height] + np.cumsum(steps, axis=0))
  fold = np.zeros(shape, np.float32)
  cv2.polylines(fold, [points.astype(np.int32)], False, 1.0, _width(2, scale), cv2.LINE_AA)
  return fold


def _halo(rng, shape, nucleus_outline, nucleus_centre, scale):
  """Thickness factor of a koilocyte: a clear ring round the nucleus, rimmed by dense cytoplasm."""
  ring = (nucleus_outline - nucleus_centre) * rng.uniform(1.8, 2.5) + nucleus_centre
  clear = _fill(shape, ring, 0)
  rim = cv2.dilate(clear, np.ones((_odd_width(6, scale),) * 2, np.uint8)) - clear
  return (1 - 0.75 * clear + 0.6 * rim).astype(np.float32)


def _blur(array, sigma):
  return cv2.GaussianBlur(array, (0, 0), max(sigma, 0.3))


def _width(pixels, scale):
  """A line width or radius of ``pixels`` in a 1130-pixel field, at least 1."""
  return max(int(round(pixels * scale)), 1)


def _pixel(point):
  return tuple(int(round(value)) for value in point)


def _debris(rng, size, scale):
  """Optical density of what is not a squamous cell: mucus, fibres, specks, inflammatory cells."""
  debris = np.zeros((size, size, 3), np.float32)
  for _ in range(rng.poisson(2)):  # mucus: broad faint strands
    colour = (_CYTOPLASM_OD["cyanophilic"] * rng.uniform(0.04, 0.09)).tolist()
    strand = _strand(rng, size, scale, 40)
    cv2.polylines(debris, [strand], False, colour, _width(rng.uniform(10, 25), scale), cv2.LINE_AA)
  for _ in range(rng.poisson(3)):  # fibres: thin and faint
    colour = (np.array([0.3, 0.3, 0.2]) * rng.uniform(0.3, 0.8)).tolist()
    strand = _strand(rng, size, scale, 25)
    cv2.polylines(debris, [strand], False, colour, _width(rng.uniform(1, 3), scale), cv2.LINE_AA)
  for _ in range(rng.poisson(40 * scale**2) + 5):  # specks of dirt
    colour = (np.array([0.9, 0.95, 1.0]) * rng.uniform(0.4, 1.2)).tolist()
    centre = _pixel(rng.uniform(0, size, 2))
    cv2.circle(debris, centre, _width(rng.uniform(0.8, 2.5), scale), colour, -1, cv2.LINE_AA)
  for cluster in rng.uniform(0, size, (rng.poisson(1.5), 2)):  # inflammatory cells
    for centre in cluster + rng.normal(0, 40 * scale, (rng.integers(2, 14), 2)):
      _inflammatory_cell(debris, rng, centre, scale)
  return debris


def _strand(rng, size, scale, step):
  """Points of a smooth random curve starting anywhere in the field."""
  turns = np.cumsum(rng.normal(0, 0.15, 30)) + rng.uniform(0, 2 * np.pi)
  steps = np.stack([np.cos(turns), np.sin(turns)], 1) * step * scale
  return np.round(rng.uniform(0, size, 2) + np.cumsum(steps, axis=0)).astype(np.int32)


def _inflammatory_cell(debris, rng, centre, scale):
  """A small lobed dark blob (neutrophil-like) on a faint halo: debris, not a labelled cell."""
  halo = _width(rng.uniform(10, 15), scale)
  cv2.circle(debris, _pixel(centre), halo, (0.1, 0.07, 0.05), -1, cv2.LINE_AA)
  colour = (_NUCLEUS_OD * rng.uniform(0.8, 1.2)).tolist()
  for lobe in centre + rng.normal(0, 3.5 * scale, (rng.integers(2, 5), 2)):
    cv2.circle(debris, _pixel(lobe), _width(rng.uniform(3.5, 6), scale), colour, -1, cv2.LINE_AA)


def _illumination(rng, size):
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


def _photograph(density, rng, size, scale):
  """Brightfield picture of the optical density: light, absorption, optics blur, sensor noise."""
  background = rng.uniform(0.86, 0.97) * (1 + rng.uniform(-0.04, 0.04, 3))
  light = _illumination(rng, size)[..., None] * (255 * background).astype(np.float32)
  image = cv2.exp(np.negative(density, out=density))
  image *= light
  image = _blur(image, rng.uniform(0.7, 1.2) * scale)
  noise_table = _NORMAL_QUANTILES * np.float32(rng.uniform(1.5, 3.5))
  image += cv2.LUT(rng.integers(0, 256, image.shape, dtype=np.uint8), noise_table)
  return cv2.convertScaleAbs(np.maximum(image, 0, out=image))  # rounds and saturates to uint8


def write_synthetic(
  root: Path, num_images: int, *, seed: int = 0, size: int = PAPER_SIZE, progress: bool = True
) -> Path:
  """Write the set to ``root`` (images/*.bmp, masks/*.png, manifest.json) once; return ``root``.

  Nothing is written when ``root`` already holds this set. It is built in a temporary
  sibling folder and renamed into place, so an interrupted run leaves no partial set.
  """
  root = Path(root)
  if _manifest_matches(root, seed, size, num_images):
    return root
  if root.exists() and any(root.iterdir()) and not (root / "manifest.json").exists():
    raise DataError(f"{root}: exists and is not a synthetic data set; choose another folder")
  try:
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
  except OSError as error:
    raise DataError(f"{root.parent}: cannot write the synthetic data set there "
                    f"({error.strerror or error}); choose a writable cache folder "
                    "(JAXSEG_CACHE or --cache-dir)") from None
  try:
    kinds = _write_images(staging, num_images, seed, size, progress)
    manifest = {"seed": seed, "size": size, "num_images": num_images, "kinds": kinds}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    _move_into_place(staging, root)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return root


def _manifest_matches(root: Path, seed: int, size: int, num_images: int) -> bool:
  try:
    manifest = json.loads((root / "manifest.json").read_text())
  except (OSError, ValueError):
    return False
  settings = (manifest.get("seed"), manifest.get("size"), manifest.get("num_images"))
  return settings == (seed, size, num_images)


def _write_images(folder: Path, num_images: int, seed: int, size: int, progress: bool):
  """Write the image/mask pairs into ``folder``; return {stem: kind}."""
  (folder / "images").mkdir()
  (folder / "masks").mkdir()
  kinds = {}
  indices = tqdm(range(num_images), desc="synthetic Pap smears", unit="image", disable=not progress)
  for index in indices:
    kind = kind_of(index, seed)
    stem = f"{kind}_{index:04d}"
    image, mask = generate_sample(seed, index, size)
    image_path, mask_path = folder / "images" / f"{stem}.bmp", folder / "masks" / f"{stem}.png"
    # cv2 writes BGR.
    written = cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not (written and cv2.imwrite(str(mask_path), mask)):
      raise DataError(f"{folder}: cannot write synthetic image {stem}")
    kinds[stem] = kind
  return kinds


def _move_into_place(staging: Path, root: Path) -> None:
  """Rename ``staging`` to ``root``, replacing an older set there."""
  if root.exists():
    stale = staging.with_suffix(".stale")
    root.rename(stale)
    staging.rename(root)
    shutil.rmtree(stale)
  else:
    staging.rename(root)
