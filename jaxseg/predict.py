"""Segment images of any size with trained runs: ``python -m jaxseg.predict --run RUN IMAGES... --out DIR``.

Two ways to bring an image to a model:

- resized (default, the paper's way): the whole image is resized to the model's input size and
  prepared as in training; the predicted probabilities are resized back (bilinear).
- ``--tiled``: the image is rescaled to the scale the model was trained at (its input size over
  the size of its training images), covered by tiles of the input size overlapping by half, and
  the tiles' probabilities blended under a smooth window; large images keep their detail.

Written per image: DIR/<stem>_mask.png in the folder format's classes (a cytoplasm run marks
cells 1, a nuclei run nuclei 2; a 3-class run, ``--target cell``, each pixel's most probable
class; a cytoplasm run with --nuclei-run both, nuclei over their cells), <stem>_overlay.png and
<stem>_segmented.png. ``--measure`` (a 3-class run, or two runs) adds <stem>_cells.csv and,
one row per image, measurements.csv (see `jaxseg.measure`). Nothing is written over an input or
a file that no jaxseg command wrote (see `jaxseg.outputs`); every input's header is checked
first.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from jaxseg import plots, tiling
from jaxseg.cli import ArgumentParser, command
from jaxseg.data.files import (
  check_image_file,
  check_unique_names,
  list_images,
  read_image,
  why_missing,
  write_image,
  write_mask,
)
from jaxseg.data.masks import CELL, CLASS_NAMES, CYTOPLASM, NUCLEUS
from jaxseg.data.pipeline import prepare_image, rescaled_size
from jaxseg.engine import predicted_mask
from jaxseg.errors import DataError, JaxsegError
from jaxseg.inference import TrainedModel
from jaxseg.measure import (
  NC_THRESHOLD,
  Cell,
  ImageSummary,
  measure_cells,
  summarize,
  write_csv,
)
from jaxseg.outputs import OutputFolder
from jaxseg.run_folder import RunFolder

# The mask value of each target; nuclei are written last, over the cells they lie in.
TARGET_CLASSES = {"cytoplasm": CYTOPLASM, "nuclei": NUCLEUS}


class Segmenter:
  """A trained run's probabilities for images of any size: of its target, or of each class of
  a 3-class run."""

  def __init__(self, trained: TrainedModel):
    self.trained = trained
    self.config = trained.config

  def probabilities(self, images: list[np.ndarray], tiled: bool) -> list[np.ndarray]:
    """Probabilities, float32, of RGB images, each at its own size: (H, W) of a binary run's
    target, (H, W, 3) of a 3-class run's classes. A run trained on crops at a scale
    (``--scale``) always predicts by tiles at that scale."""
    if tiled or self.config.scale:
      return self._tiled(images)
    size = (self.config.image_size,) * 2
    batch = np.stack([prepare_image(image, size, self.config.enhance) for image in images])
    return [_resize(p, image.shape[:2]) for p, image in
            zip(self.trained.predict(batch), images)]

  def _tiled(self, images: list[np.ndarray]) -> list[np.ndarray]:
    factors = (self.config.scale,) * 2
    if not self.config.scale:  # the scale the training images were resized by
      source_size = self.trained.source_size
      if source_size is None:
        raise JaxsegError(f"{self.trained.path}: config.json has no source_size; --tiled "
                          "needs it")
      factors = tuple(self.config.image_size / side for side in source_size)
    scaled = [prepare_image(image, rescaled_size(image.shape, factors), self.config.enhance)
              for image in images]  # each at the training scale
    return [_resize(probabilities, image.shape[:2]) for probabilities, image in
            zip(tiling.predict_tiled(self.trained.predict, scaled, self.config.window), images)]


def _resize(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  return cv2.resize(probabilities, shape[::-1], interpolation=cv2.INTER_LINEAR)


def class_mask(probabilities: dict[str, np.ndarray], threshold: float) -> np.ndarray:
  """The uint8 class mask of each target's probabilities above ``threshold``, or of a 3-class
  run's most probable class."""
  if CELL in probabilities:
    return predicted_mask(probabilities[CELL], len(CLASS_NAMES))
  mask = np.zeros(next(iter(probabilities.values())).shape, np.uint8)
  for target, value in TARGET_CLASSES.items():
    if target in probabilities:
      mask[probabilities[target] > threshold] = value
  return mask


def input_images(inputs: list[Path]) -> list[Path]:
  """Image files of ``inputs`` (files, or folders of images), no two with one name.

  Every file's header is checked here (format, pixel limit), which is quick: a bad file stops
  the command before anything is written, not halfway through.
  """
  paths = []
  for path in inputs:
    if path.is_dir():
      paths += list_images(path)
    elif path.is_file():
      paths.append(path)
    elif path.is_symlink():
      raise DataError(f"{path}: {why_missing(path)}")
    else:
      raise DataError(f"{path}: no such file or folder")
  check_unique_names(paths, "their outputs would collide")
  for path in paths:
    check_image_file(path)
  return paths


def output_names(paths: list[Path], measure: bool) -> list[str]:
  """The files `predict` writes for ``paths``."""
  kinds = ["mask.png", "overlay.png", "segmented.png"] + (["cells.csv"] if measure else [])
  return [f"{path.stem}_{kind}" for path in paths for kind in kinds] + (
    ["measurements.csv"] if measure else [])


