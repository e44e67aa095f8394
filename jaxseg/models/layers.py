"""Layers shared by the U-Net and the encoder ports.

Every layer that holds Keras weights carries the name of its Keras layer as a static
attribute, ``keras_name``; `jaxseg.weights.load_keras_weights` walks a module tree and
copies each Keras layer into the module that names it. Ports therefore read like the
Keras application code they copy: one constructor call per Keras layer, same name.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]


def _compiled_unoptimised(initializer):
  """``initializer(key, shape, dtype)`` as one program per shape, compiled without LLVM's
  optimisations. Each runs once, and optimising the code that draws the random numbers is
  most of the time it takes to build a U-Net at random on a CPU ("Tracing and model
  construction" in docs/performance.md)."""
  unoptimised = jax.jit(initializer, static_argnums=(1, 2),
                        compiler_options={"xla_backend_optimization_level": 0})

  @functools.wraps(initializer)
  def init(key, shape, dtype=jnp.float32):
    # Traced (a jitted construction), it is part of the caller's program, where JAX takes no
    # compiler options of its own.
    if isinstance(key, jax.core.Tracer):
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
    dtype=dtype,
    param_dtype=jnp.float32,
    rngs=rngs,
  )
  return _named(layer, keras_name)


class UpConv2x2(nnx.ConvTranspose):
  """``nnx.ConvTranspose`` with a 2x2 kernel, stride 2 and 'SAME' padding, computed as one
  matmul and a reshape: its windows do not overlap, so each input pixel makes its own 2x2
  block of output. Same variables and outputs as the transposed conv, which XLA's CPU backend
  runs as an input-dilated convolution, far slower, gradients included ("2x2 up-convolution
  as a matmul" in docs/performance.md)."""

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
  made up much of tracing a DenseNet121 train step ("Tracing and model construction" in
  docs/performance.md)."""
  variable.set_value(value.astype(variable.dtype))


class BatchNorm(nnx.BatchNorm):
  """``nnx.BatchNorm`` (same variables, same outputs) whose training pass normalises through
  ``self.training_normalize(x, scale, bias, epsilon) -> (y, batch mean, batch variance)``: by default
  `normalize`, plain JAX that autodiff differentiates; `jaxseg.models.kernels` may give a
  layer another form of it. The running averages are replaced through `assign`."""

  training_normalize = None  # None: the module-level `normalize`

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    running = self.use_running_average if use_running_average is None else use_running_average
    if (running or mask is not None or self.axis_name is not None or self.axis != -1
        or self.scale is None or self.bias is None):
      return super().__call__(x, use_running_average, mask=mask)
    x, scale, bias = self.promote_dtype((x, self.scale[...], self.bias[...]), dtype=self.dtype)
    y, mean, var = (self.training_normalize or normalize)(x, scale, bias, self.epsilon)
    assign(self.mean, lax.stop_gradient(self.momentum * self.mean[...] + (1 - self.momentum) * mean))
    assign(self.var, lax.stop_gradient(self.momentum * self.var[...] + (1 - self.momentum) * var))
    return y.astype(x.dtype)  # x, scale and bias share the promoted dtype


def normalize(x, scale, bias, epsilon):
  """Batch normalisation over all axes but the last, in float32 as nnx.BatchNorm computes it:
  (the normalised ``x``, the batch mean, the batch variance)."""
  axes = tuple(range(x.ndim - 1))
  x32 = x.astype(jnp.float32)
  mean = x32.mean(axes)
  var = jnp.maximum(jnp.square(x32).mean(axes) - jnp.square(mean), 0.0)  # Flax's fast variance
  y = (x32 - mean) * (lax.rsqrt(var + epsilon) * scale) + bias
  return y, mean, var

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
  an arg-max window and a scatter, slower than this ("Max pooling as strided maxima" in
  docs/performance.md); a max's gradient is a mask. Only ties differ: a window's equal maxima share its gradient instead of the first taking it all;
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
