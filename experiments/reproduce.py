"""Reproduce the paper's Tables 1 and 2, Figures 2 and 4: ``python experiments/reproduce.py --data synthetic``.

Trains a U-Net for each method (the plain one and each pretrained encoder) and target, each in
its own run folder OUT/runs/<method>-<target>, then writes OUT/table1.md (cytoplasm),
OUT/table2.md (nuclei), OUT/results.json (every run's summary), OUT/figure4.png (HSIL,
LSIL and NSIL test images through the method with the best Dice) and OUT/figure2.png
(training images as read, enhanced and augmented). Finished runs are skipped
and stopped ones resume after their last epoch, so running the same command again continues
an interrupted reproduction.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from jaxseg import flags, plots
from jaxseg.configs import PRESETS, get_preset
from jaxseg.data.files import read_image
from jaxseg.data.sources import recorded_splits
from jaxseg.data.masks import TARGETS
from jaxseg.data.pipeline import Loader
from jaxseg.errors import ArgumentParser, JaxsegError, cli
from jaxseg.models import MODELS
from jaxseg.run import RunFolder
from jaxseg.trained import TrainedModel
from jaxseg.training import figure_predictions, print_table, train_and_evaluate

TABLES = {"cytoplasm": ("table1.md", "Table 1: cytoplasm segmentation"),
          "nuclei": ("table2.md", "Table 2: nuclei segmentation")}
METHOD_NAMES = {"unet": "U-Net", "vgg19": "U-Net + VGG19", "resnet50": "U-Net + ResNet50",
                "mobilenet": "U-Net + MobileNet", "efficientnetb2": "U-Net + EfficientNetB2",
                "densenet121": "U-Net + DenseNet121"}
# The paper's columns, then the two that set its numbers beside ours honestly.
COLUMNS = (("Accuracy", "accuracy"), ("Sensitivity", "sensitivity"), ("Precision", "precision"),
           ("IoU", "iou"), ("Dice coef", "dice"), ("mean IoU incl. background", "mean_iou"),
           ("per-image Dice", "per_image_dice"))
NOTE = (
  "Accuracy, sensitivity, precision, IoU and Dice are of the target against the rest, pooled "
  "over every test pixel, in percent, each from the run's summary.json (\"test\"). The paper's "
  "IoU exceeds its Dice in every row, which one class cannot do (Dice >= IoU always); its IoU "
  "is most likely the mean IoU over the target and background, our \"mean IoU incl. "
  "background\" column. Per-image Dice is the mean of each test image's Dice."
)


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python experiments/reproduce.py", description=__doc__)
  parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
  parser.add_argument("--methods", default=",".join(MODELS),
                      help=f"comma-separated, of: {','.join(MODELS)}")
  parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
  start = parser.add_mutually_exclusive_group()
  start.add_argument("--preset", choices=("auto", *PRESETS), default="auto",
                     help="paper settings, or quick ones for a CPU (auto: by device)")
  start.add_argument("--config", type=Path, metavar="FILE",
                     help="a Python file whose get_config() returns the settings")
  parser.add_argument("--figure-method", choices=MODELS,
                      help="method of Figure 4 (default: the best mean test Dice)")
  flags.add_config_flags(parser)  # every run's settings; --backbone and --target are set per run
  return parser.parse_args(argv)


def comma_list(value: str, choices: tuple[str, ...], flag: str) -> list[str]:
  names = [name for name in value.split(",") if name]
  unknown = [name for name in names if name not in choices]
  if unknown or not names:
    raise JaxsegError(f"--{flag} {value!r}: choose from {','.join(choices)}")
  return names


def train_or_skip(path: Path, config) -> dict:
  """The summary of the run at ``path``: trained, resumed, or read when it has finished."""
  run = RunFolder(path)
  if run.summary_file.exists():
    summary = run.read_summary()
    if summary["config"]["epochs"] != config.epochs:
      raise JaxsegError(f"{run.path} finished after {summary['config']['epochs']} epochs, not "
                        f"{config.epochs}; choose another --out")
    print(f"{run.path.name}: finished earlier, skipped")
    return summary
  # As a resume, training checks that the settings still match the run's own.
  summary = train_and_evaluate(config, path, resume=run.exists())
  print_table(summary)
  return summary


def settings_line(summaries: dict[str, dict]) -> str:
  first = next(iter(summaries.values()))
  config, images = first["config"], first["images"]
  data = first["data_root"]
  if config["data"] == "synthetic":
    data = f"synthetic ({config['num_images']} images of {config['synthetic_size']}px)"
  return (f"Settings: preset {first['preset']}, epochs {config['epochs']}, image size "
          f"{config['image_size']}x{config['image_size']}, batch {config['batch_size']}, "
          f"learning rate {config['learning_rate']}, plain U-Net filters {config['unet_filters']}, "
          f"data {data}; {images['train']} train, {images['val']} validation, "
          f"{images['test']} test images; device {first['device']}.")


def table(target: str, summaries: dict[str, dict]) -> str:
  header = ["Methods", *(title for title, _ in COLUMNS)]
  lines = [f"# {TABLES[target][1]} (test set)", "", settings_line(summaries), "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for method, summary in summaries.items():
    values = [f"{100 * summary['test'][key]:.2f}" for _, key in COLUMNS]
    lines.append("| " + " | ".join([METHOD_NAMES[method], *values]) + " |")
  weights = [f"{METHOD_NAMES[m]}: {s['weights']}" for m, s in summaries.items() if m != "unet"]
  lines += ["", NOTE]
  if weights:
    lines += ["", "Encoder weights: " + "; ".join(weights) + "."]
  return "\n".join(lines) + "\n"


def best_method(results: dict[str, dict[str, dict]]) -> str:
  """The method with the best test Dice, averaged over the targets."""
  methods = next(iter(results.values()))
  return max(methods, key=lambda m: np.mean([runs[m]["test"]["dice"] for runs in results.values()]))


def figure(out: Path, method: str, results: dict[str, dict[str, dict]]) -> None:
  """Figure 4: a test image of each kind (HSIL, LSIL, NSIL) per target, the paper's columns."""
  rows = []
  for target, summaries in results.items():
    model = TrainedModel(out / "runs" / f"{method}-{target}")
    config = model.config
    test = model.splits().test
    # By name: the synthetic set's kinds come in the paper's order.
    loader = Loader(sorted(test, key=lambda example: example.name), image_size=config.image_size,
                    target=target, enhancement=config.enhance, batch_size=config.batch_size,
                    seed=config.seed, kind=config.loader)
    names, *panels = figure_predictions(model.steps, model.state, loader, config)
    rows.append(([f"{name}\n{target}" for name in names], *panels))
  names, images, truths, predictions = (np.concatenate(parts) for parts in zip(*rows))
  plots.prediction_figure(names, images, truths, predictions, out / "figure4.png",
                          f"region ({METHOD_NAMES[method]})")


