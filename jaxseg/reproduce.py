"""Reproduce the paper's Tables 1 and 2, Figures 2 and 4: ``python -m jaxseg.reproduce --data synthetic``.

Trains a U-Net for each method (the plain one and each pretrained encoder) and target, each in
its own run folder OUT/runs/<method>-<target>; the ``--seeded`` ones again with other seeds
(OUT/runs/<method>-<target>-seed<N>) on the same split, to show run-to-run spread. Target
``cell`` is one 3-class model per method, whose one run adds a row to both tables, scored on
each table's target. Then it
writes OUT/table1.md (cytoplasm) and OUT/table2.md (nuclei), OUT/study.png (test Dice
against training speed, FLOPs and variables), OUT/figure4.png (HSIL, LSIL and NSIL test
images through the method with the best Dice), OUT/figure2.png (training images as read,
enhanced and augmented) and OUT/results.json (every run's summary, the command, date,
machine and versions). Finished runs are skipped and stopped ones resume after their last
epoch, so running the same command again continues an interrupted reproduction.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from jaxseg import flags, plots
from jaxseg.bench.steps import cpu_model
from jaxseg.cli import ArgumentParser, command
from jaxseg.configs import PRESETS, get_preset
from jaxseg.data.files import read_image
from jaxseg.data.masks import CELL, RUN_TARGETS, TARGETS
from jaxseg.data.pipeline import Loader
from jaxseg.datasets import recorded_splits
from jaxseg.errors import JaxsegError
from jaxseg.inference import TrainedModel
from jaxseg.inspect import network_cost
from jaxseg.loop import (
  count_loader,
  figure_predictions,
  print_table,
  train_and_evaluate,
  versions,
)
from jaxseg.models import MODELS
from jaxseg.run_folder import RunFolder

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
  "background\" column. Per-image Dice is the mean of each test image's Dice. A row run with "
  "several seeds shows the mean over them and, under \"Dice sd\", their sample standard "
  "deviation and count. Variables include BatchNorm statistics; GFLOPs are XLA's count of one "
  "image's forward pass; images/s is the median over the run's epochs after the first (which "
  "compiles) of training images over the time of the epoch's train steps, on the device named "
  "above."
)
CELL_NOTE = (
  "A row marked 3-class is one model of background, cytoplasm and nucleus (--target cell), "
  "scored on this table's target from each pixel's most probable class; the same run gives its "
  "row in both tables, where a binary row is a model of this target alone."
)
COST_COLUMNS = ("Dice sd (seeds)", "Variables (M)", "GFLOPs / image", "Train images/s")


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.reproduce", description=__doc__)
  parser.add_argument("--out", type=Path, default=Path("experiments/results"),
                      help="folder of the tables, figures and runs (default: "
                      "experiments/results, where a clone of the repository keeps them)")
  parser.add_argument("--methods", default=",".join(MODELS),
                      help=f"comma-separated, of: {','.join(MODELS)}")
  parser.add_argument("--targets", default=",".join(TARGETS),
                      help=f"comma-separated, of: {','.join(RUN_TARGETS)} (cell: a 3-class "
                      "model, a row in both tables)")
  start = parser.add_mutually_exclusive_group()
  start.add_argument("--preset", choices=("auto", *PRESETS), default="auto",
                     help="paper settings, or quick ones for a CPU (auto: by device)")
  start.add_argument("--config", type=Path, metavar="FILE",
                     help="a Python file whose get_config() returns the settings")
  parser.add_argument("--seeds", type=int, default=3,
                      help="runs of each --seeded method and target: seeds --seed, --seed + 1, "
                           "...; every run keeps the split of --seed")
  parser.add_argument("--seeded", default="unet-nuclei,densenet121-nuclei",
                      help="comma-separated METHOD-TARGET pairs run with --seeds seeds")
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


def seeded_pairs(value: str, methods: list[str], targets: list[str]) -> set[tuple[str, str]]:
  pairs = {tuple(pair.rsplit("-", 1)) for pair in value.split(",") if pair}
  unknown = sorted("-".join(pair) for pair in pairs
                   if pair[0] not in MODELS or pair[-1] not in RUN_TARGETS)
  if unknown:
    raise JaxsegError(f"--seeded {unknown[0]}: expected METHOD-TARGET, e.g. unet-nuclei")
  return {pair for pair in pairs if pair[0] in methods and pair[1] in targets}


def run_plan(base, methods, targets, seeds: int, seeded) -> list[tuple[str, str, str, object]]:
  """(method, target, run folder name, config) of every run: the first seed's folder is
  METHOD-TARGET, the others' METHOD-TARGET-seedN; all share the split of ``base``."""
  plan = []
  for target in targets:
    for method in methods:
      for repeat in range(seeds if (method, target) in seeded else 1):
        seed = base.seed + repeat
        name = f"{method}-{target}" + (f"-seed{seed}" if repeat else "")
        config = base.replace(backbone=method, target=target, seed=seed,
                              split_seed=base.data_seed).validate()
        plan.append((method, target, name, config))
  return plan


