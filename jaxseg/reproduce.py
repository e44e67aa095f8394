"""Reproduce the paper's Tables 1 and 2, Figures 2 and 4: ``python -m jaxseg.reproduce --data synthetic``.

Trains a U-Net for each method (the plain one and each pretrained encoder), target and seed,
each in its own run folder OUT/runs/<method>-<target> (the first seed) or
<method>-<target>-seed<N>. Seeds are paired across methods: seed N is the same split (that of
--seed), the same batch order and the same crops for every method. Target ``cell`` is one
3-class model per method, whose one run adds a row to both tables, scored on each table's
target. Then it ranks the methods on the test images' confusion counts (`jaxseg.ranking`:
intervals from a bootstrap over seeds and images, paired tests, groups of methods that cannot
be told apart) and writes OUT/table1.md (cytoplasm) and OUT/table2.md (nuclei), OUT/study.png
(test Dice with its interval against training speed, FLOPs and variables), OUT/figure4.png
(HSIL, LSIL and NSIL test images through the method of the best validation Dice),
OUT/figure2.png (training images as read, enhanced and augmented) and OUT/results.json (the
command, date, machine and versions, the rankings, and every run's summary with its per-image
counts). Finished runs are skipped and stopped ones resume after their last epoch, so running
the same command again continues an interrupted study; ``--no-train`` rebuilds the tables and
figures from the run folders alone.
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
from jaxseg.datasets import recorded_splits, split_loader
from jaxseg.errors import JaxsegError
from jaxseg.inference import TrainedModel
from jaxseg.inspect import network_cost
from jaxseg.loop import train_and_evaluate, versions
from jaxseg.models import MODELS
from jaxseg.paper_check import paper_note
from jaxseg.ranking import rank
from jaxseg.run_folder import RunFolder
from jaxseg.scoring import count_loader, figure_predictions, print_table

TABLES = {"cytoplasm": ("table1.md", "Table 1: cytoplasm segmentation"),
          "nuclei": ("table2.md", "Table 2: nuclei segmentation")}
METHOD_NAMES = {"unet": "U-Net", "vgg19": "U-Net + VGG19", "resnet50": "U-Net + ResNet50",
                "mobilenet": "U-Net + MobileNet", "efficientnetb2": "U-Net + EfficientNetB2",
                "densenet121": "U-Net + DenseNet121"}
# The paper's columns but Dice (which leads the table, with its interval), means over seeds.
COLUMNS = (("Accuracy", "accuracy"), ("Sensitivity", "sensitivity"), ("Precision", "precision"),
           ("IoU", "iou"), ("mean IoU incl. background", "mean_iou"))
OTSU = "otsu"  # the baseline's row key
# Resamples of the bootstrap and its seed: the tables are the same each time they are rebuilt.
RESAMPLES, RANKING_SEED = 2000, 0
NOTE = (
  "Dice is of the target against the rest, pooled over every test pixel of a seed's run, then "
  "averaged over the seeds, in percent; per-image Dice averages each test image's Dice "
  "instead. Intervals are 95% percentile intervals of a bootstrap that resamples both the "
  "seeds and the test images; the difference from the best is paired (the same resamples for "
  "both methods). Methods that share a letter in \"Group\" cannot be told apart: Friedman's "
  "test over the methods, then Wilcoxon's signed-rank test of each pair on per-image Dice "
  "(averaged over seeds), Holm-corrected, at level 0.05 (docs/study.md). Accuracy, "
  "sensitivity, precision, IoU and mean IoU over target and background are pooled over the "
  "test pixels and averaged over the seeds. The Otsu row is the paper's mask method on the "
  "same test images at full resolution, brought to the evaluation scale; it does not depend on "
  "the seed. Variables include BatchNorm statistics; GFLOPs are XLA's count of one image's "
  "forward pass at the training input size; images/s is training images over the time of the "
  "train steps in each run's fastest epoch after the first (which compiles), the median over "
  "the seeds, on the device named above: other work on the machine only slows an epoch."
)
CELL_NOTE = (
  "A row marked 3-class is one model of background, cytoplasm and nucleus (--target cell), "
  "scored on this table's target from each pixel's most probable class; the same run gives its "
  "row in both tables, where a binary row is a model of this target alone."
)
COST_COLUMNS = ("Seeds", "Variables (M)", "GFLOPs / image", "Train images/s")


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
  parser.add_argument("--seeds", type=int, default=1,
                      help="runs of each method and target: seeds --seed, --seed + 1, ...; "
                           "every run keeps the split of --seed")
  parser.add_argument("--no-train", action="store_true",
                      help="train nothing: rebuild the tables and figures from the finished "
                           "runs in OUT/runs")
  parser.add_argument("--figure-method", choices=MODELS,
                      help="method of Figure 4 (default: the best mean validation Dice)")
  flags.add_config_flags(parser)  # every run's settings; --backbone and --target are set per run
  return parser.parse_args(argv)


def comma_list(value: str, choices: tuple[str, ...], flag: str) -> list[str]:
  names = [name for name in value.split(",") if name]
  unknown = [name for name in names if name not in choices]
  if unknown or not names:
    raise JaxsegError(f"--{flag} {value!r}: choose from {','.join(choices)}")
  return names


def run_plan(base, methods, targets, seeds: int) -> list[tuple[str, str, str, object]]:
  """(method, target, run folder name, config) of every run: the first seed's folder is
  METHOD-TARGET, the others' METHOD-TARGET-seedN; all share the split of ``base``."""
  plan = []
  for target in targets:
    for method in methods:
      for repeat in range(seeds):
        seed = base.seed + repeat
        name = f"{method}-{target}" + (f"-seed{seed}" if repeat else "")
        config = base.replace(backbone=method, target=target, seed=seed,
                              split_seed=base.data_seed).validate()
        plan.append((method, target, name, config))
  return plan


