"""No command writes over a file it reads or a file no jaxseg command wrote."""

import os
import resource
from pathlib import Path

import cv2
import numpy as np
import pytest

from jaxseg import predict
from jaxseg.errors import DataError
from jaxseg.outputs import MANIFEST, OutputFolder, write_atomically
from tests.support.commands import assert_one_line_error, run_command
from tests.support.images import png_header_only


def snapshot(folder: Path) -> dict:
  """Every file under ``folder`` and its bytes: unchanged means nothing was written."""
  return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def smears(folder: Path, names) -> Path:
  """Gray 32x32 images with a dark disk: something for Otsu and the models to segment."""
  folder.mkdir(parents=True, exist_ok=True)
  image = np.full((32, 32, 3), 220, np.uint8)
  cv2.circle(image, (16, 16), 8, (90, 90, 90), -1)
  for name in names:
    cv2.imwrite(str(folder / name), image)
  return folder


# The helper.

def test_a_write_that_fails_leaves_the_file_as_it_was(tmp_path):
  """A write cut short (here files capped at 1 kB, as a full disk would cut it) leaves the file
  it was to replace and no staging file; ``replace=False`` never replaces a file."""
  path = tmp_path / "out.bin"
  write_atomically(path, b"before")
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # Python ignores SIGXFSZ
  try:
    with pytest.raises(OSError, match="File too large"):
      write_atomically(path, b"x" * 4096)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  with pytest.raises(FileExistsError):
    write_atomically(path, b"after", replace=False)
  assert path.read_bytes() == b"before" and os.listdir(tmp_path) == ["out.bin"]


def test_outputs_are_listed_before_they_are_written_and_may_be_rewritten(tmp_path):
  out = OutputFolder(tmp_path / "out", ["a.png", "b.png"])
  assert not (tmp_path / "out").exists()  # nothing is made before the first output
  out.path("a.png").write_text("first run")
  assert (tmp_path / "out" / MANIFEST).read_text() == "a.png\n"
  # A later run may replace what the first wrote, and a file the first was interrupted before.
  again = OutputFolder(tmp_path / "out", ["a.png", "b.png"])
  again.path("a.png").write_text("second run")
  again.path("b.png")
  assert (tmp_path / "out" / MANIFEST).read_text().splitlines() == ["a.png", "b.png"]
  with pytest.raises(ValueError):
    again.path("c.png")  # not checked, so not writable


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_output_that_is_an_input_is_refused(tmp_path, alias):
  (tmp_path / "in").mkdir()
  source = tmp_path / "in" / "x_mask.png"
  source.write_text("ground truth")
  out = tmp_path / "out"
  out.mkdir()
  (out / MANIFEST).write_text("x_mask.png\n")  # even a name jaxseg wrote once
  if alias == "same":
    out = tmp_path / "in"
  elif alias == "symlink":
    (out / "x_mask.png").symlink_to(source)
  else:
    os.link(source, out / "x_mask.png")
  expected = (f"{out}: the output folder holds the input {source}" if alias == "same" else
              f"x_mask.png: would overwrite the input {source}")
  with pytest.raises(DataError, match=expected):
    OutputFolder(out, ["x_mask.png"], inputs=[source])
  assert source.read_text() == "ground truth"


@pytest.mark.parametrize("alias", ["same", "symlink"])
def test_output_folder_that_is_an_input_folder_is_refused(tmp_path, alias):
  images = smears(tmp_path / "images", ["a.png"])
  out = images
  if alias == "symlink":
    out = tmp_path / "link"
    out.symlink_to(images)
  with pytest.raises(DataError, match=f"{out}: the output folder is the input folder {images}"):
    OutputFolder(out, ["b.png"], input_folders=[images])


