"""On-device geometric augmentation: exact flips, identity, image/mask alignment, determinism."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxseg.data.augment import Augment, augment_batch

OFF = Augment(rotate_prob=0, hflip_prob=0, vflip_prob=0, scale_prob=0)


def block_mask(size=32):
  """Two 32x32 masks of 8x8 blocks holding classes 0, 1, 2 (different layout per example)."""
  rng = np.random.default_rng(0)
  blocks = rng.integers(0, 3, size=(2, size // 8, size // 8))
  return np.kron(blocks, np.ones((8, 8), int)).astype(np.int32)


def batch():
  """Masks of blocks, and images whose channel 0 is mask * 100 (channels 1, 2 vary smoothly)."""
  masks = block_mask()
  ramp = np.linspace(0, 1, masks.shape[1], dtype=np.float32)
  rows, columns = np.broadcast_to(ramp[:, None], masks.shape), np.broadcast_to(ramp, masks.shape)
  images = np.stack([masks * 100.0, columns, rows], axis=-1).astype(np.float32)
  return images, masks


@pytest.mark.parametrize("flip", ["hflip_prob", "vflip_prob"])
def test_flip_twice_is_identity(flip):
  images, masks = batch()
  config = dataclasses.replace(OFF, **{flip: 1.0})
  once = augment_batch(jax.random.key(0), images, masks, config)
  twice = augment_batch(jax.random.key(1), *once, config)
  assert not np.array_equal(once[0], images)
  np.testing.assert_array_equal(twice[0], images)
  np.testing.assert_array_equal(twice[1], masks)


def test_hflip_mirrors_columns():
  images, masks = batch()
  config = dataclasses.replace(OFF, hflip_prob=1.0)
  flipped, flipped_masks = augment_batch(jax.random.key(0), images, masks, config)
  np.testing.assert_array_equal(flipped, images[:, :, ::-1])
  np.testing.assert_array_equal(flipped_masks, masks[:, :, ::-1])


def test_zero_rotation_unit_scale_is_identity():
  images, masks = batch()
  config = Augment(rotate_prob=1, max_rotation=0, hflip_prob=0, vflip_prob=0, scale_prob=1,
                   scale_range=(1, 1))
  out_images, out_masks = augment_batch(jax.random.key(0), images, masks, config)
  np.testing.assert_allclose(out_images, images, atol=1e-5)
  np.testing.assert_array_equal(out_masks, masks)


def test_all_zero_probabilities_return_inputs():
  images, masks = batch()
  assert not OFF.active and Augment().active
  out_images, out_masks = augment_batch(jax.random.key(0), images, masks, OFF)
  assert out_images is images and out_masks is masks


def test_image_and_mask_stay_aligned():
  images, masks = batch()
  config = Augment(rotate_prob=1, hflip_prob=1, vflip_prob=1, scale_prob=1)
  out_images, out_masks = augment_batch(jax.random.key(3), images, masks, config)
  out_images, out_masks = np.asarray(out_images), np.asarray(out_masks)
  assert not np.array_equal(out_masks, masks)
  assert set(np.unique(out_masks).tolist()) <= {0, 1, 2}
  assert out_masks.dtype == masks.dtype and out_images.dtype == images.dtype
  # Interior: the 3x3 neighbourhood holds one label, so bilinear blending cannot mix labels.
  padded = np.pad(out_masks, ((0, 0), (1, 1), (1, 1)), mode="edge")
  shifts = [padded[:, 1 + dy:33 + dy, 1 + dx:33 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
  interior = np.all([shifted == out_masks for shifted in shifts], axis=0)
  assert interior.mean() > 0.5
  agree = np.rint(out_images[..., 0] / 100) == out_masks
  assert agree[interior].mean() >= 0.99


def test_reproducible_from_key_and_jittable():
  images, masks = batch()
  config = Augment(rotate_prob=1, hflip_prob=0.5, vflip_prob=0.5, scale_prob=1)
  jitted = jax.jit(augment_batch, static_argnames="config")
  first = jitted(jax.random.key(7), images, masks, config=config)
  again = jitted(jax.random.key(7), images, masks, config=config)
  other = jitted(jax.random.key(8), images, masks, config=config)
  eager = augment_batch(jax.random.key(7), images, masks, config)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  np.testing.assert_allclose(first[0], eager[0], atol=1e-3)  # jit may round coordinates differently
  assert not np.allclose(first[0], other[0])
  # Examples get their own transforms, not one for the whole batch.
  same_input = np.repeat(images[:1], 2, axis=0), np.repeat(masks[:1], 2, axis=0)
  out = jitted(jax.random.key(7), *same_input, config=config)
  assert not np.allclose(out[0][0], out[0][1])


def test_keeps_bfloat16_images():
  images, masks = batch()
  images = images.astype(jax.numpy.bfloat16)
  out_images, _ = augment_batch(jax.random.key(0), images, masks, Augment())
  assert out_images.dtype == jax.numpy.bfloat16 and out_images.shape == images.shape


def test_rejects_bad_settings():
  with pytest.raises(ValueError, match="probabilities"):
    Augment(hflip_prob=1.5)
  with pytest.raises(ValueError, match="scale_range"):
    Augment(scale_range=(1.2, 0.8))