def read_chunks(paths: list[Path], size: int):
  """(path, image) lists of up to ``size``; a file whose pixels turn out corrupt (its header
  was checked) raises after the images before it."""
  chunk = []
  for path in paths:
    try:
      chunk.append((path, read_image(path)))
    except DataError:
      if chunk:
        yield chunk  # the images read so far are still segmented and written
      raise
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def predict(models: dict[str, Segmenter], paths: list[Path], out: OutputFolder, *,
            tiled: bool, threshold: float, measure: bool,
            nc_threshold: float) -> list[ImageSummary]:
  """Segment ``paths`` with one model per target, writing each image's files into ``out``
  (checked for `output_names`)."""
  summaries = []
  three_class = CELL in models or len(models) > 1
  chunk_size = max(model.config.batch_size for model in models.values())
  with tqdm(total=len(paths), desc="predicting", unit="img") as bar:
    for chunk in read_chunks(paths, chunk_size):
      images = [image for _, image in chunk]
      maps = {target: model.probabilities(images, tiled) for target, model in models.items()}
      for index, (path, image) in enumerate(chunk):
        mask = class_mask({target: maps[target][index] for target in maps}, threshold)
        write_mask(out.path(f"{path.stem}_mask.png"), mask)
        # Cells and nuclei (nuclei a deeper red), or the one target a binary run finds.
        overlay = (plots.class_overlay(image, mask) if three_class
                   else plots.overlay(image, mask))
        write_image(out.path(f"{path.stem}_overlay.png"), overlay)
        write_image(out.path(f"{path.stem}_segmented.png"), plots.segmented(image, mask))
        if measure:
          cells = measure_cells(mask, nc_threshold)
          write_csv(out.path(f"{path.stem}_cells.csv"), Cell, cells)
          summaries.append(summarize(path.name, cells))
        bar.update()
      if measure:
        write_csv(out.path("measurements.csv"), ImageSummary, summaries)
  return summaries


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.predict", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("images", nargs="+", type=Path, metavar="IMAGES",
                      help="image files or folders of images")
  parser.add_argument("--run", type=Path, required=True,
                      help="a run folder of jaxseg.train: a 3-class run (--target cell), a "
                      "binary one, or with --nuclei-run a cytoplasm run")
  parser.add_argument("--nuclei-run", type=Path,
                      help="a nuclei run beside a cytoplasm --run: three-class masks")
  parser.add_argument("--out", type=Path, required=True,
                      help="folder for the outputs; not an input folder, and no file there "
                      "is replaced unless a jaxseg command wrote it")
  parser.add_argument("--tiled", action="store_true",
                      help="overlapping tiles at the training scale instead of one resize")
  parser.add_argument("--threshold", type=float, default=0.5,
                      help="probability above which a pixel belongs to a binary run's target "
                      "(a 3-class run gives each pixel its most probable class)")
  parser.add_argument("--measure", action="store_true",
                      help="per-cell measurements (a 3-class run, or --nuclei-run)")
  parser.add_argument("--nc-threshold", type=float, default=NC_THRESHOLD,
                      help="flag cells whose nucleus/cytoplasm area ratio is above this")
  return parser.parse_args(argv)


@command(compilation_cache=True)
def main(argv=None) -> None:
  args = parse_args(argv)
  if not 0 <= args.threshold < 1:
    raise JaxsegError(f"--threshold {args.threshold}: choose a probability in [0, 1)")
  # Inputs and outputs first: their checks read headers and names, not the runs' models.
  paths = input_images(args.images)
  runs = [args.run] + ([args.nuclei_run] if args.nuclei_run else [])
  out = OutputFolder(args.out, output_names(paths, args.measure), inputs=paths,
                     input_folders=[path for path in args.images if path.is_dir()] + runs)
  three_class = RunFolder(args.run).read_config()[0].target == CELL
  if three_class and args.nuclei_run is not None:
    raise JaxsegError(f"--nuclei-run: --run {args.run} is a 3-class run, which finds nuclei "
                      "itself; leave --nuclei-run out")
  if args.measure and args.nuclei_run is None and not three_class:
    raise JaxsegError("--measure needs cells and nuclei: give a 3-class run (--target cell), "
                      "or --run CYTOPLASM_RUN --nuclei-run NUCLEI_RUN")
  if args.nuclei_run is None:
    model = Segmenter(TrainedModel(args.run))
    models = {model.config.target: model}
  else:
    models = {"cytoplasm": Segmenter(TrainedModel(args.run, "cytoplasm")),
              "nuclei": Segmenter(TrainedModel(args.nuclei_run, "nuclei"))}
  summaries = predict(models, paths, out, tiled=args.tiled, threshold=args.threshold,
                      measure=args.measure, nc_threshold=args.nc_threshold)
  if args.measure:
    flagged = sum(s.flagged_cells for s in summaries)
    print(f"{sum(s.cells for s in summaries)} cells, {flagged} flagged "
          f"(N/C ratio > {args.nc_threshold}): {args.out / 'measurements.csv'}")
  print(f"{len(paths)} images segmented into {args.out}")

