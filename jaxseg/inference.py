"""A trained run, loaded for evaluation and prediction: its config, split and best weights.

The network's abstract state (shapes and dtypes, no initialiser run) is built from the run's
config, and the checkpoint's model item (parameters and BatchNorm statistics) restored into
it; Adam's moments stay on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flax import nnx

from jaxseg import engine
from jaxseg.data.folder import Splits
from jaxseg.datasets import recorded_splits
from jaxseg.errors import JaxsegError
from jaxseg.platform import resolve_kernels
from jaxseg.run_folder import RunFolder


class TrainedModel:
  """The best (or latest) checkpoint of the run at ``path``, ready to predict, its layers in
  ``kernels`` forms (default: the run's setting, resolved for this platform)."""

  def __init__(self, path: Path, target: str | None = None, which: str = "best",
               kernels: str | None = None):
    run = RunFolder(path)
    self.config, self.saved = run.read_config()
    if target is not None and self.config.target != target:
      raise JaxsegError(f"{run.path}: a {self.config.target} run; expected a {target} run")
    self.run = run
    self.path = run.path
    model, state = engine.build(self.config, kernels or resolve_kernels(self.config.kernels),
                                optimizer=False, abstract=True)
    self.model = model
    self.steps = engine.Steps(model, self.config.augment, self.config.batch_size)
    try:
      self.state, self.meta = run.checkpoints.restore(which, self.steps.placement(state))
    finally:
      run.checkpoints.close()
    self.source_size = self.saved.get("source_size")  # [height, width] of training images

  def network(self) -> nnx.Module:
    """The network in evaluation mode, holding the checkpoint's variables."""
    return nnx.merge(self.model.eval_graph, self.state.params, self.state.model_state)

  def splits(self) -> Splits:
    """The run's train / validation / test split as it recorded it, every file checked."""
    return recorded_splits(self.run.read_data_record(), self.config)

  def predict(self, images: np.ndarray) -> np.ndarray:
    """Probabilities of prepared images (N, S, S, 3) at the run's size: of the target (N, S, S),
    or of each class of a 3-class run (N, S, S, 3)."""
    return self.steps.predict(self.state, images)
