"""Layers shared by the U-Net and the encoder ports.

Every layer that holds Keras weights carries the name of its Keras layer as a static
attribute, ``keras_name``; `jaxseg.weights.load_keras_weights` walks a module tree and
copies each Keras layer into the module that names it. Ports therefore read like the
Keras application code they copy: one constructor call per Keras layer, same name.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]


def _compiled_unoptimised(initializer):
  """``initializer(key, shape, dtype)`` as one program per shape that a CPU compiles without
  LLVM's optimisations; on other backends as it is. Each runs once, and XLA took about a second
  a shape to optimise the code that draws the random numbers: building the quick preset's
  U-Net spent 20 of its 25 s there (docs/cpu-performance.md)."""
  unoptimised = jax.jit(initializer, static_argnums=(1, 2),
                        compiler_options={"xla_backend_optimization_level": 0})

  @functools.wraps(initializer)
  def init(key, shape, dtype=jnp.float32):
    # Traced (`nnx.eval_shape`, a jitted construction), it is part of the caller's program.
    if isinstance(key, jax.core.Tracer) or jax.default_backend() != "cpu":
      return initializer(key, shape, dtype)
    return unoptimised(key, shape, dtype)

  return init


# Keras's default kernel initialiser, which the paper's U-Net and decoder started from; the
# ports keep Flax's lecun_normal: they are loaded from Keras weights. Biases start at zero.
KERAS_KERNEL_INIT = _compiled_unoptimised(nnx.initializers.glorot_uniform())
LECUN_NORMAL = _compiled_unoptimised(nnx.initializers.lecun_normal())


def _named(module: nnx.Module, keras_name: str | None) -> nnx.Module:
  module.keras_name = keras_name
  return module


def conv(
  in_features: int,
  out_features: int,
  kernel_size: int,
  *,
  strides: int = 1,
  padding: str = "SAME",
  use_bias: bool = True,
  kernel_init=LECUN_NORMAL,
  keras_name: str | None = None,
  dtype=jnp.float32,
  rngs: nnx.Rngs,
) -> nnx.Conv:
  """A Keras ``Conv2D``: HWIO kernel, XLA/TensorFlow 'SAME' padding (extra pixel at the end)."""
  layer = nnx.Conv(
    in_features,
    out_features,
    (kernel_size, kernel_size),
    strides=strides,
    padding=padding,
    use_bias=use_bias,
    kernel_init=kernel_init,
    conv_general_dilated=_pointwise_as_matmul if kernel_size == 1 else _spatial_conv,
    dtype=dtype,
    param_dtype=jnp.float32,
    rngs=rngs,
  )
  return _named(layer, keras_name)


_reference_ops = False


@contextlib.contextmanager
def reference_ops():
  """Trace the layers with XLA's own convolutions and Flax's BatchNorm gradient on a CPU too,
  as on other backends: the models' FLOPs (`jaxseg.bench.timing.model_flops`). The CPU forms
  compute the same, some with a loop over kernel taps, whose body XLA's cost analysis counts
  once."""
  global _reference_ops
  previous, _reference_ops = _reference_ops, True
  try:
    yield
  finally:
    _reference_ops = previous


def _cpu_forms() -> bool:
  """Whether to trace the CPU forms of the layers below (docs/cpu-performance.md)."""
  return jax.default_backend() == "cpu" and not _reference_ops


def _on_cpu(rewrite):
  """A `lax.conv_general_dilated` that hands an undilated convolution on a CPU to
  ``rewrite(lhs, rhs, window_strides, pads, feature_group_count, **options)``, with the strides
  and the padding's (low, high) pairs as tuples; where ``rewrite`` returns None, and on other
  backends, it is the convolution. XLA's CPU backend runs some convolutions far slower than
  other ops computing the same (docs/cpu-performance.md)."""

  @functools.wraps(rewrite)
  def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                           rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                           **options):
    undilated = all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    if _cpu_forms() and undilated:
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


@_on_cpu
def _pointwise_as_matmul(lhs, rhs, window_strides, pads, feature_group_count, *, precision=None,
                         preferred_element_type=None, **options):
  """`conv`'s 1x1 kernels: one 2-D matmul of the strided input's pixels by the kernel. XLA's
  CPU backend wraps a 1x1 convolution's gradients in layout copies and runs them up to twice
  as slowly as the matmul, and a 4-D einsum's gradients up to five times as slowly as the 2-D
  matmul's. Padded or grouped ones stay convolutions."""
  if feature_group_count != 1 or any(p != (0, 0) for p in pads):
    return None
  stride_h, stride_w = window_strides
  strided = lhs[:, ::stride_h, ::stride_w]
  n, h, w, channels = strided.shape
  out = jnp.matmul(strided.reshape(n * h * w, channels), rhs[0, 0], precision=precision,
                   preferred_element_type=preferred_element_type)
  return out.reshape(n, h, w, out.shape[-1])


