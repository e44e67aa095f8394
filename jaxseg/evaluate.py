"""Reload a run's best checkpoint and report its test metrics: ``python -m jaxseg.evaluate --workdir RUN``.

The numbers equal the ``test`` entry of the run's ``summary.json``: the same test images (the
split the run recorded, each file checked against its fingerprint), preprocessing and eval step.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import json
from pathlib import Path

from jaxseg.cli import ArgumentParser, command
from jaxseg.datasets import make_loaders
from jaxseg.inference import TrainedModel
from jaxseg.metrics import run_scores
from jaxseg.scoring import evaluate_loader, otsu_counts, print_table


def evaluate(path: Path) -> dict:
  """Test metrics of the best checkpoint of the run at ``path``, beside the Otsu baseline."""
  trained = TrainedModel(path)
  splits = trained.splits()
  loader = make_loaders(trained.config, splits, names=("test",))["test"]
  return {
    "target": trained.config.target,
    "weights": trained.saved["weights"],
    "images": {split: len(getattr(splits, split)) for split in ("train", "val", "test")},
    "best_epoch": trained.meta["epoch"],
    "test": evaluate_loader(trained.steps, trained.state, loader),
    "otsu_test": run_scores(otsu_counts(trained.config, loader)),
  }


@command(compilation_cache=True)
def main(argv=None) -> None:
  parser = ArgumentParser(prog="python -m jaxseg.evaluate", description=__doc__)
  parser.add_argument("--workdir", type=Path, required=True, help="a run folder of jaxseg.train")
  parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
  args = parser.parse_args(argv)
  result = evaluate(args.workdir)
  if args.json:
    print(json.dumps(result, indent=2))
  else:
    print_table(result)

