"""How hard a segmentation data set is: class shares, cells, nuclei, and label-free baselines.

  python -m jaxseg.dataset_report DATA [--json] [--plot PNG]

DATA is a folder data set (DATA/images, DATA/masks, or DATA/train and DATA/test) or
`synthetic` (the built-in set of --num-images images, from the shared cache). It prints:

- the share of pixels of each class, and cell regions (connected non-background pixels) per
  image;
- per image kind (the file-name prefix before "_", where names share them, as the synthetic
  set's hsil_/lsil_/nsil_ do): nucleus areas and nucleus/cell area ratios (N/C) of the cell
  regions that hold a nucleus;
- the test-split scores of three baselines that see only each pixel's colour: the paper's
  Otsu rule, the best single HSV-saturation threshold (chosen on the training images), and a
  per-pixel colour classifier (each RGB colour, in 32 levels a channel, takes the class most
  frequent for it in the training images; no spatial context). Where they score high, colour
  alone solves the task, and every architecture will look alike on it;
- for `synthetic` (version 2 on): shortcuts, the ROC AUC with which single rendering features
  (texture, focus, contrast and dark edge at the boundary, a nucleus's area and depth in its
  cells) tell labelled objects from their look-alikes: a labelled cell's nuclei from bare
  nuclei, labelled cells from neutrophils and from red blood cells (jaxseg.data.shortcuts).
  Where one is high, a network can learn the label from how an object is drawn.

The split is training's (`--seed`, `--split`, `--test-fraction`, `--val-fraction`); baselines are fitted on
its training and validation images together. --plot writes histograms of each class's colours.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from jaxseg import metrics, plots
from jaxseg.cli import ArgumentParser, command
from jaxseg.config import Config
from jaxseg.configs import quick
from jaxseg.data import shortcuts, synthetic
from jaxseg.data.enhance import Enhance
from jaxseg.data.folder import split_dataset
from jaxseg.data.masks import BACKGROUND, NUCLEUS, TARGETS, target_mask
from jaxseg.data.otsu import otsu_mask
from jaxseg.data.pipeline import prepare_image, read_example
from jaxseg.datasets import dataset_root
from jaxseg.errors import DataError

CLASS_NAMES = ("background", "cytoplasm", "nucleus")
LEVELS = 32  # colour classifier: levels per RGB channel
BASELINES = ("otsu", "saturation", "colour")
BASELINE_NAMES = {
  "otsu": "Otsu threshold (the paper's rule)",
  "saturation": "best HSV-saturation threshold",
  "colour": "per-pixel colour classifier",
}


def parse_args(argv):
  parser = ArgumentParser(prog="python -m jaxseg.dataset_report", description=__doc__.splitlines()[0])
  parser.add_argument("data", help="a folder data set, or 'synthetic' (the built-in set)")
  parser.add_argument("--num-images", type=int, default=quick.get_config().num_images,
                      help="synthetic images (default: the quick preset's)")
  parser.add_argument("--synthetic-seed", type=int, default=0)
  parser.add_argument("--synthetic-version", type=int, default=Config.synthetic_version)
  parser.add_argument("--seed", type=int, default=0, help="the split's seed, as training's")
  parser.add_argument("--split", choices=("stratified", "random"), default=Config.split,
                      help="the split's kind, as training's --split")
  parser.add_argument("--test-fraction", type=float, default=Config.test_fraction)
  parser.add_argument("--val-fraction", type=float, default=Config.val_fraction)
  parser.add_argument("--image-size", type=int, default=0,
                      help="score the baselines on images resized as training resizes them "
                           "(e.g. the quick preset's 128); default: as they are")
  parser.add_argument("--plot", type=Path, help="write the class colour histograms to this PNG")
  parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
  return parser.parse_args(argv)


# Baselines --------------------------------------------------------------------------------------

def saturation(image: np.ndarray) -> np.ndarray:
  return cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1]


def fit_saturation_threshold(pairs, target: str) -> int:
  """The threshold t (pixels with saturation > t are the target) of best pooled IoU."""
  inside, outside = np.zeros(256), np.zeros(256)
  for image, mask in pairs:
    values, truth = saturation(image), target_mask(mask, target).astype(bool)
    inside += np.bincount(values[truth], minlength=256)
    outside += np.bincount(values[~truth], minlength=256)
  # Above t: true positives are the target pixels above it, false positives the rest above it.
  tp = inside.sum() - np.cumsum(inside)
  fp = outside.sum() - np.cumsum(outside)
  iou = tp / np.maximum(inside.sum() + fp, 1)
  return int(np.argmax(iou))


def colour_bins(image: np.ndarray) -> np.ndarray:
  quantised = (image // (256 // LEVELS)).astype(np.int32)
  return (quantised[..., 0] * LEVELS + quantised[..., 1]) * LEVELS + quantised[..., 2]


def fit_colour_classifier(pairs) -> np.ndarray:
  """Class pixel counts per quantised colour (LEVELS**3, 3) over the training images."""
  counts = np.zeros((LEVELS**3, len(CLASS_NAMES)))
  for image, mask in pairs:
    bins = colour_bins(image)
    for value in range(len(CLASS_NAMES)):
      counts[:, value] += np.bincount(bins[mask == value], minlength=LEVELS**3)
  return counts


def colour_predict(counts: np.ndarray, image: np.ndarray, target: str) -> np.ndarray:
  """0/1 mask of the pixels whose colour is more often ``target`` than not in training.

  A colour never seen in training is background, the commonest class.
  """
  chosen = counts[:, BACKGROUND + 1:].sum(axis=1) if target == "cytoplasm" else counts[:, NUCLEUS]
  decision = chosen > counts.sum(axis=1) - chosen
  return decision[colour_bins(image)].astype(np.uint8)


def baseline_scores(fitted: dict, pairs) -> dict:
  """{baseline: {target: metrics}} on ``pairs``; ``fitted`` from `fit_baselines`."""
  counts = defaultdict(list)
  for image, mask in pairs:
    for target in TARGETS:
      truth = target_mask(mask, target)[None]
      predictions = {
        "otsu": otsu_mask(image, target),
        "saturation": (saturation(image) > fitted["saturation"][target]).astype(np.uint8),
        "colour": colour_predict(fitted["colour"], image, target),
      }
      for name, prediction in predictions.items():
        counts[name, target].append(metrics.confusion_counts(prediction[None], truth))
  return {name: {target: metrics.scores(np.concatenate(counts[name, target]))
                 for target in TARGETS} for name in BASELINES}


def fit_baselines(pairs) -> dict:
  pairs = list(pairs)
  return {
    "saturation": {target: fit_saturation_threshold(pairs, target) for target in TARGETS},
    "colour": fit_colour_classifier(pairs),
  }


# What the masks hold ----------------------------------------------------------------------------

def cell_statistics(mask: np.ndarray) -> tuple[int, list[int], list[float]]:
  """(cell regions, nucleus areas, N/C area ratios of the regions holding a nucleus)."""
  count, regions = cv2.connectedComponents((mask != BACKGROUND).astype(np.uint8), connectivity=8)
  cells = np.bincount(regions.ravel(), minlength=count)
  nuclei = np.bincount(regions[mask == NUCLEUS], minlength=count)
  ratios = [nuclei[i] / cells[i] for i in range(1, count) if nuclei[i]]
  nucleus_count, nucleus_regions = cv2.connectedComponents((mask == NUCLEUS).astype(np.uint8))
  areas = np.bincount(nucleus_regions.ravel(), minlength=nucleus_count)[1:].tolist()
  return count - 1, areas, ratios


def kind_of(name: str, names: list[str]) -> str:
  """The file-name prefix before "_" where names share prefixes, else 'all'."""
  prefixes = {other.split("_")[0] for other in names if "_" in other}
  shared = "_" in name and len(prefixes) <= len(names) / 2
  return name.split("_")[0] if shared else "all"


def quantiles(values) -> dict:
  if not len(values):
    return {"count": 0}
  p10, p50, p90 = np.percentile(values, [10, 50, 90])
  return {"count": len(values), "p10": float(p10), "median": float(p50), "p90": float(p90)}


def describe(examples) -> dict:
  """Class shares, cell regions per image and, per kind, nucleus areas and N/C ratios."""
  pixels = np.zeros(len(CLASS_NAMES))
  cells, areas, ratios, images = [], defaultdict(list), defaultdict(list), defaultdict(int)
  names = [example.name for example in examples]
  for example in examples:
    _, mask = read_example(example)
    pixels += np.bincount(mask.ravel(), minlength=3)[:3]
    count, nucleus_areas, cell_ratios = cell_statistics(mask)
    kind = kind_of(example.name, names)
    cells.append(count)
    areas[kind] += nucleus_areas
    ratios[kind] += cell_ratios
    images[kind] += 1
  return {
    "images": len(examples),
    "class_share": dict(zip(CLASS_NAMES, (pixels / pixels.sum()).tolist())),
    "cells_per_image": {**quantiles(cells), "mean": float(np.mean(cells)),
                        "min": int(min(cells)), "max": int(max(cells))},
    "kinds": {kind: {"images": images[kind], "nucleus_area_px": quantiles(areas[kind]),
                     "nc_ratio": quantiles(ratios[kind])} for kind in sorted(images)},
  }


# Output ---------------------------------------------------------------------------------------

def plot_histograms(pairs, path: Path) -> None:
  """Per class, the distributions of red, green, blue and HSV saturation."""
  histograms = np.zeros((len(CLASS_NAMES), 4, 256))
  for image, mask in pairs:
    channels = [image[..., 0], image[..., 1], image[..., 2], saturation(image)]
    for value in range(len(CLASS_NAMES)):
      chosen = mask == value
      for index, channel in enumerate(channels):
        histograms[value, index] += np.bincount(channel[chosen], minlength=256)
  histograms /= np.maximum(histograms.sum(axis=2, keepdims=True), 1)
  fig = plots.new_figure(figsize=(14, 3.2))
  axes = fig.subplots(1, 4)
  for index, (ax, title) in enumerate(zip(axes, ("red", "green", "blue", "HSV saturation"))):
    for value, colour in zip(range(len(CLASS_NAMES)), ("0.5", "tab:green", "tab:purple")):
      ax.plot(histograms[value, index], color=colour, label=CLASS_NAMES[value])
    ax.set(title=title, xlabel="value (0-255)", yticks=[])
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def print_report(report: dict) -> None:
  data, split = report["data"], report["split"]
  print(f"{report['root']}: {data['images']} images; split train {split['train']}, "
        f"validation {split['val']}, test {split['test']}")
  shares = "  ".join(f"{name} {share:.1%}" for name, share in data["class_share"].items())
  print(f"pixels: {shares}")
  cells = data["cells_per_image"]
  print(f"cell regions (connected non-background pixels) per image: median {cells['median']:.0f},"
        f" mean {cells['mean']:.1f}, range {cells['min']}-{cells['max']}")
  print("\nper kind     images  nucleus area px (p10 / median / p90)   N/C of cell regions "
        "(p10 / median / p90)")
  for kind, values in data["kinds"].items():
    row = f"{kind:<12s} {values['images']:6d}"
    for key in ("nucleus_area_px", "nc_ratio"):
      stats = values[key]
      form = "{:8.0f}" if key == "nucleus_area_px" else "{:8.3f}"
      cells = [form.format(stats[p]) for p in ("p10", "median", "p90")] if stats["count"] else []
      row += f"   {' /'.join(cells) if cells else '      none':<34s}"
    print(row.rstrip())
  thresholds = report["saturation_thresholds"]
  print(f"\nbaselines on the test split ({split['test']} images, size {report['image_size']}), "
        "pooled IoU / Dice; saturation "
        f"thresholds S > {thresholds['cytoplasm']} (cytoplasm), S > {thresholds['nuclei']} "
        "(nuclei)")
  print(f"{'':36s}{'cytoplasm (whole cell)':>24s}{'nuclei':>18s}")
  for name in BASELINES:
    scores = report["baselines"][name]
    cells = [f"{scores[t]['iou']:.3f} / {scores[t]['dice']:.3f}" for t in TARGETS]
    print(f"{BASELINE_NAMES[name]:36s}{cells[0]:>24s}{cells[1]:>18s}")


SHORTCUT_NOTES = (
  "AUC: the chance that a labelled object scores higher on the feature than its look-alike; "
  "at 0.5 the feature says nothing about the label.",
  "separation: max(AUC, 1 - AUC), how well the feature alone tells the two apart, whichever "
  f"scores higher; above {shortcuts.SHORTCUT_SEPARATION:.2f} a network can learn the label from "
  "how an object is drawn rather than from what it is.",
)


def print_shortcuts(found: dict) -> None:
  print(f"\nshortcuts: single rendering features on labelled objects and their look-alikes "
        f"(generator version {found['version']}, {found['images']} images)")
  print(f"{'':34s}{'labelled':>9s}{'look-alike':>11s}{'AUC':>7s}{'separation':>12s}")
  for pair, features in found["pairs"].items():
    print(pair)
    for feature, row in features.items():
      print(f"  {feature:32s}{row['labelled']:9d}{row['lookalike']:11d}{row['auc']:7.3f}"
            f"{row['separation']:12.3f}")
  pair, feature, value = shortcuts.worst(found["pairs"])
  above = value > shortcuts.SHORTCUT_SEPARATION
  print(f"largest separation {value:.3f} ({pair}, {feature}): "
        f"{'a shortcut' if above else 'no single feature is a shortcut'}")
  for note in SHORTCUT_NOTES:
    print(note)
  for feature, meaning in shortcuts.FEATURES.items():
    print(f"{feature}: {meaning}.")


def synthetic_shortcuts(args, progress: bool) -> dict | None:
  """The shortcut table of the synthetic set of ``args``; None where its version records no
  objects."""
  if args.synthetic_version not in synthetic.OBJECT_GENERATORS:
    return None
  pairs = shortcuts.synthetic_shortcuts(args.num_images, args.synthetic_seed,
                                        Config.synthetic_size, args.synthetic_version, progress)
  return {"version": args.synthetic_version, "images": args.num_images, "pairs": pairs}


def load_splits(args):
  if args.data == "synthetic":
    config = Config(num_images=args.num_images, synthetic_seed=args.synthetic_seed,
                    synthetic_version=args.synthetic_version)
    root = dataset_root(config)
  else:
    root = Path(args.data).expanduser()
  splits = split_dataset(root, test_fraction=args.test_fraction, val_fraction=args.val_fraction,
                         seed=args.seed, split=args.split)
  return root, splits


def resized(pair, image_size: int):
  """The image and mask as training sees them at ``image_size`` (no enhancement)."""
  if not image_size:
    return pair
  image, mask = pair
  size = (image_size, image_size)
  mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
  return prepare_image(image, size, Enhance()), mask


def report_of(root, splits, plot: Path | None = None, progress: bool = False,
              image_size: int = 0) -> dict:
  """The whole report of a split data set (a dict, as --json prints it)."""
  examples = splits.train + splits.val + splits.test

  def pairs(chosen, description):
    bar = tqdm(chosen, desc=description, unit="image", leave=False,
               disable=None if progress else True)
    return (resized(read_example(example), image_size) for example in bar)

  fitted = fit_baselines(pairs(splits.train + splits.val, "fitting baselines"))
  report = {
    "root": str(root),
    "image_size": image_size or "as stored",
    "split": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
    "data": describe(examples),
    "saturation_thresholds": fitted["saturation"],
    "baselines": baseline_scores(fitted, pairs(splits.test, "scoring baselines")),
  }
  if plot:
    plot_histograms(pairs(examples, "histograms"), plot)
  return report


@command
def main(argv=None):
  args = parse_args(argv)
  root, splits = load_splits(args)
  if args.plot and not args.plot.parent.is_dir():
    raise DataError(f"{args.plot}: no folder {args.plot.parent} to write the plot into")
  report = report_of(root, splits, args.plot, progress=not args.json, image_size=args.image_size)
  if args.data == "synthetic":
    report["shortcuts"] = synthetic_shortcuts(args, progress=not args.json)
  if args.json:
    print(json.dumps(report, indent=1))
  else:
    print_report(report)
    if report.get("shortcuts"):
      print_shortcuts(report["shortcuts"])
    if args.plot:
      print(f"\nclass colour histograms: {args.plot}")