def train_or_skip(path: Path, config) -> dict:
  """The summary of the run at ``path``: trained, resumed, or read when it has finished."""
  run = RunFolder(path)
  if run.summary_file.exists():
    summary = run.read_summary()
    if summary["config"]["epochs"] != config.epochs:
      raise JaxsegError(f"{run.path} finished after {summary['config']['epochs']} epochs, not "
                        f"{config.epochs}; choose another --out")
    if "train_images_per_second" not in summary:
      raise JaxsegError(f"{run.path}: made by an earlier jaxseg that did not record its "
                        "training speed; choose another --out")
    print(f"{run.path.name}: finished earlier, skipped")
    return summary
  # As a resume, training checks that the settings still match the run's own.
  summary = train_and_evaluate(config, path, resume=run.exists())
  print_table(summary)
  return summary


def settings_line(summaries: dict[str, list[dict]]) -> str:
  first = next(iter(summaries.values()))[0]
  config, images = first["config"], first["images"]
  data = first["data_root"]
  if config["data"] == "synthetic":
    data = f"synthetic ({config['num_images']} images of {config['synthetic_size']}px)"
  return (f"Settings: preset {first['preset']}, epochs {config['epochs']}, image size "
          f"{config['image_size']}x{config['image_size']}, batch {config['batch_size']}, "
          f"learning rate {config['learning_rate']}, plain U-Net filters {config['unet_filters']}, "
          f"data {data}; {images['train']} train, {images['val']} validation, "
          f"{images['test']} test images; device {first['device']}.")


def target_test(summary: dict, target: str) -> dict:
  """A run's test metrics of ``target``: a binary run's own, a 3-class run's of that target."""
  return summary["test"][target] if summary["target"] == CELL else summary["test"]


def method_row(runs: list[dict], cost: dict, target: str) -> dict:
  """One method's test metrics of ``target`` (the mean over its seeds), their spread and its
  costs."""
  tests = [target_test(run, target) for run in runs]
  dice = [test["dice"] for test in tests]
  return {
    "test": {key: statistics.mean(test[key] for test in tests) for _, key in COLUMNS},
    "dice_sd": statistics.stdev(dice) if len(dice) > 1 else None,
    "seeds": len(runs),
    "train_images_per_second": statistics.median(run["train_images_per_second"] for run in runs),
    **cost,
  }


def row_label(key: str) -> str:
  """A table row's name: the method's, marked where its run is a 3-class one (METHOD-cell)."""
  method = key.removesuffix(f"-{CELL}")
  return METHOD_NAMES[method] + (", 3-class" if method != key else "")


def table_rows(results: dict, costs: dict) -> dict[str, dict[str, dict]]:
  """Per table target, per row (METHOD, or METHOD-cell for a 3-class run, beside it): the row
  of `method_row`."""
  rows, methods = {}, next(iter(results.values()))
  for target in TARGETS:
    kinds = [kind for kind in (target, CELL) if kind in results]
    if kinds:
      rows[target] = {
        method + ("" if kind == target else f"-{CELL}"):
          method_row(results[kind][method], costs[kind][method], target)
        for method in methods for kind in kinds}
  return rows


