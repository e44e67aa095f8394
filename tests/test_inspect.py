"""jaxseg.inspect: variable counts as docs/models.md's table gives them, FLOPs as the bench
measures."""

import re
from pathlib import Path

import cv2
import pytest

from jaxseg import inspect
from jaxseg.bench import steps as bench
from jaxseg.config import Config
from jaxseg.models import MODELS

MODELS_PAGE = Path(__file__).parent.parent / "docs" / "models.md"
# The page's parameter table: backbone, Keras's encoder variables, the port's, the U-Net's.
ROW = re.compile(r"^\| (\w+)[^|]*\|[^|]*\| ([\d,-]+) \| ([\d,]+) \|$")


def documented_counts() -> dict[str, tuple[int | None, int]]:
  counts = {}
  for line in MODELS_PAGE.read_text().splitlines():
    match = ROW.match(line)
    if match and match[1] in MODELS:
      encoder = None if match[2] == "-" else int(match[2].replace(",", ""))
      # The first unet row is the default depth's (the paper's).
      counts.setdefault(match[1], (encoder, int(match[3].replace(",", ""))))
  return counts


def test_the_models_page_lists_every_model():
  assert set(documented_counts()) == set(MODELS)


# The small ones: building DenseNet121 or EfficientNetB2, even abstractly, is slow on 2 cores.
@pytest.mark.parametrize("backbone", ["unet", "mobilenet", "vgg19"])
def test_variable_counts_equal_the_models_page(backbone):
  network = inspect.abstract_network(Config(backbone=backbone, unet_filters=64))
  encoder, total = documented_counts()[backbone]
  assert inspect.variable_count(network) == total
  if encoder is not None:
    assert inspect.variable_count(network.encoder) == encoder


TINY = Config(backbone="unet", unet_filters=4, image_size=32, batch_size=2,
              augment=bench.NO_AUGMENT)


def test_blocks_add_up_to_the_model(capsys):
  blocks = inspect.main(["--backbone", "unet", "--unet-filters", "4", "--image-size", "32"])
  names = [block.name for block in blocks]
  assert names == ["encoder /1", "encoder /2", "encoder /4", "encoder /8", "encoder /16",
                   "encoder /32", "centre", "decoder 1", "decoder 2", "decoder 3", "decoder 4",
                   "decoder 5", "head"]
  assert [block.output_shape for block in blocks[:7]] == [
    (32, 32, 4), (16, 16, 8), (8, 8, 16), (4, 4, 32), (2, 2, 64), (1, 1, 64), (1, 1, 64)]
  assert blocks[-1].output_shape == (32, 32, 1)
  network = inspect.abstract_network(TINY)
  assert sum(block.variables for block in blocks) == inspect.variable_count(network)
  assert all(block.gflops > 0 and block.activation_bytes > 0 for block in blocks)
  # A 3x3 conv of 4 to 4 channels at 32x32 is 2*9*4*4*32*32 FLOPs; stage 1 holds it.
  assert blocks[0].gflops * 1e9 > 2 * 9 * 4 * 4 * 32 * 32
  assert "head" in capsys.readouterr().out


def test_flops_equal_the_bench():
  row = inspect.model_row(TINY)
  images, masks = bench.random_batch(TINY.batch_size, TINY.image_size)
  measured = bench.jaxseg_program(TINY, images, masks).fields
  assert row["forward_gflop_per_image"] == measured["infer_gflop_per_image"]
  assert row["train_gflop_per_image"] == measured["train_gflop_per_image"]
  assert row["train_gflop_per_image"] > 2 * row["forward_gflop_per_image"]
  assert row["train_step_bytes"] == measured["train_step_bytes"] > 0


def test_png_draws_rows(tmp_path):
  rows = [{"backbone": name, "variables": 1e6 * (i + 1), "forward_gflop_per_image": i + 1.0,
           "train_gflop_per_image": 3.0 * (i + 1), "train_step_bytes": 2**30 * (i + 1),
           "compile_s": 10.0 + i} for i, name in enumerate(MODELS)]
  path = tmp_path / "models.png"
  inspect.draw_rows(rows, path, "test")
  assert cv2.imread(str(path)) is not None


def test_existing_png_is_refused_and_kept(tmp_path, capsys):
  path = tmp_path / "models.png"
  path.write_bytes(b"a user's file")
  with pytest.raises(SystemExit) as exit_info:
    inspect.main(["--backbone", "all", "--png", str(path)])
  assert exit_info.value.code == 2
  assert f"--png {path}: exists" in capsys.readouterr().err
  assert path.read_bytes() == b"a user's file"


@pytest.mark.parametrize("argv, message", [
  (["--backbone", "unet", "--png", "x.png"], "--backbone all"),
  (["--image-size", "16"], "--image-size"),
])
def test_bad_flags_are_one_line(argv, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    inspect.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0]