def train_or_skip(path: Path, config, train: bool = True) -> dict:
  """The summary of the run at ``path``: trained, resumed, or read when it has finished (and
  only read, without ``train``)."""
  run = RunFolder(path)
  if not train and not run.summary_file.exists():
    raise JaxsegError(f"{run.path}: no finished run (--no-train reads finished runs only)")
  if run.summary_file.exists():
    summary = run.read_summary()
    if summary["config"]["epochs"] != config.epochs:
      raise JaxsegError(f"{run.path} finished after {summary['config']['epochs']} epochs, not "
                        f"{config.epochs}; choose another --out")
    if "otsu_test_images" not in summary:
      raise JaxsegError(f"{run.path}: made by an earlier jaxseg that did not record each test "
                        "image's counts; choose another --out")
    print(f"{run.path.name}: finished earlier, skipped")
    return summary
  # As a resume, training checks that the settings still match the run's own.
  summary = train_and_evaluate(config, path, resume=run.exists())
  print_table(summary)
  return summary


def fastest_images_per_second(path: Path) -> float:
  """The training images/s of the run at ``path`` in its fastest epoch after the first (which
  compiles; of a run of one epoch, that one): other work sharing the machine only slows an
  epoch, so the fastest is the nearest to the method's own speed."""
  run = RunFolder(path)
  history = run.read_metrics()
  if not history:
    raise JaxsegError(f"{run.metrics_file}: no epochs recorded; the tables' speeds come from "
                      "each run's epochs")
  return max(epoch["train_images_per_second"] for epoch in history[1:] or history)


def settings_line(summaries: dict[str, list[dict]]) -> str:
  first = next(iter(summaries.values()))[0]
  config, images = first["config"], first["images"]
  data = first["data_root"]
  if config["data"] == "synthetic":
    data = (f"synthetic version {config['synthetic_version']} ({config['num_images']} images "
            f"of {config['synthetic_size']}px)")
  size = f"image size {config['image_size']}x{config['image_size']}"
  if config.get("scale"):
    size = (f"images scaled by {config['scale']}, trained on random {config['image_size']}px "
            f"crops, evaluated whole by {config['window_size'] or config['image_size']}px "
            "sliding windows")
  rate = f"learning rate {config['learning_rate']}"
  if config.get("lr_schedule") == "cosine":
    rate += f" (cosine decay after {config['warmup_epochs']} warm-up epochs)"
  areas = ", ".join(f"{name} {area:.0f}" for name, area in
                    first.get("test_median_area", {}).items() if area is not None)
  return (f"Settings: preset {first['preset']}, epochs {config['epochs']}, {size}, batch "
          f"{config['batch_size']}, {rate}, plain U-Net filters {config['unet_filters']}, "
          f"data {data}, split {config.get('split', 'random')}; {images['train']} train, "
          f"{images['val']} validation, {images['test']} test images"
          + (f" (median test object area in pixels at the evaluation scale: {areas})"
             if areas else "") + f"; device {first['device']}.")


