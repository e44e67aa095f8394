"""Forms of the convolutions and of BatchNorm's training pass tuned for XLA's CPU backend.

A model is built with XLA's own operations (`KERNELS` ``xla``), the same program on every
backend. `use(model, "cpu")` then gives its layers forms that compute the same values but
that XLA's CPU backend runs faster (docs/performance.md): the layers keep their variables and
names, so a checkpoint or converted weights load into either. Which form a command uses is
the ``kernels`` setting (`jaxseg.config.Config`), resolved once from the platform it runs on;
FLOP counting and export always use ``xla``.

- 1x1 convolutions: one 2-D matmul of the strided input's pixels by the kernel.
- wider convolutions on small images: one matmul over the input's patches.
- depthwise convolutions: a sum over the kernel's taps, with a hand-written gradient.
- BatchNorm's training pass: a hand-written gradient that keeps only the input.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxseg.models import layers
from jaxseg.models.registry import KERNELS

# Up to this many output pixels an image, and this many input channels, a convolution as one
# matmul over its patches runs faster on a CPU than XLA's, gradients included.
PATCHES_MAX_PIXELS = 64
PATCHES_MAX_IN_FEATURES = 512


def use(model: nnx.Module, kernels: str) -> nnx.Module:
  """Give every convolution and BatchNorm of ``model`` the forms of ``kernels`` (in place);
  ``model``."""
  if kernels not in KERNELS:
    raise ValueError(f"kernels {kernels!r}: choose from {', '.join(KERNELS)}")
  cpu = kernels == "cpu"
  for _, module in nnx.iter_modules(model):
    if isinstance(module, layers.BatchNorm):
      module.training_normalize = normalize_by_hand if cpu else None
    elif isinstance(module, nnx.Conv):
      module.conv_general_dilated = _cpu_conv(module) if cpu else lax.conv_general_dilated
  return model


def _cpu_conv(layer: nnx.Conv):
  if layer.feature_group_count == layer.in_features > 1:
    return depthwise_as_taps
  if tuple(layer.kernel_size) == (1, 1):
    return pointwise_as_matmul
  return spatial_conv


def _undilated(rewrite):
  """A `lax.conv_general_dilated` that hands an undilated convolution to
  ``rewrite(lhs, rhs, window_strides, pads, feature_group_count, **options)``, with the strides
  and the padding's (low, high) pairs as tuples; where ``rewrite`` returns None it is the
  convolution."""

  @functools.wraps(rewrite)
  def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                           rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                           **options):
    if all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
      pads = (lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
              if isinstance(padding, str) else padding)
      out = rewrite(lhs, rhs, tuple(window_strides), tuple(map(tuple, pads)),
                    feature_group_count, **options)
      if out is not None:
        return out
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers,
                                    feature_group_count=feature_group_count, **options)

  return conv_general_dilated


@_undilated
def pointwise_as_matmul(lhs, rhs, window_strides, pads, feature_group_count, *, precision=None,
                        preferred_element_type=None, **options):
  """1x1 kernels: one 2-D matmul of the strided input's pixels by the kernel. XLA's CPU
  backend wraps a 1x1 convolution's gradients in layout copies, and runs a 4-D einsum's
  gradients more slowly still ("1x1 convolutions as matmuls" in docs/performance.md). Padded
  or grouped ones stay convolutions."""
  if feature_group_count != 1 or any(p != (0, 0) for p in pads):
    return None
  stride_h, stride_w = window_strides
  strided = lhs[:, ::stride_h, ::stride_w]
  n, h, w, channels = strided.shape
  out = jnp.matmul(strided.reshape(n * h * w, channels), rhs[0, 0], precision=precision,
                   preferred_element_type=preferred_element_type)
  return out.reshape(n, h, w, out.shape[-1])


@_undilated
def spatial_conv(lhs, rhs, window_strides, pads, feature_group_count, *, precision=None,
                 preferred_element_type=None, **options):
  """Kernels wider than 1x1: on small images (VGG19's last block, ResNet50's last stages,
  DenseNet121's last dense blocks at 128x128) one matmul over the input's patches ("Small
  convolutions as patch matmuls" in docs/performance.md). Larger images, and grouped
  convolutions, keep XLA's convolution and its gradients."""
  if feature_group_count != 1 or preferred_element_type is not None:
    return None
  out_shape = _conv_out_shape(lhs.shape[1:3], rhs.shape[:2], window_strides, pads)
  if out_shape[0] * out_shape[1] <= PATCHES_MAX_PIXELS and rhs.shape[2] <= PATCHES_MAX_IN_FEATURES:
    return _patches_matmul(lhs, rhs, window_strides, pads, out_shape, precision)
  return None


def _conv_out_shape(in_shape, kernel_shape, strides, pads) -> tuple[int, int]:
  return tuple((extent + low + high - k) // s + 1
               for extent, k, s, (low, high) in zip(in_shape, kernel_shape, strides, pads))


def _patches_matmul(x, kernel, strides, pads, out_shape, precision):
  """NHWC ``x`` convolved with HWIO ``kernel`` as the matmul of its patches, each tap's strided
  view side by side along the channels, with the kernel's rows in the same (tap, channel)
  order. Its gradients are matmuls too, where XLA's input gradient first copies the whole
  kernel flipped and transposed: a large copy beside a small image."""
  kh, kw, in_features, out_features = kernel.shape
  padded = layers.zero_pad(x, pads)
  patches = jnp.concatenate([_view(padded, (i, j), out_shape, strides)
                             for i in range(kh) for j in range(kw)], axis=-1)
  return jnp.einsum("nhwk,ko->nhwo", patches,
                    kernel.reshape(kh * kw * in_features, out_features), precision=precision)


@_undilated
def depthwise_as_taps(lhs, rhs, window_strides, pads, feature_group_count, **options):
  """Depthwise NHWC inputs and HWIO kernels: the sum over the kernel's taps of the strided,
  shifted input times each channel's weight, accumulated in float32. XLA's CPU backend runs
  grouped convolutions far slower than this, gradients included ("Depthwise convolutions as
  tap sums" in docs/performance.md)."""
  # Output channel c * multiplier + m reads input channel c.
  x = jnp.repeat(lhs, rhs.shape[-1] // lhs.shape[-1], axis=-1).astype(jnp.float32)
  out = _tap_sum(x, rhs[:, :, 0].astype(jnp.float32), window_strides, pads)
  return out.astype(options.get("preferred_element_type") or jnp.result_type(lhs, rhs))


def _view(x: jax.Array, start: tuple[int, int], out_shape: tuple[int, int],
          strides: tuple[int, int]) -> jax.Array:
  """Rows ``start[0] + strides[0] * h`` of NHWC ``x`` for h < out_shape[0], columns likewise."""
  (a, b), (oh, ow), (sh, sw) = start, out_shape, strides
  return x[:, a:a + (oh - 1) * sh + 1:sh, b:b + (ow - 1) * sw + 1:sw]


def _map_taps(tap_fn, x, kernel_shape, strides, pads, out_shape) -> jax.Array:
  """``tap_fn(view)`` for each kernel tap's strided view of NHWC ``x`` zero-padded by
  ``pads``, one tap at a time (a loop: one view alive at once), stacked in row-major tap order."""
  (kh, kw), (sh, sw), (oh, ow) = kernel_shape, strides, out_shape
  padded = layers.zero_pad(x, pads)
  window = (x.shape[0], (oh - 1) * sh + 1, (ow - 1) * sw + 1, x.shape[3])

  def tap_fn_at(tap):
    return tap_fn(lax.dynamic_slice(padded, (0, tap // kw, tap % kw, 0), window)[:, ::sh, ::sw])

  return lax.map(tap_fn_at, jnp.arange(kh * kw))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _tap_sum(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
             pads: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """A depthwise convolution of float32 ``x`` (N, H, W, C) with ``kernel`` (kh, kw, C)."""
  return _tap_sum_forward(x, kernel, strides, pads)[0]


def _tap_sum_forward(x, kernel, strides, pads):
  padded = layers.zero_pad(x, pads)
  out_shape = _conv_out_shape(x.shape[1:3], kernel.shape[:2], strides, pads)
  kh, kw = kernel.shape[:2]
  out = sum(_view(padded, (i, j), out_shape, strides) * kernel[i, j]
            for i in range(kh) for j in range(kw))
  # Only the input is kept for the gradient: JAX would keep each tap's slice, a copy of the
  # input per tap, all of them alive from the forward pass to the backward one.
  return out, (x, kernel)


def _tap_sum_backward(strides, pads, residuals, grad):
  # The barrier makes XLA pad x anew here, not keep the forward pass's padded copy alive.
  x, kernel = lax.optimization_barrier(residuals)
  (kh, kw), (sh, sw), (oh, ow) = kernel.shape[:2], strides, grad.shape[1:3]
  padded_h, padded_w = (extent + sum(p) for extent, p in zip(x.shape[1:3], pads))
  # The input's gradient correlates the stride-dilated output gradient with the flipped
  # kernel: placed on the padded input's grid, with kernel - 1 zeros before it.
  spread = lax.pad(grad, jnp.zeros((), grad.dtype),
                   ((0, 0, 0), (kh - 1, padded_h - (oh - 1) * sh - 1, sh - 1),
                    (kw - 1, padded_w - (ow - 1) * sw - 1, sw - 1), (0, 0, 0)))
  (top, _), (left, _) = pads
  x_grad = sum(_view(spread, (top + kh - 1 - i, left + kw - 1 - j), x.shape[1:3], (1, 1))
               * kernel[i, j] for i in range(kh) for j in range(kw))
  # The kernel's gradient: per tap, the sum over batch and pixels of its view of the input
  # times the output gradient. One tap at a time (a loop, not nine independent sums): nine
  # views at once cost nine input-sized buffers, and run slower on a CPU.
  kernel_grad = _map_taps(lambda view: jnp.sum(view * grad, axis=(0, 1, 2)),
                          x, (kh, kw), strides, pads, (oh, ow))
  return x_grad, kernel_grad.reshape(kernel.shape)


_tap_sum.defvjp(_tap_sum_forward, _tap_sum_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_by_hand(x, scale, bias, epsilon):
  """`jaxseg.models.layers.normalize` with a hand-written gradient over NHWC inputs: two sums
  over batch and pixels, and only the input kept for the backward pass. JAX's derivative of
  the normalisation keeps ``x - mean`` as well, an activation-sized buffer per layer that
  XLA's CPU runtime faults in anew every step ("BatchNorm's hand-written gradient" in
  docs/performance.md)."""
  return layers.normalize(x, scale, bias, epsilon)


def _normalize_forward(x, scale, bias, epsilon):
  y, mean, var = layers.normalize(x, scale, bias, epsilon)
  return (y, mean, var), (x, scale, mean, lax.rsqrt(var + epsilon))


def _normalize_backward(epsilon, residuals, cotangents):
  # The barrier keeps XLA from merging ``x - mean`` here with the forward pass's, which would
  # keep that buffer alive in between after all.
  x, scale, mean, inv = lax.optimization_barrier(residuals)
  y_grad, mean_grad, var_grad = (c.astype(jnp.float32) for c in cotangents)
  axes = tuple(range(x.ndim - 1))
  count, dtype = x.size // x.shape[-1], x.dtype
  x = x.astype(jnp.float32)
  bias_grad = y_grad.sum(axes)
  scale_grad = (y_grad * (x - mean)).sum(axes) * inv
  # The normalised input again, written unlike ``x - mean`` above: XLA would compute that once
  # and keep it in memory for both uses; as two expressions each fuses into its own loop.
  normalised = x * inv - mean * inv
  # d y / d x through the batch's mean and variance, and the direct paths to them.
  x_grad = (scale * inv * (y_grad - (bias_grad + normalised * scale_grad) / count)
            + (mean_grad + 2 * var_grad * normalised / inv) / count)
  return x_grad.astype(dtype), scale_grad.astype(dtype), bias_grad.astype(dtype)


normalize_by_hand.defvjp(_normalize_forward, _normalize_backward)