def enhancement_figure(out: Path, results: dict[str, dict[str, dict]]) -> None:
  """Figure 2: a training image of each kind, as read, enhanced and augmented as the runs were."""
  target, summaries = next(iter(results.items()))
  run = RunFolder(out / "runs" / f"{next(iter(summaries))}-{target}")
  config, _ = run.read_config()
  train_examples = recorded_splits(run.read_data_record(), config).train
  first_of_kind = {}  # by name: the synthetic set's names start with the kind
  for example in sorted(train_examples, key=lambda example: example.name):
    first_of_kind.setdefault(example.name.split("_")[0], example)
  images = [read_image(example.image) for example in first_of_kind.values()][:4]
  plots.enhancement_figure(images, config.image_size, config.enhance, config.augment,
                           out / "figure2.png", seed=config.seed)


@cli
def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  methods = comma_list(args.methods, MODELS, "methods")
  targets = comma_list(args.targets, TARGETS, "targets")
  if args.figure_method not in (None, *methods):
    raise JaxsegError(f"--figure-method {args.figure_method}: not among --methods {args.methods}")
  changes = flags.overrides(args)
  for per_run in ("backbone", "target"):
    if per_run in changes:
      raise JaxsegError(f"--{per_run}: set by --methods and --targets here")
  base = flags.load_config_file(args.config) if args.config else get_preset(args.preset)
  base = flags.apply(base, changes)

  results = {target: {} for target in targets}
  runs = [(method, target) for target in targets for method in methods]
  for number, (method, target) in enumerate(runs, 1):
    print(f"\n[{number}/{len(runs)}] {method}-{target}")
    config = base.replace(backbone=method, target=target).validate()
    results[target][method] = train_or_skip(args.out / "runs" / f"{method}-{target}", config)

  for target, summaries in results.items():
    (args.out / TABLES[target][0]).write_text(table(target, summaries))
  chosen = args.figure_method or best_method(results)
  figure(args.out, chosen, results)
  enhancement_figure(args.out, results)
  record = {"command": " ".join(["python experiments/reproduce.py", *argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": platform.platform(),
            "figure_method": chosen, "runs": results}
  (args.out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
  print(f"\n{', '.join(TABLES[t][0] for t in targets)}, figure2.png, figure4.png, results.json "
        f"in {args.out}")


if __name__ == "__main__":
  main()
