"""Soft Jaccard distance, the paper's loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_jaccard_loss(logits: jax.Array, targets: jax.Array, smooth: float = 1.0) -> jax.Array:
  """``1 - (|P*T| + s) / (|P| + |T| - |P*T| + s)`` with P the sigmoid probabilities.

  Sums run over the whole batch (every pixel weighs the same, as the pooled metrics do);
  ``smooth`` keeps the loss defined on batches without foreground. Computed in float32.
  """
  probs = jax.nn.sigmoid(logits.astype(jnp.float32))
  targets = targets.astype(jnp.float32)
  intersection = jnp.sum(probs * targets)
  union = jnp.sum(probs) + jnp.sum(targets) - intersection
  return 1.0 - (intersection + smooth) / (union + smooth)
