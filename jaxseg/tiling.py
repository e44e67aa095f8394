"""Sliding windows over an image larger than a model's input: overlapping tiles, and their
predictions blended back into one map under a smooth window."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where an image's tiles lie: their side, the image's size, its size once padded to whole
  tiles, the tiles' corners."""

  tile: int
  size: tuple[int, int]
  padded_size: tuple[int, int]
  starts: list[tuple[int, int]]


def tile_starts(length: int, tile: int) -> list[int]:
  """Tile offsets along one side: half a tile apart, the last one flush with the end."""
  return [*range(0, length - tile, tile // 2), length - tile]


def blend_window(tile: int) -> np.ndarray:
  """2-D Hann window without its zero end points: tiles count most at their centres."""
  hann = np.hanning(tile + 2)[1:-1].astype(np.float32)
  return np.outer(hann, hann)


def mirrored_to(array: np.ndarray, side: int) -> np.ndarray:
  """``array`` (H, W, ...) mirrored out at its bottom and right to at least ``side`` square."""
  padding = [(0, max(side - length, 0)) for length in array.shape[:2]]
  if not any(after for _, after in padding):
    return array
  return np.pad(array, padding + [(0, 0)] * (array.ndim - 2), mode="symmetric")


def cut(image: np.ndarray, tile: int) -> tuple[list[np.ndarray], Layout]:
  """``image`` (H, W, ...) as tiles of ``tile`` x ``tile`` overlapping by half; an image
  smaller than a tile is mirrored out to a whole one (`blend` crops it back)."""
  size = image.shape[:2]
  padded = mirrored_to(image, tile)
  starts = [(y, x) for y in tile_starts(padded.shape[0], tile)
            for x in tile_starts(padded.shape[1], tile)]
  return ([padded[y:y + tile, x:x + tile] for y, x in starts],
          Layout(tile, size, padded.shape[:2], starts))


def blend(tiles, layout: Layout) -> np.ndarray:
  """The map of ``layout``'s image from its tiles' maps (in `cut`'s order; (tile, tile), or
  (tile, tile, channels)), each weighted by `blend_window`."""
  window, side = blend_window(layout.tile), layout.tile
  total = weight = None
  for (y, x), values in zip(layout.starts, tiles):
    if total is None:  # the first tile tells whether the maps have channels
      window = window.reshape(window.shape + (1,) * (values.ndim - 2))
      total = np.zeros(layout.padded_size + values.shape[2:], np.float32)
      weight = np.zeros(layout.padded_size + window.shape[2:], np.float32)
    total[y:y + side, x:x + side] += values * window
    weight[y:y + side, x:x + side] += window
  height, width = layout.size
  return (total / weight)[:height, :width]


def predict_tiled(predict, images, tile: int) -> list[np.ndarray]:
  """Each image's map, at its own size, from ``predict`` (a stack of tiles -> their maps)
  over its `cut` tiles, `blend`-ed; every image's tiles go to ``predict`` in one stack."""
  layouts, tiles = [], []
  for image in images:
    image_tiles, layout = cut(image, tile)
    tiles += image_tiles
    layouts.append(layout)
  predicted = iter(predict(np.stack(tiles)))
  return [blend((next(predicted) for _ in layout.starts), layout) for layout in layouts]
