"""Image and mask files read as a viewer shows them, or refused in one line naming the file."""

import os

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from jaxseg.config import Config
from jaxseg.data import files
from jaxseg.data.folder import split_dataset
from jaxseg.data.masks import check_mask_values, parse_mask_colors
from jaxseg.data.synthetic import write_synthetic
from jaxseg.datasets import data_splits
from jaxseg.errors import DataError, JaxsegError
from tests.support.helpers import write_folder
from tests.support.images import png_header_only

ORIENTATION = 0x0112  # the EXIF tag


def with_orientation(picture: Image.Image, path, orientation: int) -> None:
  exif = Image.Exif()
  exif[ORIENTATION] = orientation
  picture.save(path, exif=exif.tobytes(), **({"quality": 95} if path.suffix == ".jpg" else {}))


def as_viewed(path) -> np.ndarray:
  """The pixels a viewer shows: Pillow's decoding with the EXIF orientation applied."""
  return np.asarray(ImageOps.exif_transpose(Image.open(path)))


def blocks(height=12, width=20) -> np.ndarray:
  """0/1/2 blocks, different in every quarter: any turn or flip changes them."""
  mask = np.zeros((height, width), np.uint8)
  mask[: height // 2, : width // 4] = 1
  mask[height // 2:, width // 2:] = 2
  return mask


def palette_mask() -> Image.Image:
  mask = Image.fromarray(blocks(), "P")
  mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])  # black, red, green: colour in a viewer
  return mask


# Orientation, palettes, lossy masks.

