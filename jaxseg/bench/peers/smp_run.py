"""A whole training run in segmentation_models_pytorch, as `jaxseg.train` makes one:
``python -m jaxseg.bench.peers.smp_run CONFIG.json OUT.json``.

`jaxseg.bench.run` sets it beside ``python -m jaxseg.train`` on the same settings (a binary
target, a ``--data`` folder): the same split (`jaxseg.data.folder.split_dataset`), the same
decoded, resized, enhanced images and masks in the same batches (`jaxseg.data.pipeline.Loader`,
its plain loader), the same epochs as `jaxseg.bench.epoch` times them
(`smp_unet.time_epochs`: flips, Adam, smp's Jaccard loss, BatchNorm statistics recomputed on
the batches jaxseg recomputes them on, validation Dice, ``latest.pt`` and ``best.pt``), then the
best model's test Dice. It imports no JAX and no TensorFlow: only what a PyTorch user's script
would, so its start-up is its own.

CONFIG.json is a jaxseg ``Config`` as ``to_dict`` writes it (a run's ``config.json`` holds one
under ``config``); OUT.json gets the test Dice and ``wall_seconds`` with the phases of
`jaxseg.loop`'s: start-up, epochs, wrap-up and the process's total.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from jaxseg.bench.peers import smp_unet
from jaxseg.data.enhance import Enhance
from jaxseg.data.folder import split_dataset
from jaxseg.data.pipeline import Loader
from jaxseg.phases import PhaseClock, process_seconds

START_UP = ("imports", "data", "reading_images", "model")
WRAP_UP = ("restore_best", "test")


def run(config: dict, folder: Path, clock: PhaseClock) -> dict:
  """Train and test smp's U-Net with ``config``'s settings, checkpoints in ``folder``."""
  with clock("data"):
    splits = split_dataset(Path(config["data"]), test_fraction=config["test_fraction"],
                           val_fraction=config["val_fraction"],
                           seed=config["seed"] if config["split_seed"] is None
                           else config["split_seed"], split=config["split"])
  with clock("reading_images"):
    loaders = {name: Loader(getattr(splits, name), image_size=config["image_size"],
                            target=config["target"], enhancement=Enhance(**config["enhance"]),
                            batch_size=config["batch_size"], seed=config["seed"], kind="plain")
               for name in ("train", "val", "test")}
    for loader in loaders.values():
      loader.warm()
  with clock("model"):
    trainer = smp_unet.Trainer(config["backbone"], learning_rate=config["learning_rate"],
                               precision=config["precision"])
  train, batch = loaders["train"], config["batch_size"]
  whole = train.steps(drop_remainder=True) * batch
  # jaxseg's orders: epochs count from 1, BatchNorm statistics on epoch 0's first batches.
  orders = [train.order(epoch, shuffle=True)[:whole] for epoch in range(1, config["epochs"] + 1)]
  statistics = train.order(0, shuffle=True)[:whole].reshape(-1, batch)
  if config["batchnorm_images"]:
    statistics = statistics[:-(-config["batchnorm_images"] // batch)]
  with clock("epochs"):
    epochs = list(smp_unet.time_epochs(
      config["backbone"], (train.images, train.masks),
      (loaders["val"].images, loaders["val"].masks), orders, batch_size=batch,
      learning_rate=config["learning_rate"], precision=config["precision"],
      flip_probs=(config["augment"]["hflip_prob"], config["augment"]["vflip_prob"]),
      seed=config["seed"], folder=folder, statistics=list(statistics), trainer=trainer))
  with clock("restore_best"):
    trainer.model.load_state_dict(torch.load(folder / "best.pt")["model"])
  with clock("test"):
    test = smp_unet.predicted_scores(trainer, torch.from_numpy(loaders["test"].images),
                                     torch.from_numpy(loaders["test"].masks), batch)
  return {"best_epoch": 1 + int(np.argmax([epoch["val_dice"] for epoch in epochs])),
          "test": test, "epochs": epochs}


def main(argv=None) -> None:
  config_file, out = map(Path, argv or sys.argv[1:])
  config = json.loads(config_file.read_text())
  config = config.get("config", config)
  clock = PhaseClock({"imports": process_seconds() or 0.0})  # the interpreter and torch
  with tempfile.TemporaryDirectory(prefix="smp-run-") as folder:
    result = run(config, Path(folder), clock)
  result["wall_seconds"] = clock.wall_seconds(START_UP, WRAP_UP)
  result["versions"] = smp_unet.versions()
  out.write_text(json.dumps(result, indent=2))
  print(json.dumps(result["wall_seconds"]))


if __name__ == "__main__":
  main()
