"""Make the paper's Otsu masks for a folder of images, and score them against true masks.

  python -m jaxseg.make_masks IMAGES OUT [--target cytoplasm|nuclei] [--truth MASKS]

Writes OUT/<name>.png for every image, 0 background and 255 target (the binary mask format
that training reads), never over an image, a true mask, or a file it did not write (see
`jaxseg.outputs`). With --truth, also prints the pooled IoU and Dice of these masks
against class masks MASKS/<name>.png: the classical baseline that trained models must beat.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxseg import metrics
from jaxseg.cli import ArgumentParser, command
from jaxseg.data import files
from jaxseg.data.masks import TARGETS, check_mask_values, target_mask
from jaxseg.data.otsu import otsu_mask
from jaxseg.errors import DataError
from jaxseg.outputs import OutputFolder


def parse_args(argv):
  parser = ArgumentParser(prog="python -m jaxseg.make_masks", description=__doc__.splitlines()[0])
  parser.add_argument("images", type=Path, help="folder of images")
  parser.add_argument("out", type=Path,
                      help="folder for the masks, made if missing; not IMAGES nor --truth, and "
                      "no file there is replaced unless a jaxseg command wrote it")
  parser.add_argument("--target", choices=TARGETS, default="cytoplasm")
  parser.add_argument("--kernel-size", type=int, default=3, help="elliptical kernel, pixels")
  parser.add_argument("--erode-iterations", type=int, default=1)
  parser.add_argument("--dilate-iterations", type=int, default=1)
  parser.add_argument("--truth", type=Path, help="folder of true masks <name>.png to score against")
  args = parser.parse_args(argv)
  if args.kernel_size < 1 or min(args.erode_iterations, args.dilate_iterations) < 0:
    parser.error("--kernel-size must be at least 1 and the iterations at least 0")
  return args


def truth_paths(folder: Path, images: list[Path]) -> list[Path]:
  """The true mask of each image, checked up front so that a missing one fails before any work."""
  if not folder.is_dir():
    raise DataError(f"{folder}: no such folder")
  paths = [folder / f"{image.stem}.png" for image in images]
  for image, path in zip(images, paths):
    if not path.is_file():
      raise DataError(f"{path}: no true mask for image {image.name}")
  return paths


def read_truth(path: Path, shape, target: str) -> np.ndarray:
  """The 0/1 target mask of the true mask at ``path``, checked against the image's ``shape``."""
  truth = files.read_mask(path)
  check_mask_values(truth, path)
  if truth.shape != shape:
    mask_size, image_size = f"{truth.shape[1]}x{truth.shape[0]}", f"{shape[1]}x{shape[0]}"
    raise DataError(f"{path}: mask is {mask_size}, its image is {image_size}")
  return target_mask(truth, target)


def print_scores(counts: np.ndarray, target: str) -> None:
  results = metrics.scores(counts)
  print(f"Otsu {target} masks against true masks, {len(counts)} images, pooled over pixels:")
  for name in ("iou", "dice", "sensitivity", "precision", "accuracy"):
    print(f"  {name:<12}{results[name]:.4f}")
  print(json.dumps({"target": target, "images": len(counts), **results}))


@command
def main(argv=None):
  args = parse_args(argv)
  images = files.list_images(args.images)
  for path in images:  # headers only, quick: a bad file stops the command before any output
    files.check_image_file(path)
  truths = truth_paths(args.truth, images) if args.truth else [None] * len(images)
  out = OutputFolder(args.out, [f"{path.stem}.png" for path in images],
                     inputs=images + [path for path in truths if path],
                     input_folders=[args.images] + ([args.truth] if args.truth else []))
  counts = []
  # disable=None: a bar on terminals only, not in logs.
  for path, truth_path in tqdm(list(zip(images, truths)), desc="masks", unit="image", disable=None):
    image = files.read_image(path)
    mask = otsu_mask(
      image,
      args.target,
      kernel_size=args.kernel_size,
      erode_iterations=args.erode_iterations,
      dilate_iterations=args.dilate_iterations,
    )
    files.write_mask(out.path(f"{path.stem}.png"), mask * 255)
    if truth_path:
      truth = read_truth(truth_path, mask.shape, args.target)
      counts.append(metrics.confusion_counts(mask[None], truth[None]))
  print(f"wrote {len(images)} masks to {args.out}")
  if counts:
    print_scores(np.concatenate(counts), args.target)