# Up to this many output pixels an image, and this many input channels, a convolution as one
# matmul over its patches ran faster than XLA's, gradients included (change 12).
PATCHES_MAX_PIXELS = 64
PATCHES_MAX_IN_FEATURES = 512


@_on_cpu
def _spatial_conv(lhs, rhs, window_strides, pads, feature_group_count, *, precision=None,
                  preferred_element_type=None, **options):
  """`conv`'s kernels wider than 1x1: on small images (VGG19's last block, ResNet50's last
  stages, DenseNet121's last dense blocks at 128x128) one matmul over the input's patches.
  Larger images, and grouped convolutions, keep XLA's convolution and its gradients."""
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
  padded = zero_pad(x, pads)
  patches = jnp.concatenate([_view(padded, (i, j), out_shape, strides)
                             for i in range(kh) for j in range(kw)], axis=-1)
  return jnp.einsum("nhwk,ko->nhwo", patches,
                    kernel.reshape(kh * kw * in_features, out_features), precision=precision)


class UpConv2x2(nnx.ConvTranspose):
  """``nnx.ConvTranspose`` with a 2x2 kernel, stride 2 and 'SAME' padding, computed as one
  matmul and a reshape: its windows do not overlap, so each input pixel makes its own 2x2
  block of output. Same variables and outputs as the transposed conv, which XLA's CPU backend
  runs as an input-dilated convolution 5 to 16 times slower, gradients included
  (docs/cpu-performance.md)."""

  def __init__(self, in_features: int, out_features: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    super().__init__(in_features, out_features, (2, 2), strides=(2, 2), padding="SAME",
                     kernel_init=KERAS_KERNEL_INIT, dtype=dtype, param_dtype=jnp.float32,
                     rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = self.promote_dtype((x, self.kernel[...], self.bias[...]), dtype=self.dtype)
    # The transposed conv correlates the stride-dilated input with the kernel, so output
    # offset (a, b) in each block takes kernel tap (1 - a, 1 - b).
    y = jnp.einsum("nhwc,abco->nhawbo", x, kernel[::-1, ::-1], precision=self.precision)
    batch, height, width, _ = x.shape
    return y.reshape(batch, 2 * height, 2 * width, kernel.shape[-1]) + bias


@_on_cpu
def _depthwise_as_taps(lhs, rhs, window_strides, pads, feature_group_count, **options):
  """`depthwise_conv`'s NHWC inputs and HWIO kernels: the sum over the kernel's taps of the
  strided, shifted input times each channel's weight, accumulated in float32. XLA's CPU backend
  runs grouped convolutions 4 to 80 times slower than this, gradients included."""
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
  padded = zero_pad(x, pads)
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
  padded = zero_pad(x, pads)
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
  # views at once cost nine input-sized buffers and ran 3 to 4 times slower on a CPU.
  kernel_grad = _map_taps(lambda view: jnp.sum(view * grad, axis=(0, 1, 2)),
                         x, (kh, kw), strides, pads, (oh, ow))
  return x_grad, kernel_grad.reshape(kernel.shape)


_tap_sum.defvjp(_tap_sum_forward, _tap_sum_backward)


def depthwise_conv(
  features: int,
  kernel_size: int,
  *,
  depth_multiplier: int = 1,
  strides: int = 1,
  padding: str = "SAME",
  use_bias: bool = False,
  keras_name: str | None = None,
  dtype=jnp.float32,
  rngs: nnx.Rngs,
) -> nnx.Conv:
  """A Keras ``DepthwiseConv2D`` as a grouped conv: output channel ``c * multiplier + m``."""
  layer = nnx.Conv(
    features,
    features * depth_multiplier,
    (kernel_size, kernel_size),
    strides=strides,
    padding=padding,
    feature_group_count=features,
    use_bias=use_bias,
    kernel_init=LECUN_NORMAL,
    conv_general_dilated=_depthwise_as_taps,
    dtype=dtype,
    param_dtype=jnp.float32,
    rngs=rngs,
  )
  layer.keras_depthwise = True
  return _named(layer, keras_name)


def batch_norm(
  features: int,
  *,
  epsilon: float = 1e-3,
  momentum: float = 0.99,
  keras_name: str | None = None,
  dtype=jnp.float32,
  rngs: nnx.Rngs,
) -> nnx.BatchNorm:
  """A Keras ``BatchNormalization``; Keras's defaults (epsilon 1e-3, momentum 0.99)."""
  layer = BatchNorm(
    features,
    epsilon=epsilon,
    momentum=momentum,
    dtype=dtype,
    param_dtype=jnp.float32,
    rngs=rngs,
  )
  return _named(layer, keras_name)


def assign(variable: nnx.Variable, value: jax.Array) -> None:
  """``variable[...] = value`` without Flax's check of the value's sharding: a traced value
  asked for its sharding raises an error whose message walks the whole trace so far, which
  made up 40% of tracing a DenseNet121 train step (jax 0.10, flax 0.12)."""
  variable.set_value(value.astype(variable.dtype))


class BatchNorm(nnx.BatchNorm):
  """``nnx.BatchNorm`` (same variables, same outputs) whose training pass on a CPU has a
  hand-written gradient over NHWC inputs: two sums over batch and pixels, and only the input
  kept for the backward pass. JAX's derivative of Flax's normalisation keeps ``x - mean`` as
  well, an activation-sized buffer per layer that XLA's CPU runtime faults in anew every step
  (docs/cpu-performance.md, change 8)."""

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    running = self.use_running_average if use_running_average is None else use_running_average
    if (running or mask is not None or self.axis_name is not None or self.axis != -1
        or self.scale is None or self.bias is None or not _cpu_forms()):
      return super().__call__(x, use_running_average, mask=mask)
    x, scale, bias = self.promote_dtype((x, self.scale[...], self.bias[...]), dtype=self.dtype)
    y, mean, var = _normalize(x, scale, bias, self.epsilon)
    assign(self.mean, lax.stop_gradient(self.momentum * self.mean[...] + (1 - self.momentum) * mean))
    assign(self.var, lax.stop_gradient(self.momentum * self.var[...] + (1 - self.momentum) * var))
    return y.astype(x.dtype)  # x, scale and bias share the promoted dtype


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _normalize(x, scale, bias, epsilon):
  """Batch normalisation over all axes but the last, in float32 as nnx.BatchNorm computes it:
  (the normalised ``x``, the batch mean, the batch variance)."""
  return _normalize_forward(x, scale, bias, epsilon)[0]


def _normalize_forward(x, scale, bias, epsilon):
  axes = tuple(range(x.ndim - 1))
  x32 = x.astype(jnp.float32)
  mean = x32.mean(axes)
  var = jnp.maximum(jnp.square(x32).mean(axes) - jnp.square(mean), 0.0)  # Flax's fast variance
  inv = lax.rsqrt(var + epsilon)
  y = (x32 - mean) * (inv * scale) + bias
  return (y, mean, var), (x, scale, mean, inv)


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


_normalize.defvjp(_normalize_forward, _normalize_backward)


class Constant(nnx.Variable):
  """A variable loaded from Keras but never trained (normalisation statistics)."""


class Normalization(nnx.Module):
  """A Keras ``Normalization`` layer: ``(x - mean) / sqrt(variance)`` per channel."""

  def __init__(self, features: int, *, keras_name: str | None = None):
    self.mean = Constant(jnp.zeros((features,), jnp.float32))
    self.variance = Constant(jnp.ones((features,), jnp.float32))
    self.keras_name = keras_name

  def __call__(self, x: jax.Array) -> jax.Array:
    # Keras clamps the deviation at its backend epsilon (1e-7).
    std = jnp.maximum(jnp.sqrt(self.variance[...]), 1e-7)
    return (x - self.mean[...]) / std


def zero_pad(x: jax.Array, padding: Padding) -> jax.Array:
  """A Keras ``ZeroPadding2D`` on an NHWC tensor: ((top, bottom), (left, right))."""
  return jnp.pad(x, ((0, 0), *padding, (0, 0)))


def max_pool(x: jax.Array, size: int, strides: int | None = None) -> jax.Array:
  """'VALID' max pooling as the max of strided slices along the height, then along the width.
  XLA's CPU backend turns a pooling window's gradient (select-and-scatter) into index arrays,
  an arg-max window and a scatter: a tenth of the plain U-Net's train step, and ResNet50's 3x3
  pool 4.5 times slower than this (docs/cpu-performance.md); a max's gradient is a mask. Only
  ties differ: a window's equal maxima share its gradient instead of the first taking it all;
  after ReLU the only ties are zeros, whose gradient ReLU stops."""
  strides = strides or size
  out_height, out_width = ((extent - size) // strides + 1 for extent in x.shape[1:3])
  x = functools.reduce(jnp.maximum, (x[:, i:i + (out_height - 1) * strides + 1:strides]
                                     for i in range(size)))
  return functools.reduce(jnp.maximum, (x[:, :, j:j + (out_width - 1) * strides + 1:strides]
                                        for j in range(size)))


def avg_pool(x: jax.Array, size: int, strides: int | None = None, padding: str = "VALID"):
  return nnx.avg_pool(x, window_shape=(size, size), strides=(strides or size,) * 2,
                      padding=padding)


class ConvBNReLU(nnx.Module):
  """3x3 conv, BatchNorm, ReLU, and optionally spatial dropout: the U-Net's building block."""

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    dropout: float = 0.0,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.conv = conv(in_features, out_features, 3, use_bias=False, kernel_init=KERAS_KERNEL_INIT,
                     dtype=dtype, rngs=rngs)
    self.norm = batch_norm(out_features, dtype=dtype, rngs=rngs)
    # Spatial dropout drops whole feature maps: one mask per (example, channel).
    self.dropout = nnx.Dropout(dropout, broadcast_dims=(1, 2)) if dropout > 0 else None

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    x = nnx.relu(self.norm(self.conv(x)))
    if self.dropout is not None:
      x = self.dropout(x, rngs=rngs)
    return x
