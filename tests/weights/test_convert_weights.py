"""python -m jaxseg.convert_weights on weight files like Keras's ImageNet downloads, and loading its output.

Keras's downloads (``*_notop.h5``) are legacy HDF5 files, which Keras 3 loads by layer order,
not by name; the tests write random weights in that format and read them as users' files are
read, through the application's own ``model.load_weights``.
"""


import h5py
import keras
import numpy as np
import pytest
from flax import nnx
from keras.src.legacy.saving import legacy_h5_format

from jaxseg.config import Config
from jaxseg.errors import JaxsegError
from jaxseg.models.backbones import create_encoder
from jaxseg.weights import keras_application, keras_features
from jaxseg.weights.store import (
  describe_weights,
  load_encoder_weights,
  read_weights,
  save_weights,
)
from tests.support.commands import assert_one_line_error, run_command
from tests.support.keras_reference import (
  INPUT_SHAPE,
  max_relative_error,
  randomized_keras_model,
)

# The names Keras downloads these weights under.
KERAS_FILES = {"mobilenet": "mobilenet_1_0_224_tf_no_top.h5",
               "efficientnetb2": "efficientnetb2_notop.h5"}


def convert(*args):
  return run_command("convert_weights", *args, timeout=600, env={"KERAS_BACKEND": "jax"})


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
  """Random weights of each encoder, written as Keras writes its ImageNet downloads."""
  folder = tmp_path_factory.mktemp("keras")
  for name, file_name in KERAS_FILES.items():
    with h5py.File(folder / file_name, "w") as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, randomized_keras_model(name))
  return {name: folder / file_name for name, file_name in KERAS_FILES.items()}


def keras_imagenet_model(name, weights_file, monkeypatch):
  """What ``weights="imagenet"`` builds, with ``weights_file`` standing in for the download.

  For EfficientNet this is not the model that ``weights=FILE`` builds: Keras adds its extra
  ImageNet input rescaling only here, and the converted file must bring it along.
  """
  monkeypatch.setattr(keras.src.utils.file_utils, "get_file", lambda *a, **k: str(weights_file))
  application = keras_application(name)
  return application(include_top=False, weights="imagenet", input_shape=(None, None, 3))


# MobileNet warns that any input size but its own loads the 224x224 weights: we want those.
@pytest.mark.filterwarnings("ignore:.*input_shape.* is undefined or non-square")
@pytest.mark.parametrize("name", KERAS_FILES)
def test_converted_file_computes_what_keras_computes(name, keras_files, tmp_path, monkeypatch):
  out = tmp_path / "converted.npz"
  result = convert("--backbone", name, "--keras-weights", keras_files[name], "--out", out)
  assert result.returncode == 0, result.stderr
  assert read_weights(out)[1] == {"backbone": name, "source": KERAS_FILES[name], "imagenet": True}

  encoder = create_encoder(name, rngs=nnx.Rngs(1))
  config = Config(backbone=name, weights=str(out), cache_dir=str(tmp_path / "cache"))
  load_encoder_weights(encoder, config)
  assert describe_weights(config) == f"{KERAS_FILES[name]} ({out})"
  encoder.eval()
  images = np.random.default_rng(2).uniform(0, 255, (1, *INPUT_SHAPE)).astype(np.float32)
  reference_model = keras_imagenet_model(name, keras_files[name], monkeypatch)
  expected = keras_features(reference_model, name, images)
  for stride, actual, reference in zip(encoder.feature_strides, encoder(images), expected):
    assert max_relative_error(np.asarray(actual), reference) <= 1e-4, f"{name} stride {stride}"


def test_missing_keras_file_is_one_line_and_exit_2(tmp_path):
  missing = tmp_path / "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
  assert_one_line_error(convert("--backbone", "densenet121", "--keras-weights", missing),
                        str(missing), "not found")


def test_file_of_another_encoder_is_one_line_and_exit_2(keras_files, tmp_path):
  result = convert("--backbone", "mobilenet", "--keras-weights", keras_files["efficientnetb2"],
                   "--out", tmp_path / "out.npz")
  assert_one_line_error(result, str(keras_files["efficientnetb2"]), "MobileNet")
  assert not (tmp_path / "out.npz").exists()


def test_missing_imagenet_weights_warn_and_train_from_random(tmp_path):
  encoder = create_encoder("mobilenet", rngs=nnx.Rngs(0))
  config = Config(backbone="mobilenet", cache_dir=str(tmp_path / "empty-cache"))
  with pytest.warns(UserWarning, match="python -m jaxseg.convert_weights --backbone mobilenet"):
    load_encoder_weights(encoder, config)
  assert "random initialisation" in describe_weights(config)


def test_weights_of_another_backbone_are_refused(tmp_path):
  path = tmp_path / "mobilenet.npz"
  save_weights(path, {}, {"backbone": "mobilenet", "source": "imagenet", "imagenet": True})
  encoder = create_encoder("efficientnetb2", rngs=nnx.Rngs(0))
  with pytest.raises(JaxsegError, match=f"{path}: weights of mobilenet, not efficientnetb2"):
    load_encoder_weights(encoder, Config(backbone="efficientnetb2", weights=str(path)))
