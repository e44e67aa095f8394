"""The Keras peer: a Keras 3 U-Net on the JAX backend, trained by a jitted stateless step.

The encoder is the ``keras.applications`` model that jaxseg's port copies (random weights,
no top), tapped at the same layers (``keras_feature_layers``); the decoder has smp's shape:
nearest 2x upsampling, the skip concatenated, two conv-BN-ReLU, widths 256-128-64-32-16 and a
sigmoid 1x1 head (plus smp's centre block on VGG). ``mixed_bfloat16`` policy for ``bf16``.

Training follows Keras's guide to a JAX training loop: ``model.stateless_call`` inside
``jax.value_and_grad`` and ``optimizer.stateless_apply`` (Adam), under one ``jax.jit`` that
donates the variables; inference is a jitted stateless call. ``model.fit`` or
``train_on_batch`` would add a host round trip per step to fetch the logs, which this avoids,
and both steps go through the same `jaxseg.bench.timing.jitted_program` as jaxseg's own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np

from jaxseg.bench.timing import Program, jitted_program
from jaxseg.models.backbones import ENCODERS, encoder_class
from jaxseg.models.unet import DECODER_FILTERS
from jaxseg.weights import keras_application

if keras.backend.backend() != "jax":  # `jaxseg.bench.peers.load_peer` asks for it
  raise ImportError(f"Keras runs on its {keras.backend.backend()} backend; the peer needs "
                    "KERAS_BACKEND=jax before Keras is first imported")

if keras.backend.backend() != "jax":
  raise ImportError(f"keras was imported with the {keras.backend.backend()!r} backend first; "
                    "the Keras peer needs KERAS_BACKEND=jax")

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def supports(backbone: str) -> bool:
  return backbone in ENCODERS


def versions() -> dict:
  return {"keras": keras.__version__, "backend": "jax"}


def build_unet(backbone: str, image_size: int, precision: str) -> keras.Model:
  """The Keras U-Net of ``backbone`` for square images of ``image_size``."""
  port = encoder_class(backbone)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(POLICIES[precision])
  try:
    encoder = keras_application(backbone)(
      weights=None, include_top=False, input_shape=(image_size, image_size, 3))
    features = [encoder.get_layer(name).output for name in port.keras_feature_layers]
    x = features[-1]
    if port.needs_center:
      x = _conv_bn_relu(_conv_bn_relu(x, x.shape[-1]), x.shape[-1])
    for width, skip in zip(DECODER_FILTERS, [*features[-2::-1], None]):
      x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
      if skip is not None:
        x = keras.layers.Concatenate()([x, skip])
      x = _conv_bn_relu(_conv_bn_relu(x, width), width)
    probabilities = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(encoder.input, probabilities)
  finally:
    keras.config.set_dtype_policy(previous)


def _conv_bn_relu(x, width: int):
  x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
  x = keras.layers.BatchNormalization()(x)
  return keras.layers.ReLU()(x)


def jaccard_loss(probabilities, targets, smooth: float = 1.0):
  """jaxseg's soft Jaccard loss, on probabilities (the Keras head ends in a sigmoid)."""
  probabilities = probabilities.astype(jnp.float32)
  intersection = jnp.sum(probabilities * targets)
  union = jnp.sum(probabilities) + jnp.sum(targets) - intersection
  return 1.0 - (intersection + smooth) / (union + smooth)


def program(backbone: str, images: np.ndarray, masks: np.ndarray, *, precision: str) -> Program:
  """The Keras U-Net's train and inference steps on ``images`` and ``masks``, compiled and
  called once. Its peak memory is not its own (it shares JAX's devices with jaxseg's steps in
  this process); ``train_step_bytes``, XLA's estimate, is."""
  model = build_unet(backbone, images.shape[1], precision)
  optimizer = keras.optimizers.Adam(learning_rate=3e-3)
  optimizer.build(model.trainable_variables)
  state = ([v.value for v in model.trainable_variables],
           [v.value for v in model.non_trainable_variables],
           [v.value for v in optimizer.variables])

  def loss_fn(trainable, non_trainable, x, y):
    probabilities, non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                        training=True)
    return jaccard_loss(probabilities[..., 0], y), non_trainable

  def train_step(state, x, y):
    trainable, non_trainable, optimizer_variables = state
    (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      trainable, non_trainable, x, y)
    trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads,
                                                               trainable)
    return (trainable, non_trainable, optimizer_variables), loss

  def infer_step(state, x):
    trainable, non_trainable, _ = state
    return model.stateless_call(trainable, non_trainable, x, training=False)[0][..., 0]

  x = jax.device_put(images.astype(np.float32))
  y = jax.device_put(masks.astype(np.float32))
  keras_program = jitted_program(jax.jit(train_step, donate_argnums=0), jax.jit(infer_step),
                                 state, (x, y), (x,), len(images))
  keras_program.fields.update(
    encoder=f"keras.applications.{encoder_class(backbone).keras_application}",
    peak_memory_bytes=None)
  return keras_program
