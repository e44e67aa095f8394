"""Images drawn by the tests: a cell on glass with its class mask, a PNG cut short."""

import struct
import zlib

import numpy as np


def disk(size, centre, radius):
  yy, xx = np.mgrid[:size, :size]
  # radius + 0.5: a round digital disk, without one-pixel spikes at its four tips.
  return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= (radius + 0.5) ** 2


def cell_image(size=64, shift=(0, 0)):
  """Glass (220), one cell (150) and its nucleus (60), no noise; RGB and class mask (0/1/2)."""
  centre = (size // 2 + shift[0], size // 2 + shift[1])
  cell = disk(size, centre, 22)
  nucleus = disk(size, (centre[0] + 2, centre[1] - 1), 5)
  gray = np.full((size, size), 220, np.uint8)
  gray[cell], gray[nucleus] = 150, 60
  classes = cell.astype(np.uint8) + nucleus
  return np.repeat(gray[..., None], 3, axis=-1), classes


def png_header_only(width: int, height: int) -> bytes:
  """A PNG whose header declares ``width`` x ``height`` and whose pixels are cut short."""
  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  chunk = b"IHDR" + header
  return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
          + struct.pack(">I", zlib.crc32(chunk)) + struct.pack(">I", 1000) + b"IDAT" + b"\0" * 64)
