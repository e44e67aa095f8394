"""Each encoder port equals its keras.applications model, feature map by feature map."""


import jax
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.backbones import ENCODERS, create_encoder, encoder_class
from jaxseg.weights import (
  WeightsMismatchError,
  keras_application,
  keras_features,
  keras_layer_weights,
  load_keras_weights,
  load_layer_weights,
)
from tests.support.keras_reference import (
  INPUT_SHAPE,
  max_relative_error,
  randomized_keras_model,
)


@pytest.mark.parametrize("name", ENCODERS)
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


@pytest.mark.parametrize("name", ENCODERS)
def test_parameter_count_matches_keras(name):
  model = randomized_keras_model(name)
  encoder = create_encoder(name, rngs=nnx.Rngs(0))
  keras_count = sum(int(np.prod(w.shape)) for w in model.weights if not w.name.endswith("count"))
  # EfficientNet's input_scale holds what Keras builds into its graph as a Rescaling layer
  # (weightless) when it loads ImageNet weights: a variable here, so checkpoints carry it.
  port_count = sum(int(np.prod(v.shape)) for path, v in
                   jax.tree_util.tree_leaves_with_path(nnx.state(encoder))
                   if "input_scale" not in jax.tree_util.keystr(path))
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
