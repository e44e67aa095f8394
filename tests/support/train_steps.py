"""A few train steps on fixed batches; parameters to an .npz (run by test_distributed.py).

Usage: python -m tests.support.train_steps OUT.npz   (device count from XLA_FLAGS)
"""

import sys

import jax
import numpy as np

from jaxseg import engine
from jaxseg.config import Config
from jaxseg.platform import resolve_kernels


def main(out: str) -> None:
  # A small learning rate: Adam turns gradients that are zero up to rounding into steps of
  # +-lr, whichever way the rounding goes; the losses, compared too, carry no such noise.
  config = Config(unet_filters=4, image_size=32, batch_size=8, seed=3, learning_rate=1e-5,
                  weights="none")
  model, state = engine.build(config, resolve_kernels(config.kernels))
  steps = engine.Steps(model, config.augment, config.batch_size)
  state = steps.place(state)
  rng = np.random.default_rng(0)
  key = jax.random.key(config.seed)
  losses = []
  for _ in range(3):
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    masks = (rng.random((8, 32, 32)) > 0.7).astype(np.uint8)
    state, metrics = steps.train(state, *steps.batch(images, masks), key)
    losses.append(float(metrics["loss"]))
  leaves = jax.tree_util.tree_leaves_with_path((state.params, state.model_state))
  np.savez(out, devices=jax.device_count(), losses=np.array(losses),
           **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves})


if __name__ == "__main__":
  main(sys.argv[1])
