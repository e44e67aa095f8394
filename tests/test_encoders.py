"""Each encoder port equals its keras.applications model, feature map by feature map."""

import functools

import jax
import keras
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.backbones import ENCODER_NAMES, create_encoder, encoder_class
from jaxseg.weights import (WeightsMismatchError, keras_application, keras_features,
                            keras_layer_weights, load_keras_weights, load_layer_weights)

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


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_port_matches_keras(name, tmp_path):
  model = randomized_keras_model(name)
  images = np.random.default_rng(1).uniform(0, 255, (2, *INPUT_SHAPE)).astype(np.float32)
  expected = keras_features(model, name, images)

  encoder = create_encoder(name, rngs=nnx.Rngs(0))
  load_keras_weights(encoder, model)
  encoder.eval()
  actual = [np.asarray(f) for f in encoder(images)]

  assert [f.shape for f in actual] == [f.shape for f in expected]
  assert [f.shape[-1] for f in actual] == list(encoder_class(name).feature_channels)
  for stride, a, e in zip((2, 4, 8, 16, 32), actual, expected):
    assert a.shape[1:3] == (INPUT_SHAPE[0] // stride, INPUT_SHAPE[1] // stride)
    assert max_relative_error(a, e) <= 1e-4, f"{name} stride {stride}"

  # The same weights through a Keras .h5 file.
  h5 = tmp_path / f"{name}.weights.h5"
  model.save_weights(h5)
  reloaded = keras_application(name)(
    include_top=False, weights=None, input_shape=INPUT_SHAPE
  )
  reloaded.load_weights(h5)
  from_file = create_encoder(name, rngs=nnx.Rngs(1))
  load_keras_weights(from_file, reloaded)
  from_file.eval()
  assert max_relative_error(np.asarray(from_file(images)[-1]), expected[-1]) <= 1e-4


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_parameter_count_matches_keras(name):
  model = randomized_keras_model(name)
  encoder = create_encoder(name, rngs=nnx.Rngs(0))
  keras_count = sum(int(np.prod(w.shape)) for w in model.weights if not w.name.endswith("count"))
  port_count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(encoder)))
  assert port_count == keras_count


def test_mismatch_names_the_layer():
  model = randomized_keras_model("vgg19")
  weights = keras_layer_weights(model)
  weights["block3_conv2"]["kernel"] = weights["block3_conv2"]["kernel"][..., :7]
  with pytest.raises(WeightsMismatchError, match="block3_conv2"):
    load_layer_weights(create_encoder("vgg19", rngs=nnx.Rngs(0)), weights)
  del weights["block1_conv1"]
  with pytest.raises(WeightsMismatchError, match="block1_conv1"):
    load_layer_weights(create_encoder("vgg19", rngs=nnx.Rngs(0)), weights)
