"""Image folders and image/mask files, read with errors that name the file.

An image or mask is a file path, or `Encoded` bytes held in memory (a TFDS record's PNG):
both decode through the same functions, so every source gives the same pixels and errors.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np

from jaxseg.errors import DataError

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Files that operating systems leave in image folders; lower case.
STRAY_FILES = frozenset({"thumbs.db", ".ds_store", "desktop.ini"})

log = logging.getLogger(__name__)


def _is_stray(path: Path) -> bool:
  # macOS writes "._name" resource forks beside files on foreign disks, image suffix and all.
  return path.name.lower() in STRAY_FILES or path.name.startswith("._")


def list_images(folder) -> list[Path]:
  """The image files in ``folder``, sorted by name; other files are skipped with a warning.

  Raises `DataError` for a missing folder, one without images, or two images with one name
  (their masks would share a file).
  """
  folder = Path(folder)
  if not folder.is_dir():
    raise DataError(f"{folder}: no such folder")
  images = []
  for path in sorted(folder.iterdir()):
    if not path.is_file():
      continue
    if _is_stray(path):
      log.warning("skipping %s: system file, not an image", path)
    elif path.suffix.lower() not in IMAGE_SUFFIXES:
      log.warning("skipping %s: not an image (%s)", path, " ".join(IMAGE_SUFFIXES))
    else:
      images.append(path)
  if not images:
    raise DataError(f"{folder}: no images ({' '.join(IMAGE_SUFFIXES)})")
  check_unique_names(images, "names must be unique")
  return images


def check_unique_names(paths: list[Path], why: str) -> None:
  """Raise `DataError` for the first path whose name (less its suffix) another one has."""
  stems = {}
  for path in paths:
    if path.stem in stems:
      raise DataError(f"{path}: same name as {stems[path.stem]}; {why}")
    stems[path.stem] = path


@dataclasses.dataclass(frozen=True)
class Encoded:
  """An encoded image file's bytes, held in memory; ``label`` names it in errors."""

  label: str
  data: bytes = dataclasses.field(repr=False)

  def __str__(self) -> str:
    return self.label


def _source(source) -> Path | Encoded:
  return source if isinstance(source, Encoded) else Path(source)


def _decode(source: Path | Encoded) -> np.ndarray | None:
  # imdecode rather than imread: any path works, on Windows too.
  if isinstance(source, Encoded):
    data = np.frombuffer(source.data, np.uint8)
  else:
    try:
      data = np.fromfile(source, np.uint8)
    except OSError as error:
      raise DataError(f"{source}: {error.strerror or error}") from None
  if not data.size:
    return None
  # OpenCV would also log a warning of its own for a truncated file; the DataError suffices.
  level = cv2.utils.logging.getLogLevel()
  cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
  try:
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
  finally:
    cv2.utils.logging.setLogLevel(level)


def read_image(path) -> np.ndarray:
  """An image file as RGB uint8 (H, W, 3): gray is repeated, alpha dropped, 16-bit scaled."""
  path = _source(path)
  image = _decode(path)
  if image is None:
    raise DataError(f"{path}: cannot read image (corrupt or unsupported)")
  if image.dtype == np.uint16:
    image = (image.astype(np.float32) / 257).round().astype(np.uint8)
  if image.dtype != np.uint8:
    raise DataError(f"{path}: image has {image.dtype} pixels; expected 8 or 16 bits")
  if image.ndim == 2 or image.shape[2] == 1:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
  if image.shape[2] == 4:
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path) -> np.ndarray:
  """A mask file as uint8 (H, W); values are left to `jaxseg.data.masks.check_mask_values`."""
  path = _source(path)
  mask = _decode(path)
  if mask is None:
    raise DataError(f"{path}: cannot read mask (corrupt or unsupported)")
  if mask.ndim == 3:
    raise DataError(f"{path}: mask has {mask.shape[2]} channels; expected one 8-bit channel")
  if mask.dtype != np.uint8:
    raise DataError(f"{path}: mask has {mask.dtype} pixels; expected one 8-bit channel")
  return mask


def write_mask(path, mask: np.ndarray) -> None:
  """Write a uint8 (H, W) mask as a PNG file, raising `DataError` naming ``path`` on failure."""
  _write_png(path, mask, "mask")


def write_image(path, image: np.ndarray) -> None:
  """Write a uint8 RGB image as a PNG file, raising `DataError` naming ``path`` on failure."""
  _write_png(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), "image")


def _write_png(path, pixels: np.ndarray, what: str) -> None:
  path = Path(path)
  try:
    cv2.imencode(".png", pixels)[1].tofile(path)
  except OSError as error:
    raise DataError(f"{path}: cannot write {what}: {error.strerror or error}") from None
