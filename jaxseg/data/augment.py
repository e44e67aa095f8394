"""The paper's geometric augmentation (rotation, flips, scaling) on the accelerator.

Runs inside the jitted train step. Each example draws one affine map about the image centre,
and the image and its mask are resampled once through that same map: the image bilinearly,
the mask by nearest neighbour so that labels stay labels. Both use 'reflect' borders, so the
pixels that come in from outside the image stay aligned with their labels.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates


@dataclasses.dataclass(frozen=True)
class Augment:
  """How often each transform is applied, and its range. Hashable: a static jit argument."""

  rotate_prob: float = 0.5
  max_rotation: float = 30.0  # degrees; the angle is uniform in [-max_rotation, max_rotation]
  hflip_prob: float = 0.5
  vflip_prob: float = 0.5
  scale_prob: float = 0.5
  scale_range: tuple[float, float] = (0.8, 1.2)

  def __post_init__(self):
    probs = (self.rotate_prob, self.hflip_prob, self.vflip_prob, self.scale_prob)
    if not all(0 <= p <= 1 for p in probs):
      raise ValueError(f"augmentation probabilities must lie in [0, 1], got {probs}")
    low, high = self.scale_range
    if not 0 < low <= high:
      raise ValueError(f"scale_range must be (low, high), 0 < low <= high; got {self.scale_range}")

  @property
  def active(self) -> bool:
    """False when every probability is 0: `augment_batch` then returns its inputs."""
    return any(p > 0 for p in (self.rotate_prob, self.hflip_prob, self.vflip_prob, self.scale_prob))


def _inverse_map(key: jax.Array, config: Augment) -> jax.Array:
  """The 2x2 matrix taking an output pixel's offset from the centre to its input offset."""
  gate_key, angle_key, scale_key = jax.random.split(key, 3)
  probs = jnp.array([config.rotate_prob, config.scale_prob, config.vflip_prob, config.hflip_prob])
  rotate, rescale, vflip, hflip = jax.random.uniform(gate_key, (4,)) < probs
  degrees = jax.random.uniform(angle_key, minval=-config.max_rotation, maxval=config.max_rotation)
  angle = jnp.deg2rad(jnp.where(rotate, degrees, 0.0))
  low, high = config.scale_range
  scale = jnp.where(rescale, jax.random.uniform(scale_key, minval=low, maxval=high), 1.0)
  flips = jnp.where(jnp.array([vflip, hflip]), -1.0, 1.0)  # (rows, columns)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotation = jnp.array([[cos, -sin], [sin, cos]])
  # Dividing by the scale samples nearer the centre: scale > 1 zooms in.
  return flips[:, None] * rotation / scale


def _augment_one(key, image, mask, config: Augment):
  height, width = mask.shape
  matrix = _inverse_map(key, config)
  centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
  dy = jnp.arange(height, dtype=jnp.float32)[:, None] - centre_y
  dx = jnp.arange(width, dtype=jnp.float32)[None, :] - centre_x
  # Written out rather than as a matmul: GPUs may run f32 matmuls in TF32, which would
  # make flips and the identity map inexact.
  coords = (
    centre_y + matrix[0, 0] * dy + matrix[0, 1] * dx,
    centre_x + matrix[1, 0] * dy + matrix[1, 1] * dx,
  )
  resample_plane = lambda plane: map_coordinates(plane, coords, order=1, mode="reflect")
  resampled = jax.vmap(resample_plane, in_axes=-1, out_axes=-1)(image.astype(jnp.float32))
  mask = map_coordinates(mask, coords, order=0, mode="reflect")
  return resampled.astype(image.dtype), mask


def augment_batch(key: jax.Array, images: jax.Array, masks: jax.Array, config: Augment):
  """Randomly rotate, scale and flip each example of ``images`` (B, H, W, C), ``masks`` (B, H, W).

  Reproducible from ``key``; jit it with ``config`` static. Returns arrays of the input shapes
  and dtypes; mask values stay in the set they came from.
  """
  if not config.active:
    return images, masks
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(functools.partial(_augment_one, config=config))(keys, images, masks)
