"""The Keras references of the ports: keras.applications models with every variable random."""

import functools

import keras
import numpy as np

from jaxseg.weights import keras_application

INPUT_SHAPE = (96, 160, 3)  # non-square, a multiple of 32


@functools.cache  # building a Keras application on JAX takes long on a CPU: once per name
def randomized_keras_model(name: str, seed: int = 0):
  """The Keras reference with every variable random, BatchNorm statistics included.

  Shared by several tests: read it, never change its variables.
  """
  application = keras_application(name)
  keras.utils.set_random_seed(seed)
  model = application(include_top=False, weights=None, input_shape=INPUT_SHAPE)
  rng = np.random.default_rng(seed)
  for variable in model.weights:
    short = variable.name.split("/")[-1]
    shape = tuple(variable.shape)
    if short in ("moving_variance", "variance"):
      value = rng.uniform(0.5, 1.5, shape)
    elif short == "gamma":
      value = rng.uniform(0.5, 1.5, shape)
    elif short in ("beta", "bias", "moving_mean", "mean"):
      value = rng.normal(0.0, 0.2, shape)
    elif short == "count":
      continue
    else:  # kernels: keep Keras's fan-in scaled initialisation, so deep nets stay finite
      value = np.asarray(variable.value) * rng.uniform(0.8, 1.2, shape)
    variable.assign(value.astype(np.float32))
  for layer in model.layers:
    if isinstance(layer, keras.layers.Normalization):
      layer.finalize_state()  # Normalization reads assigned statistics only after this
  return model


def max_relative_error(actual, expected):
  """Largest absolute difference, relative to the largest magnitude of the reference."""
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