@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_image_and_png_mask_are_turned_alike(tmp_path, orientation):
  """An image is turned by its EXIF orientation like its mask, or they would not align."""
  picture = blocks() * 120  # 0/120/240: JPEG's error stays far from the 60 threshold below
  with_orientation(Image.fromarray(np.repeat(picture[..., None], 3, -1)), tmp_path / "i.jpg",
                   orientation)
  with_orientation(Image.fromarray(blocks()), tmp_path / "m.png", orientation)
  with_orientation(palette_mask(), tmp_path / "p.png", orientation)

  image, mask = files.read_image(tmp_path / "i.jpg"), files.read_mask(tmp_path / "m.png")
  viewed = as_viewed(tmp_path / "m.png")
  assert (orientation > 4) == (viewed.shape != blocks().shape)  # 5 to 8 swap the sides
  np.testing.assert_array_equal(mask, viewed)
  np.testing.assert_array_equal(files.read_mask(tmp_path / "p.png"), viewed)
  np.testing.assert_array_equal(image[..., 1] // 60, (as_viewed(tmp_path / "i.jpg")[..., 1] // 60))
  np.testing.assert_array_equal((image[..., 1].astype(int) + 60) // 120, mask)


def test_palette_mask_gives_its_indices(tmp_path):
  palette_mask().save(tmp_path / "palette.png")
  read = files.read_mask(tmp_path / "palette.png")
  np.testing.assert_array_equal(read, blocks())
  check_mask_values(read, "palette.png")


def test_mask_of_jpeg_data_is_refused_under_any_name(tmp_path):
  jpeg = cv2.imencode(".jpg", blocks() * 100)[1].tobytes()
  (tmp_path / "mask.png").write_bytes(jpeg)
  with pytest.raises(DataError, match=r"mask.png: mask is JPEG data, a lossy format"):
    files.read_mask(tmp_path / "mask.png")
  with pytest.raises(DataError, match=r"^record 3: mask is JPEG data"):
    files.read_mask(files.Encoded("record 3", jpeg))
  (tmp_path / "image.png").write_bytes(jpeg)
  assert files.read_image(tmp_path / "image.png").shape == (12, 20, 3)  # images may be JPEG


def test_colour_mask_is_refused_and_gray_stored_as_colour_is_read(tmp_path):
  colour = np.zeros((4, 4, 3), np.uint8)
  colour[..., 2] = 1
  cv2.imwrite(str(tmp_path / "rgb.png"), colour)
  with pytest.raises(DataError, match="rgb.png: mask is a colour image"):
    files.read_mask(tmp_path / "rgb.png")
  gray = np.repeat(blocks()[..., None], 3, -1)
  cv2.imwrite(str(tmp_path / "gray.png"), gray)
  np.testing.assert_array_equal(files.read_mask(tmp_path / "gray.png"), blocks())


COLOURS = parse_mask_colors("0,0,0:0 255,0,0:1 0,0,255:2")  # black, red, blue (RGB)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".palette.png"])
def test_colour_coded_mask_reads_as_classes(tmp_path, suffix):
  rgb = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)[blocks()]
  path = tmp_path / f"mask{suffix}"
  if suffix == ".palette.png":
    picture = Image.fromarray(2 - blocks(), "P")  # indices other than the classes
    picture.putpalette([0, 0, 255, 255, 0, 0, 0, 0, 0])
    picture.save(path)
  else:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
  np.testing.assert_array_equal(files.read_mask(path, COLOURS), blocks())


def test_unknown_mask_colour_is_one_line_naming_file_colour_and_pixels(tmp_path):
  rgb = np.zeros((12, 20, 3), np.uint8)
  rgb[:3, :5] = (255, 0, 0)
  rgb[5:7, :] = (250, 3, 0)  # 40 pixels of a colour the mapping does not name
  rgb[11, 0] = (1, 2, 3)
  cv2.imwrite(str(tmp_path / "m.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
  with pytest.raises(DataError) as error:
    files.read_mask(tmp_path / "m.png", COLOURS)
  assert str(error.value) == (f"{tmp_path / 'm.png'}: colour 250,3,0 (40 pixels) is not in "
                              "--mask-colors; 1 more unknown colour (1 pixels)")
  cv2.imwrite(str(tmp_path / "m.jpg"), rgb)
  with pytest.raises(DataError, match="m.jpg: mask is JPEG data"):  # colours not exact
    files.read_mask(tmp_path / "m.jpg", COLOURS)


@pytest.mark.parametrize("text, expected", [
  ("0,0,0:0 255,0,0:3", "'255,0,0:3' is not R,G,B:CLASS"),
  ("0,0:0", "'0,0:0' is not R,G,B:CLASS"),
  ("0,0,0:0 0,0,0:1", "colour 0,0,0 is named twice"),
  ("", "no colours"),
])
def test_bad_mask_colors_setting_is_named(text, expected):
  with pytest.raises(JaxsegError, match=f"--mask-colors '{text}': {expected}"):
    Config(data="folder", mask_colors=text).validate()


def test_mask_colors_are_for_a_folder():
  with pytest.raises(JaxsegError, match="--mask-colors .*--data synthetic holds class masks"):
    Config(mask_colors="0,0,0:0").validate()


# Depth, size, corrupt files.

def test_read_image_converts_gray_and_16_bit(tmp_path):
  gray = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
  cv2.imwrite(str(tmp_path / "gray.png"), gray)
  cv2.imwrite(str(tmp_path / "deep.png"), gray.astype(np.uint16) * 257)
  cv2.imwrite(str(tmp_path / "deep.tif"), np.repeat(gray[..., None], 3, -1).astype(np.uint16) * 257)
  for name in ("gray.png", "deep.png", "deep.tif"):
    image = files.read_image(tmp_path / name)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 1], gray)


def test_16_bit_image_of_fewer_bits_is_refused_not_darkened(tmp_path):
  twelve_bits = np.linspace(0, 4095, 64).astype(np.uint16).reshape(8, 8)
  cv2.imwrite(str(tmp_path / "camera.png"), twelve_bits)
  with pytest.raises(DataError, match="camera.png: 16-bit image whose values reach only 4095"):
    files.read_image(tmp_path / "camera.png")


def test_read_image_is_rgb(tmp_path):
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[..., 0] = 200  # red
  cv2.imwrite(str(tmp_path / "red.bmp"), rgb[..., ::-1])
  np.testing.assert_array_equal(files.read_image(tmp_path / "red.bmp"), rgb)


@pytest.mark.parametrize("size, expected", [
  ((12000, 10000), "is 12000x10000, more than"),
  ((50000, 50000), "is larger than"),  # refused by Pillow's own limit first
])
def test_huge_header_is_refused_before_decoding(tmp_path, size, expected):
  (tmp_path / "huge.png").write_bytes(png_header_only(*size))
  for read in (files.read_image, files.read_mask, files.check_image_file):
    with pytest.raises(DataError, match=f"huge.png: (image|mask) {expected} 100,000,000 pixels"):
      read(tmp_path / "huge.png")


def test_header_check_passes_a_file_whose_pixels_are_cut_short(tmp_path):
  """Headers are all that `check_image_file` reads; decoding finds the rest, naming the file."""
  (tmp_path / "cut.png").write_bytes(png_header_only(64, 64))
  files.check_image_file(tmp_path / "cut.png")
  with pytest.raises(DataError, match="cut.png: cannot read image"):
    files.read_image(tmp_path / "cut.png")
  (tmp_path / "text.png").write_text("not an image")
  with pytest.raises(DataError, match="text.png: cannot read image .not an image file"):
    files.check_image_file(tmp_path / "text.png")


# Folders.

def test_list_images_rejects_duplicate_names(tmp_path):
  for name in ("a.bmp", "a.png"):
    (tmp_path / name).write_bytes(b"")
  with pytest.raises(DataError, match="same name"):
    files.list_images(tmp_path)


def test_image_that_links_to_nothing_is_named(tmp_path, caplog):
  cv2.imwrite(str(tmp_path / "a.png"), blocks())
  (tmp_path / "notes.txt").symlink_to(tmp_path / "gone.txt")
  assert files.list_images(tmp_path) == [tmp_path / "a.png"]
  assert "notes.txt: not an image" in caplog.text
  (tmp_path / "b.png").symlink_to(tmp_path / "moved.png")
  with pytest.raises(DataError, match=r"b.png: a link to .*moved.png, which does not exist"):
    files.list_images(tmp_path)


@pytest.mark.parametrize("layout", ["train_only", "test_only", "no_images", "no_masks"])
def test_data_folder_says_what_is_missing(tmp_path, layout):
  root = tmp_path / "data"
  if layout in ("train_only", "test_only"):
    write_folder(root / layout.removesuffix("_only"), 3, size=32)
  else:
    write_folder(root, 3, size=32)
    (root / "masks" if layout == "no_masks" else root / "images").rename(root / "elsewhere")
  expected = {"train_only": "has train/ but no test/", "test_only": "has test/ but no train/",
              "no_images": "no images/ folder", "no_masks": "no masks/ folder"}[layout]
  with pytest.raises(DataError, match=f"{root}: {expected}"):
    split_dataset(root, test_fraction=0.2, val_fraction=0.2, seed=0)


def test_mask_that_links_to_nothing_is_named(tmp_path):
  root = write_folder(tmp_path / "data", 3, size=32)
  (root / "masks" / "img_001.png").unlink()
  (root / "masks" / "img_001.png").symlink_to(tmp_path / "gone.png")
  with pytest.raises(DataError, match="img_001.bmp: no mask .* is a link to .*gone.png"):
    split_dataset(root, test_fraction=0.2, val_fraction=0.2, seed=0)


def test_unwritable_synthetic_cache_is_one_error(tmp_path):
  (tmp_path / "file").write_text("")  # a cache "folder" under a file cannot be made
  with pytest.raises(DataError, match="file/cache: cannot write the synthetic data set there"):
    write_synthetic(tmp_path / "file" / "cache" / "set", 2, size=32, progress=False)


def test_written_png_replaces_a_link_and_never_writes_through_it(tmp_path):
  (tmp_path / "theirs.png").write_bytes(b"someone else's")
  os.link(tmp_path / "theirs.png", tmp_path / "hard.png")
  (tmp_path / "soft.png").symlink_to(tmp_path / "theirs.png")
  for name in ("hard.png", "soft.png"):
    files.write_mask(tmp_path / name, blocks())
    np.testing.assert_array_equal(files.read_mask(tmp_path / name), blocks())
  assert (tmp_path / "theirs.png").read_bytes() == b"someone else's"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.png", "soft.png", "theirs.png"]


def test_split_seed_fixes_the_split_that_seed_would_change(tmp_path):
  root = write_folder(tmp_path / "data", 20, size=32)

  def names(**seeds):
    config = Config(data=str(root), **seeds)
    splits = data_splits(config)[1]
    return [sorted(e.name for e in split) for split in (splits.train, splits.val, splits.test)]

  assert names(seed=0) != names(seed=1)
  assert names(seed=1, split_seed=0) == names(seed=0) == names(seed=2, split_seed=0)
