"""Reload a run's best checkpoint and report its test metrics: ``python -m jaxseg.evaluate --workdir RUN``.

The numbers equal the ``test`` entry of the run's ``summary.json``: the same images, split,
preprocessing and eval step.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxseg import engine
from jaxseg.config import enable_compilation_cache
from jaxseg.errors import ArgumentParser, JaxsegError, cli
from jaxseg.run import RunFolder
from jaxseg.train import evaluate_loader, make_loaders, otsu_scores, print_table


def evaluate(run: RunFolder) -> dict:
  """Test metrics of the best checkpoint of ``run``, beside the Otsu baseline."""
  config, saved = run.read_config()
  if not run.has_checkpoint("best"):
    raise JaxsegError(f"{run.path}: no best checkpoint yet (training has not finished an epoch)")
  _, loaders = make_loaders(config)
  model, state = engine.build(config, engine.new_model(config))
  steps = engine.Steps(model, config.augment, config.batch_size)
  state, meta = run.restore("best", steps.place(state))
  return {
    "target": config.target,
    "weights": saved["weights"],
    "images": {split: len(loader) for split, loader in loaders.items()},
    "best_epoch": meta["epoch"],
    "test": evaluate_loader(steps, state, loaders["test"]),
    "otsu_test": otsu_scores(loaders["test"], config.target),
  }


@cli
def main(argv=None) -> None:
  parser = ArgumentParser(prog="python -m jaxseg.evaluate", description=__doc__)
  parser.add_argument("--workdir", type=Path, required=True, help="a run folder of jaxseg.train")
  parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
  args = parser.parse_args(argv)
  enable_compilation_cache()
  run = RunFolder(args.workdir)
  result = evaluate(run)
  run.close()
  if args.json:
    print(json.dumps(result, indent=2))
  else:
    print_table(result)


if __name__ == "__main__":
  main()
