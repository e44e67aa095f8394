"""Soft Jaccard distance, the paper's loss: of one target (sigmoid), or averaged over classes
(softmax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_jaccard_loss(logits: jax.Array, targets: jax.Array, smooth: float = 1.0) -> jax.Array:
  """``1 - (|P*T| + s) / (|P| + |T| - |P*T| + s)`` with P the sigmoid probabilities.

  Sums run over the whole batch (every pixel weighs the same, as the pooled metrics do);
  ``smooth`` keeps the loss defined on batches without foreground. Computed in float32.
  """
  probs = jax.nn.sigmoid(logits.astype(jnp.float32))
  return 1.0 - _soft_jaccard(probs, targets.astype(jnp.float32), smooth)


def multiclass_soft_jaccard_loss(logits: jax.Array, labels: jax.Array,
                                 smooth: float = 1.0) -> jax.Array:
  """The mean over classes c of ``1 - (|P_c*T_c| + s) / (|P_c| + |T_c| - |P_c*T_c| + s)``, with
  P the softmax over the last axis of ``logits`` (B, H, W, C) and T the one-hot of the class
  mask ``labels`` (B, H, W).

  Each class's sums run over the whole batch, as segmentation_models.pytorch's
  ``JaccardLoss(mode="multiclass")`` pools them. Its smoothing differs: smp adds ``smooth`` 0
  (and 1e-7 under the division) and zeroes the term of a class that no pixel of the batch
  holds, still dividing by every class. Here ``smooth`` is 1, as in the binary loss, which
  keeps every term defined: an absent class's is ``|P_c| / (|P_c| + 1)``, pulling its
  probabilities down instead of leaving them free. On a batch that holds every class the two
  differ by the smoothing terms alone. Computed in float32.
  """
  logits = logits.astype(jnp.float32)
  probs = jax.nn.softmax(logits, axis=-1)
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  every_pixel = tuple(range(logits.ndim - 1))
  return jnp.mean(1.0 - _soft_jaccard(probs, targets, smooth, every_pixel))


def _soft_jaccard(probs, targets, smooth: float, axis=None) -> jax.Array:
  """``(|P*T| + s) / (|P| + |T| - |P*T| + s)``, the sums over ``axis`` (None: all)."""
  intersection = jnp.sum(probs * targets, axis=axis)
  union = jnp.sum(probs, axis=axis) + jnp.sum(targets, axis=axis) - intersection
  return (intersection + smooth) / (union + smooth)