def test_existing_file_jaxseg_did_not_write_is_refused(tmp_path):
  (tmp_path / "a.png").write_text("the user's")
  (tmp_path / MANIFEST).write_text("b.png\n")
  with pytest.raises(DataError, match="a.png: exists and no jaxseg command wrote it"):
    OutputFolder(tmp_path, ["b.png", "a.png"])
  (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")  # would be written through
  with pytest.raises(DataError, match="link.png: is a link"):
    OutputFolder(tmp_path, ["link.png"])
  assert (tmp_path / "a.png").read_text() == "the user's"


# make_masks.

def one_line_error(result) -> str:
  assert_one_line_error(result, "")
  return result.stderr.strip()


@pytest.mark.parametrize("out", ["images", "masks"])
def test_make_masks_never_writes_over_its_inputs(tmp_path, out):
  images = smears(tmp_path / "images", ["a.png", "b.png"])
  masks = tmp_path / "masks"
  masks.mkdir()
  for name in ("a.png", "b.png"):
    cv2.imwrite(str(masks / name), np.zeros((32, 32), np.uint8))
  before = snapshot(tmp_path)
  error = one_line_error(run_command("make_masks", images, tmp_path / out, "--truth", masks))
  assert f"{tmp_path / out}: the output folder is the input folder" in error
  assert snapshot(tmp_path) == before


def test_make_masks_runs_again_into_its_own_folder_only(tmp_path):
  images = smears(tmp_path / "images", ["a.png", "b.png"])
  assert run_command("make_masks", images, tmp_path / "otsu").returncode == 0
  assert run_command("make_masks", images, tmp_path / "otsu").returncode == 0  # its own masks: replaced
  (tmp_path / "hand").mkdir()
  (tmp_path / "hand" / "b.png").write_text("drawn by hand")
  error = one_line_error(run_command("make_masks", images, tmp_path / "hand"))
  assert "hand/b.png: exists and no jaxseg command wrote it" in error
  assert sorted(p.name for p in (tmp_path / "hand").iterdir()) == ["b.png"]


def test_make_masks_huge_image_is_one_line_before_any_output(tmp_path):
  images = smears(tmp_path / "images", ["a.png"])
  (images / "b.png").write_bytes(png_header_only(12000, 10000))
  error = one_line_error(run_command("make_masks", images, tmp_path / "out"))
  assert "b.png: image is 12000x10000, more than 100,000,000 pixels" in error
  assert not (tmp_path / "out").exists()  # every header is read before any output


# predict: the outputs and the inputs are checked before the models load, so no run is needed.

def predict_error(argv, capsys) -> str:
  with pytest.raises(SystemExit) as exit_info:
    predict.main(argv)
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1, lines
  return lines[0]


def test_predict_refuses_an_input_folder_as_out(tmp_path, capsys):
  images = smears(tmp_path / "in", ["x.png", "x_mask.png"])
  before = snapshot(tmp_path)
  error = predict_error(["--run", str(tmp_path), str(images), "--out", str(images)], capsys)
  assert "the output folder is the input folder" in error
  # Named one by one, the inputs are still read from that folder: outputs there would mix
  # with them.
  error = predict_error(["--run", str(tmp_path), str(images / "x.png"), "--out", str(images)],
                        capsys)
  assert f"the output folder holds the input {images / 'x.png'}" in error
  assert snapshot(tmp_path) == before


def test_predict_checks_every_header_before_writing(tmp_path, capsys):
  images = smears(tmp_path / "in", ["a.png", "c.png"])
  (images / "b.png").write_text("not an image")
  error = predict_error(["--run", str(tmp_path), str(images), "--out", str(tmp_path / "out")],
                        capsys)
  assert "b.png: cannot read image" in error
  assert not (tmp_path / "out").exists()


def test_predict_names_an_input_that_links_to_nothing(tmp_path, capsys):
  (tmp_path / "gone.png").symlink_to(tmp_path / "moved.png")
  error = predict_error(["--run", str(tmp_path), str(tmp_path / "gone.png"), "--out",
                         str(tmp_path / "out")], capsys)
  assert "gone.png: a link to" in error and "which does not exist" in error
