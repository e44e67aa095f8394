"""Version 3 of the synthetic smears: version 2's, with every object drawn as its real
counterpart is, whether the mask labels it or not.

Version 2 drew some steps by the label, so a network could tell a labelled object from its
look-alike by how it was drawn (docs/synthetic-data.md, "Shortcuts"). Here every cell, bare
nucleus, neutrophil and red blood cell goes through v2's one cell painter (`v2.paint_cell`):

- a bare nucleus is the nucleus of a cell of a type of the image's kind, drawn as that cell's
  would be (size, stain, chromatin, membrane, focus), whose cytoplasm is gone;
- neutrophils (up to four lobes, faint cytoplasm) and red blood cells (no nucleus) are cells
  of their own types that the mask leaves out, each at its own focus depth;
- each image's bacteria and Candida lie at a focus depth drawn from the same model as cells';
- a cell's edge is darker by a strength drawn per cell that varies along the edge, down to none;
- the cytoplasm left round a nucleus is drawn per cell, from none to 1 um.

Stain, cell types, kinds, layout, overlaps, look-alike counts, masks and optics are version 2's.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from jaxseg.data.synthetic import draw, v2

_STYLE_STREAM = 3  # beside v2's three: rims and edges draw from their own random stream

# Look-alike cells, painted as cells are. Their cytoplasm takes up no counterstain: it keeps
# version 2's colour (`_dyed`), so that colour tells them from labelled cells no better.
NEUTROPHIL = v2.CellType(
  diameter=(10, 12), nucleus=(2.8, 3.6), by_ratio=False, elongation=(1.0, 1.2),
  outline="round", cytoplasm=(0.15, 0.4), stains=(1.0, 0.0, 0.0), nucleus_density=(0.9, 1.4),
  chromatin=0.1, grain=0.5, irregularity=0.1, binucleate_chance=1.0, nuclei=4)
_NEUTROPHIL_OD = np.array([0.3, 0.25, 0.2], np.float32)  # faint and greyish, as v2's
# No nucleus; the thicker rim of a biconcave disc is its edge.
RED_CELL = v2.CellType(
  diameter=(7, 8), nucleus=(0, 0), by_ratio=False, elongation=(1.0, 1.1), outline="round",
  cytoplasm=(0.25, 0.5), stains=(1.0, 0.0, 0.0), nucleus_density=(0, 0), chromatin=0, grain=1,
  irregularity=0, binucleate_chance=1.0, nuclei=0)


class Style(v2.Style):
  """The nucleus's rim and the cell's edge, drawn per cell from ``rng``, a stream of their own:
  all else of the labelled cells (layout, outline, stain, nucleus) is then version 2's."""

  def __init__(self, rng):
    self.rng = rng

  def rim(self, px):
    """Cytoplasm left round the nucleus: none to 1 um, wherever the nucleus lies in its cell."""
    return self.rng.uniform(0, 1) * px

  def edge(self, inside, px):
    """Stain added towards the edge (a curled or thicker rim): its strength is drawn per cell
    and varies along the edge, down to none in places. Its range keeps the cells' colours as
    easy to threshold as version 2's fixed edge does (a stronger range made them easier)."""
    along = np.maximum(draw.smooth_noise(self.rng, inside.shape, (5, 5), 1.0) - 0.4, 0)
    width = self.rng.uniform(0.6, 1.6) * px
    return self.rng.uniform(0, 0.8) * along * np.exp(-inside / width)


def sample(words: tuple[int, ...], kind: str, size: int,
           lookalikes: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The image of random seed ``words`` and ``kind``: (RGB uint8 HxWx3, class mask uint8 HxW)."""
  image, mask, _ = sample_objects(words, kind, size, lookalikes)
  return image, mask


def sample_objects(words: tuple[int, ...], kind: str, size: int,
                   lookalikes: bool = True) -> tuple[np.ndarray, np.ndarray, list[draw.Drawn]]:
  """`sample`'s image and mask, and where each cell, bare nucleus, neutrophil and red blood
  cell was drawn (a `draw.Drawn` each), to measure how each kind is drawn."""
  style = Style(np.random.default_rng([*words, _STYLE_STREAM]))
  return v2.render(words, kind, size, lookalikes, style,
                    functools.partial(_lookalikes, style=style))


def _lookalikes(rng, kind, cells, size, px, stains, style) -> tuple[np.ndarray, list]:
  """v2's look-alikes, as many and where v2 puts them, each drawn as its kind is."""
  density = np.zeros((size, size, 3), np.float32)
  spot = functools.partial(v2.random_spot, rng, [cell.centre for cell in cells], size, px)
  red_cell = functools.partial(lookalike, RED_CELL, "red cell",
                               stains=_dyed(stains, v2.RED_CELL_OD), style=style)
  drawn = v2.red_cells(density, rng, spot, px, red_cell)
  small = np.zeros_like(density)  # bacteria and Candida, in focus together
  v2.bacteria(small, rng, spot, px, stains)
  if rng.random() < 0.15:
    v2.candida(small, rng, size, px)
  density += draw.blur(small, v2.focus_depth(rng, px))
  for _ in range(rng.poisson(kind.bare_nuclei)):
    drawn.append(bare_nucleus(density, rng, kind, spot(0.2), px, stains, style))
  neutrophil = functools.partial(lookalike, NEUTROPHIL, "neutrophil", style=style)
  drawn += v2.neutrophils(density, rng, spot, px, _dyed(stains, _NEUTROPHIL_OD), neutrophil)
  return density, drawn


def _dyed(stains, colour):
  """``stains`` whose every counterstain is ``colour``: a look-alike's cytoplasm in it."""
  return v2.Stains(stains.haematoxylin, np.tile(np.asarray(colour, np.float32), (3, 1)))


def lookalike(cell_type, name, density, rng, centre, px, stains, style) -> draw.Drawn | None:
  """Draw a cell of ``cell_type`` that the mask leaves out, at its own focus depth."""
  diameter = rng.uniform(*cell_type.diameter) * px
  cell = v2.Cell(cell_type, centre, diameter, v2.focus_depth(rng, px))
  return v2.paint_cell(density, None, rng, cell, px, stains, style, name)


def bare_nucleus(density, rng, kind, centre, px, stains, style) -> draw.Drawn | None:
  """The nucleus of a cell of a type of this ``kind`` of image, its cytoplasm gone."""
  names = list(kind.mix)
  shares = np.array([kind.mix[name] for name in names])
  cell_type = v2.TYPES[rng.choice(names, p=shares / shares.sum())]
  stripped = dataclasses.replace(cell_type, cytoplasm=(0.0, 0.0), cavity_chance=0.0)
  return lookalike(stripped, "bare nucleus", density, rng, centre, px, stains, style)