def target_test(summary: dict, target: str) -> dict:
  """A run's test metrics of ``target``: a binary run's own, a 3-class run's of that target."""
  return summary["test"][target] if summary["target"] == CELL else summary["test"]


def method_row(runs: list[dict], cost: dict, target: str) -> dict:
  """One method's test metrics of ``target`` (means over its seeds), its validation Dice and
  best epochs, and its ``cost`` (variables, GFLOPs, training speed)."""
  tests = [target_test(run, target) for run in runs]
  return {
    "test": {key: statistics.mean(test[key] for test in tests) for _, key in COLUMNS},
    "seeds": len(runs),
    "val_dice": statistics.mean(run["val_dice"] for run in runs),
    "best_epochs": [run["best_epoch"] for run in runs],
    "epochs": runs[0]["config"]["epochs"],
    **cost,
  }


def row_label(key: str) -> str:
  """A table row's name: the method's, marked where its run is a 3-class one (METHOD-cell)."""
  if key == OTSU:
    return "Otsu threshold (paper's masks)"
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


def table_counts(results: dict, target: str) -> dict[str, np.ndarray]:
  """Per row of ``target``'s table and the Otsu baseline, the test images' confusion counts
  (seeds, images, 4); every run must have tested the same images, in the same order."""
  counts, names = {}, None
  for kind in (target, CELL):
    for method, runs in results.get(kind, {}).items():
      for run in runs:
        if names is None:
          names, first = run["test_images"]["names"], run
        if run["test_images"]["names"] != names:
          raise JaxsegError(f"{method} (seed {run['config']['seed']}) tested other images than "
                            f"{first['backbone']}; a ranking pairs runs on the same test set")
      counts[method + ("" if kind == target else f"-{CELL}")] = np.array(
        [run["test_images"][target] for run in runs])
  seeds = len(next(iter(counts.values())))
  counts[OTSU] = np.repeat(np.array([first["otsu_test_images"][target]]), seeds, axis=0)
  return counts


def with_ranking(rows: dict[str, dict], ranking: dict) -> dict[str, dict]:
  """The table's rows, the Otsu baseline's last, each with its ranking (`jaxseg.ranking.rank`):
  Dice and per-image Dice with their intervals, the difference from the best, its group."""
  return {key: {**rows.get(key, {}), **ranking["methods"][key]} for key in [*rows, OTSU]}


def _interval(value: float, interval: list[float]) -> str:
  low, high = interval
  return f"{100 * value:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