def table(target: str, summaries: dict[str, list[dict]], rows: dict[str, dict]) -> str:
  header = ["Methods", *(title for title, _ in COLUMNS), *COST_COLUMNS]
  lines = [f"# {TABLES[target][1]} (test set)", "", settings_line(summaries), "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for key, row in rows.items():
    values = [f"{100 * row['test'][column]:.2f}" for _, column in COLUMNS]
    spread = f"{100 * row['dice_sd']:.2f} ({row['seeds']})" if row["dice_sd"] is not None else "-"
    values += [spread, f"{row['variables'] / 1e6:.1f}", f"{row['gflops']:.2f}",
               f"{row['train_images_per_second']:.1f}"]
    lines.append("| " + " | ".join([row_label(key), *values]) + " |")
  weights = [f"{METHOD_NAMES[m]}: {runs[0]['weights']}" for m, runs in summaries.items()
             if m != "unet"]
  lines += ["", NOTE]
  if any(key.endswith(f"-{CELL}") for key in rows):
    lines += ["", CELL_NOTE]
  if weights:
    lines += ["", "Encoder weights: " + "; ".join(weights) + ". The paper's encoders start "
              "from ImageNet weights; where these say random initialisation, the encoder "
              "learned from the training images alone."]
  return "\n".join(lines) + "\n"


def best_row(rows: dict[str, dict[str, dict]]) -> str:
  """The row (METHOD or METHOD-cell) with the best test Dice, averaged over the tables."""
  keys = next(iter(rows.values()))
  return max(keys, key=lambda k: np.mean([by_row[k]["test"]["dice"] for by_row in rows.values()]))


def figure(out: Path, key: str, targets: list[str]) -> None:
  """Figure 4: a test image of each kind (HSIL, LSIL, NSIL) through the runs of the row
  ``key``, the paper's columns: a method's run of each binary target, or its 3-class run."""
  method = key.removesuffix(f"-{CELL}")
  run_targets = [CELL] if method != key else [t for t in targets if t != CELL]
  rows = []
  for target in run_targets:
    model = TrainedModel(out / "runs" / f"{method}-{target}")
    config = model.config
    test = model.splits().test
    # By name: the synthetic set's kinds come in the paper's order.
    loader = Loader(sorted(test, key=lambda example: example.name), image_size=config.image_size,
                    target=target, enhancement=config.enhance, batch_size=config.batch_size,
                    seed=config.seed, kind=config.loader, mask_colours=config.mask_colour_map)
    _, predicted = count_loader(model.steps, model.state, loader)
    names, *panels = figure_predictions(loader, predicted, config)
    rows.append(([f"{name}\n{target}" for name in names], *panels))
  names, images, truths, predictions = (np.concatenate(parts) for parts in zip(*rows))
  plots.prediction_figure(names, images, truths, predictions, out / "figure4.png",
                          CELL if method != key else f"region ({METHOD_NAMES[method]})")


def enhancement_figure(out: Path, results: dict[str, dict[str, list[dict]]]) -> None:
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


@command
def main(argv=None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  methods = comma_list(args.methods, MODELS, "methods")
  targets = comma_list(args.targets, RUN_TARGETS, "targets")
  if args.figure_method not in (None, *methods):
    raise JaxsegError(f"--figure-method {args.figure_method}: not among --methods {args.methods}")
  changes = flags.overrides(args)
  for per_run in ("backbone", "target"):
    if per_run in changes:
      raise JaxsegError(f"--{per_run}: set by --methods and --targets here")
  base = flags.load_config_file(args.config) if args.config else get_preset(args.preset)
  base = flags.apply(base, changes)
  if args.seeds < 1:
    raise JaxsegError(f"--seeds {args.seeds}: must be at least 1")
  plan = run_plan(base.validate(), methods, targets, args.seeds,
                  seeded_pairs(args.seeded, methods, targets))

  started = time.strftime("%Y-%m-%d %H:%M:%S %z")
  results = {target: {method: [] for method in methods} for target in targets}
  for number, (method, target, name, config) in enumerate(plan, 1):
    print(f"\n[{number}/{len(plan)}] {name}")
    results[target][method].append(train_or_skip(args.out / "runs" / name, config))

  costs, measured = {target: {} for target in targets}, {}
  for target in targets:  # one image's forward pass, at the runs' size
    for method in methods:
      config = base.replace(backbone=method, target=target)
      head = (method, config.out_channels)  # both binary targets' networks are one
      if head not in measured:
        variables, gflops = network_cost(config)
        measured[head] = {"variables": variables, "gflops": gflops}
      costs[target][method] = measured[head]
  rows = table_rows(results, costs)
  for target, by_row in rows.items():
    summaries = results.get(target, results.get(CELL))
    (args.out / TABLES[target][0]).write_text(table(target, summaries, by_row))
  plots.study_figure(rows, {key: row_label(key) for key in next(iter(rows.values()))},
                     args.out / "study.png")
  binary = any(target != CELL for target in targets)
  chosen = best_row(rows)
  if args.figure_method:
    chosen = args.figure_method + ("" if binary else f"-{CELL}")
  figure(args.out, chosen, targets)
  enhancement_figure(args.out, results)
  record = {"command": " ".join(["python -m jaxseg.reproduce", *argv]),
            "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "machine": f"{platform.platform()}, {cpu_model()}", "versions": versions(),
            "figure_method": chosen, "methods": rows, "runs": results}
  (args.out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
  print(f"\n{', '.join(TABLES[t][0] for t in rows)}, study.png, figure2.png, figure4.png, "
        f"results.json in {args.out}")

