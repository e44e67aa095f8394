"""Small data sets in the folder format, written by the tests; tiny models placed for steps."""

import json
from pathlib import Path

import cv2

from jaxseg import engine, train
from jaxseg.config import Config
from jaxseg.data.enhance import Enhance
from jaxseg.data.pipeline import Loader
from jaxseg.data.synthetic import generate_sample
from jaxseg.platform import resolve_kernels


def write_folder(root: Path, count: int, *, size: int = 96, seed: int = 0) -> Path:
  """``count`` synthetic images (BMP) and class masks (PNG) under root/images, root/masks."""
  (root / "images").mkdir(parents=True)
  (root / "masks").mkdir()
  for index in range(count):
    image, mask = generate_sample(seed, index, size)
    cv2.imwrite(str(root / "images" / f"img_{index:03d}.bmp"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "masks" / f"img_{index:03d}.png"), mask)
  return root


def train_summary(data: Path, workdir: Path, *flags: str) -> dict:
  """Train through the command line on ``data`` into ``workdir``; the run's summary.json."""
  train.main(["--data", str(data), "--workdir", str(workdir), *flags])
  return json.loads((workdir / "summary.json").read_text())


def tiny_model(**changes):
  """A 4-wide plain U-Net for 16x16 batches of 2 (``changes`` override): its graphs, jitted
  steps, and initial state placed on the mesh."""
  config = Config(**{"unet_filters": 4, "image_size": 16, "batch_size": 2, "weights": "none",
                     **changes})
  model, state = engine.build(config, resolve_kernels(config.kernels))
  steps = engine.Steps(model, config.augment, config.batch_size)
  return model, steps, steps.place(state)


def loader(examples, kind, batch_size=3, seed=0):
  """A loader of 32x32 nuclei batches over ``examples``."""
  return Loader(examples, image_size=32, target="nuclei", enhancement=Enhance(),
                batch_size=batch_size, seed=seed, kind=kind)