def table(target: str, summaries: dict[str, list[dict]], rows: dict[str, dict],
          ranking: dict) -> str:
  header = ["Methods", "Dice (%) [95% interval]", "Difference from best", "Group",
            "Per-image Dice", *(title for title, _ in COLUMNS), *COST_COLUMNS]
  lines = [f"# {TABLES[target][1]} (test set)", "", settings_line(summaries), "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for key, row in rows.items():
    values = [_interval(row["pooled_dice"], row["pooled_dice_interval"]),
              "best" if key == ranking["best"] else
              _interval(row["difference"], row["difference_interval"]),
              row["letters"], _interval(row["per_image_dice"], row["per_image_dice_interval"])]
    if key == OTSU:
      values += ["-"] * (len(COLUMNS) + len(COST_COLUMNS))
    else:
      values += [f"{100 * row['test'][column]:.2f}" for _, column in COLUMNS]
      values += [str(row["seeds"]), f"{row['variables'] / 1e6:.1f}", f"{row['gflops']:.2f}",
                 f"{row['train_images_per_second']:.1f}"]
    lines.append("| " + " | ".join([row_label(key), *values]) + " |")
  lines += ["", reading(rows, ranking), "", NOTE]
  if any(key.endswith(f"-{CELL}") for key in rows):
    lines += ["", CELL_NOTE]
  lines += ["", paper_note(target)]
  weights = [f"{METHOD_NAMES[m]}: {runs[0]['weights']}" for m, runs in summaries.items()
             if m != "unet"]
  if weights:
    lines += ["", "Encoder weights: " + "; ".join(weights) + ". The paper's encoders start "
              "from ImageNet weights; where these say random initialisation, the encoder "
              "learned from the training images alone."]
  return "\n".join(lines) + "\n"


def reading(rows: dict[str, dict], ranking: dict) -> str:
  """What the table supports, in words drawn from its statistics alone."""
  best = ranking["best"]
  tied = [row_label(key) for key, row in rows.items()
          if key != best and "a" in row["letters"]]
  friedman = ranking["friedman"]
  tests = (f"Friedman's test over the {len(rows)} rows: p = {friedman['p']:.2g}"
           if friedman["p"] is not None else friedman["skipped"])
  detectable = [row["detectable_difference"] for row in rows.values()
                if row["detectable_difference"] is not None]
  runs = sum(len(row["best_epochs"]) for key, row in rows.items() if key != OTSU)
  late = sum(1 for key, row in rows.items() if key != OTSU for epoch in row["best_epochs"]
             if epoch > 0.9 * row["epochs"])
  return (f"**Reading.** Highest pooled Dice: {row_label(best)}, "
          f"{_interval(rows[best]['pooled_dice'], rows[best]['pooled_dice_interval'])}%. "
          + (f"Not told apart from it (group a): {', '.join(tied)}. " if tied else
             "Every other row differs from it. ")
          + f"{tests}; {ranking['seeds']} seeds, {ranking['images']} test images. "
          f"The smallest difference from the best this study would detect with 80% power is "
          f"{100 * np.median(detectable):.2f} points of Dice (median over the rows; "
          f"{100 * min(detectable):.2f}-{100 * max(detectable):.2f}); a smaller true "
          f"difference may be there unseen. Best epoch in the last tenth of the epochs: "
          f"{late} of {runs} runs.")


def best_row(rows: dict[str, dict[str, dict]]) -> str:
  """The row (METHOD or METHOD-cell) with the best validation Dice, averaged over the tables:
  the test images play no part in the choice."""
  keys = next(iter(rows.values()))
  return max(keys, key=lambda k: np.mean([by_row[k]["val_dice"] for by_row in rows.values()]))


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
    loader = split_loader(config, sorted(test, key=lambda example: example.name))
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
  plan = run_plan(base.validate(), methods, targets, args.seeds)

  started = time.strftime("%Y-%m-%d %H:%M:%S %z")
  results = {target: {method: [] for method in methods} for target in targets}
  speeds = {target: {method: [] for method in methods} for target in targets}
  for number, (method, target, name, config) in enumerate(plan, 1):
    print(f"\n[{number}/{len(plan)}] {name}")
    results[target][method].append(train_or_skip(args.out / "runs" / name, config,
                                                 train=not args.no_train))
    speeds[target][method].append(fastest_images_per_second(args.out / "runs" / name))

  costs, measured = {target: {} for target in targets}, {}
  for target in targets:  # one image's forward pass, at the runs' size
    for method in methods:
      config = base.replace(backbone=method, target=target)
      head = (method, config.out_channels)  # both binary targets' networks are one
      if head not in measured:
        variables, gflops = network_cost(config)
        measured[head] = {"variables": variables, "gflops": gflops}
      costs[target][method] = {**measured[head], "train_images_per_second": statistics.median(
        speeds[target][method])}
  rows, rankings = table_rows(results, costs), {}
  for target, by_row in rows.items():
    rankings[target] = rank(table_counts(results, target), rng=np.random.default_rng(
      RANKING_SEED), resamples=RESAMPLES)
    ranked = with_ranking(by_row, rankings[target])
    summaries = results.get(target, results.get(CELL))
    (args.out / TABLES[target][0]).write_text(table(target, summaries, ranked, rankings[target]))
    rows[target] = ranked
  plots.study_figure(rows, {key: row_label(key) for by_row in rows.values() for key in by_row},
                     args.out / "study.png")
  binary = any(target != CELL for target in targets)
  chosen = best_row({target: {key: row for key, row in by_row.items() if key != OTSU}
                     for target, by_row in rows.items()})
  if args.figure_method:
    chosen = args.figure_method + ("" if binary else f"-{CELL}")
  figure(args.out, chosen, targets)
  enhancement_figure(args.out, results)
  record = {"command": " ".join(["python -m jaxseg.reproduce", *argv]),
            "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "machine": f"{platform.platform()}, {cpu_model()}", "versions": versions()}
  results_file = args.out / "results.json"
  if args.no_train and results_file.exists():  # the command that trained, and when
    trained = json.loads(results_file.read_text())
    record = {**{key: trained[key] for key in record if key in trained},
              "rebuilt": {**record, "started": started}}
  record.update(figure_method=chosen, rankings=rankings, methods=rows, runs=results)
  results_file.write_text(json.dumps(record, indent=2) + "\n")
  print(f"\n{', '.join(TABLES[t][0] for t in rows)}, study.png, figure2.png, figure4.png, "
        f"results.json in {args.out}")

