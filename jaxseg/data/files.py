"""Image folders and image/mask files, read with errors that name the file.

An image or mask is a file path, or `Encoded` bytes held in memory (a TFDS record's PNG):
both decode through the same functions, so every source gives the same pixels and errors.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from jaxseg.data.masks import colour_classes
from jaxseg.errors import DataError, write_failure
from jaxseg.outputs import write_atomically

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Larger images are refused from their header, before any decoding: 10000x10000 and more.
MAX_IMAGE_PIXELS = 100_000_000
# Formats whose pixels are approximations: refused for masks ("MPO" is a JPEG with more frames).
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})
# Pillow reads headers only. Our pixel limit, below the one at which Pillow raises, replaces the
# warning it gives above 89 megapixels (thread-safe, unlike catching it around each read).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
ORIENTATION = 0x0112  # the EXIF tag: how a viewer turns the stored pixels
# Each orientation's turn or flip (Pillow's exif_transpose), on (H, W, ...) arrays.
_TURNS = {
  2: lambda a: a[:, ::-1],
  3: lambda a: a[::-1, ::-1],
  4: lambda a: a[::-1],
  5: lambda a: a.swapaxes(0, 1),
  6: lambda a: np.rot90(a, -1),
  7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
  8: lambda a: np.rot90(a, 1),
}
# Files that operating systems leave in image folders; lower case.
STRAY_FILES = frozenset({"thumbs.db", ".ds_store", "desktop.ini"})

log = logging.getLogger(__name__)


def _is_stray(path: Path) -> bool:
  # macOS writes "._name" resource forks beside files on foreign disks, image suffix and all.
  return path.name.lower() in STRAY_FILES or path.name.startswith("._")


def list_images(folder) -> list[Path]:
  """The image files in ``folder``, sorted by name; other files are skipped with a warning.

  Raises `DataError` for a missing folder, one without images, an image that is a link to
  nothing (a moved original: skipping it would change the data set unseen), or two images with
  one name (their masks would share a file).
  """
  folder = Path(folder)
  if not folder.is_dir():
    raise DataError(f"{folder}: no such folder")
  images = []
  for path in sorted(folder.iterdir()):
    if not (path.is_file() or path.is_symlink()):
      continue  # folders
    if _is_stray(path):
      log.warning("skipping %s: system file, not an image", path)
    elif path.suffix.lower() not in IMAGE_SUFFIXES:
      log.warning("skipping %s: not an image (%s)", path, " ".join(IMAGE_SUFFIXES))
    elif not path.exists():
      raise DataError(f"{path}: {why_missing(path)}")
    elif path.is_file():
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


def _open_header(source: Path | Encoded, what: str, data: bytes | None = None) -> Image.Image:
  """``source`` opened by Pillow, which reads the header only; checked against the pixel limit.

  Pillow names the format and the mode (palette or not) and gives the size before any pixel is
  decoded, so a header that declares a huge image is refused here instead of in OpenCV's
  allocation. Close the result (it may hold the file open).
  """
  if data is None and isinstance(source, Encoded):
    data = source.data
  try:
    image = Image.open(io.BytesIO(data) if data is not None else source)
  except Image.DecompressionBombError:  # Pillow's own limit, above ours
    raise DataError(f"{source}: {what} is larger than {MAX_IMAGE_PIXELS:,} pixels") from None
  except FileNotFoundError:
    raise DataError(f"{source}: {why_missing(source)}") from None
  except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
    if isinstance(error, OSError) and error.strerror:  # unreadable, not malformed
      raise DataError(f"{source}: {error.strerror}") from None
    raise DataError(f"{source}: cannot read {what} (not an image file, or its header is "
                    "corrupt)") from None
  width, height = image.size
  if width * height > MAX_IMAGE_PIXELS:
    image.close()
    raise DataError(f"{source}: {what} is {width}x{height}, more than {MAX_IMAGE_PIXELS:,} pixels")
  return image


def why_missing(path: Path) -> str:
  """Why ``path`` is not there: a link to nowhere, or nothing at all."""
  if path.is_symlink():
    return f"a link to {os.readlink(path)}, which does not exist"
  return "no such file"


def check_image_file(path) -> None:
  """Raise `DataError` unless ``path`` starts like an image within the pixel limit (no decoding)."""
  _open_header(Path(path), "image").close()


def _read(source: Path | Encoded, what: str) -> tuple[bytes, Image.Image]:
  """The bytes of ``source`` and its header (see `_open_header`)."""
  if isinstance(source, Encoded):
    data = source.data
  else:
    try:
      data = source.read_bytes()
    except FileNotFoundError:
      raise DataError(f"{source}: {why_missing(source)}") from None
    except OSError as error:
      raise DataError(f"{source}: {error.strerror or error}") from None
  return data, _open_header(source, what, data)


def _orientation(source, header: Image.Image) -> int:
  """The EXIF orientation in ``header``, 1 (as stored) where it has none, read for any format.

  Ours rather than OpenCV's, which depends on the OpenCV version and on the format (and would
  not reach the palette masks that Pillow reads).
  """
  try:
    if header.format == "PNG":  # Pillow would decode a PNG to look for EXIF after its pixels
      exif = Image.Exif()
      if "exif" in header.info:
        exif.load(header.info["exif"])
    else:
      exif = header.getexif()
    orientation = exif.get(ORIENTATION, 1)
  except (OSError, SyntaxError, ValueError, EOFError, struct.error):
    raise DataError(f"{source}: cannot read its EXIF data (corrupt)") from None
  return orientation if orientation in _TURNS else 1


def _turned(pixels: np.ndarray, orientation: int) -> np.ndarray:
  """``pixels`` turned as a viewer shows them."""
  if orientation == 1:
    return pixels
  return np.ascontiguousarray(_TURNS[orientation](pixels))


def _decode(source: Path | Encoded, data: bytes, what: str) -> np.ndarray:
  """Pixels of ``data`` as stored, in OpenCV's channel order, depth kept, alpha dropped.

  OpenCV expands palettes to colour: for indices, use Pillow.
  """
  # OpenCV would also log a warning of its own for a truncated file; the DataError suffices.
  level = cv2.utils.logging.getLogLevel()
  cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
  try:
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
  except cv2.error:
    pixels = None
  finally:
    cv2.utils.logging.setLogLevel(level)
  if pixels is None:
    raise DataError(f"{source}: cannot read {what} (corrupt or unsupported)")
  return pixels


def read_image(path) -> np.ndarray:
  """An image file as RGB uint8 (H, W, 3), as a viewer shows it.

  EXIF orientation is applied; gray is repeated, alpha dropped; 16-bit pixels are scaled from
  the full 16-bit range, and refused where they all stay below 16384, a quarter of it: the 10
  to 14-bit data of a camera, which that scaling would darken 4 to 64 times (nothing in the
  file says its real depth).
  """
  source = _source(path)
  data, header = _read(source, "image")
  with header:
    orientation = _orientation(source, header)
  image = _turned(_decode(source, data, "image"), orientation)
  if image.dtype == np.uint16:
    image = _eight_bits(image, source)
  if image.dtype != np.uint8:
    raise DataError(f"{source}: image has {image.dtype} pixels; expected 8 or 16 bits")
  if image.ndim == 2:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _eight_bits(image: np.ndarray, source) -> np.ndarray:
  top = int(image.max(initial=0))
  if top < 1 << 14:
    raise DataError(
      f"{source}: 16-bit image whose values reach only {top} of 65535: probably camera data of "
      "fewer bits, which would read almost black; convert it to 8 bits over its real range"
    )
  return (image.astype(np.float32) / 257).round().astype(np.uint8)


def read_mask(path, colours: dict | None = None) -> np.ndarray:
  """A mask file as uint8 (H, W), as a viewer shows it; palette images give their indices.

  EXIF orientation is applied, as to images. Lossy formats (JPEG) are refused: they blur class
  edges into values between the classes. Values are left to `jaxseg.data.masks.check_mask_values`.
  With ``colours`` ({(r, g, b): class}, `jaxseg.data.masks.parse_mask_colors`) the mask is read
  as the colours a viewer shows (a palette's, gray as equal channels) and each pixel given its
  colour's class; a colour that ``colours`` does not name is a `DataError`.
  """
  source = _source(path)
  data, header = _read(source, "mask")
  with header:
    if header.format in LOSSY_FORMATS:
      raise DataError(f"{source}: mask is {header.format} data, a lossy format that blurs class "
                      "edges; save masks as PNG")
    orientation = _orientation(source, header)
    if header.mode in ("P", "PA"):
      if colours is None:
        return _turned(_palette_indices(source, header), orientation)
      return colour_classes(_turned(_palette_colours(source, header), orientation), colours,
                            source)
  mask = _turned(_decode(source, data, "mask"), orientation)
  if mask.dtype != np.uint8:
    raise DataError(f"{source}: mask has {mask.dtype} pixels; expected 8 bits")
  if colours is not None:
    rgb = cv2.cvtColor(mask, cv2.COLOR_GRAY2RGB if mask.ndim == 2 else cv2.COLOR_BGR2RGB)
    return colour_classes(rgb, colours, source)
  if mask.ndim == 3:
    if not (mask == mask[..., :1]).all():
      raise DataError(f"{source}: mask is a colour image ({mask.shape[2]} channels that differ); "
                      "a mask is one channel of class values 0/1/2, or 0/255 (gray or palette "
                      "PNG), or colours that --mask-colors names")
    mask = mask[..., 0]  # gray stored as colour: every channel the same
  return mask


def _palette_indices(source, header: Image.Image) -> np.ndarray:
  try:
    indices = np.asarray(header)
  except (OSError, SyntaxError, ValueError, EOFError, struct.error):
    raise DataError(f"{source}: cannot read mask (corrupt or unsupported)") from None
  return indices if indices.ndim == 2 else indices[..., 0]


def _palette_colours(source, header: Image.Image) -> np.ndarray:
  try:
    return np.asarray(header.convert("RGB"))
  except (OSError, SyntaxError, ValueError, EOFError, struct.error):
    raise DataError(f"{source}: cannot read mask (corrupt or unsupported)") from None


def write_mask(path, mask: np.ndarray) -> None:
  """Write a uint8 (H, W) mask as a PNG file, raising `DataError` naming ``path`` on failure."""
  _write_png(path, mask, "mask")


def write_image(path, image: np.ndarray) -> None:
  """Write a uint8 RGB image as a PNG file, raising `DataError` naming ``path`` on failure."""
  _write_png(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), "image")


def _write_png(path, pixels: np.ndarray, what: str) -> None:
  try:
    write_atomically(Path(path), cv2.imencode(".png", pixels)[1].tobytes())
  except OSError as error:
    raise DataError(f"{path}: cannot write {what}: {write_failure(path, error)}") from None
