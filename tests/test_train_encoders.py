"""Every encoder trains through the command line on tiny images; a frozen one stays as loaded."""

import json
import math

import jax
import numpy as np
import pytest

from jaxseg import engine, evaluate
from jaxseg.inference import TrainedModel
from jaxseg.models.backbones import ENCODERS
from jaxseg.platform import resolve_kernels
from jaxseg.run_folder import RunFolder
from jaxseg.weights import keras_layer_weights
from jaxseg.weights.store import save_weights
from tests.support.helpers import train_summary, write_folder
from tests.support.keras_reference import randomized_keras_model

TINY = ["--image-size", "32", "--batch-size", "2", "--epochs", "1", "--loader", "plain",
        "--preset", "quick"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp("data"), 8, size=64)


def run_train(data, workdir, *flags):
  return train_summary(data, workdir, *TINY, *flags)


# EfficientNetB2 trains in test_evaluate_and_predict_equal_training_with_imagenet_rescale.
@pytest.mark.parametrize("name", [name for name in ENCODERS if name != "efficientnetb2"])
def test_encoder_trains(name, data, tmp_path):
  summary = run_train(data, tmp_path / "run", "--backbone", name, "--weights", "none")
  assert summary["backbone"] == name and summary["weights"].startswith("none")
  for key in ("accuracy", "sensitivity", "precision", "iou", "dice", "mean_iou"):
    assert 0.0 <= summary["test"][key] <= 1.0, key
  (epoch,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  assert math.isfinite(epoch["train_loss"]) and 0.0 <= epoch["train_loss"] <= 1.0


def encoder_leaves(tree) -> dict:
  """``{path: array}`` of the variables under the model's ``encoder``, and of the rest."""
  parts = {True: {}, False: {}}
  for path, value in jax.tree_util.tree_leaves_with_path(tree):
    in_encoder = str(getattr(path[0], "key", path[0])) == "encoder"
    parts[in_encoder][jax.tree_util.keystr(path)] = np.asarray(value)
  return parts[True], parts[False]


def test_frozen_encoder_keeps_converted_weights(data, tmp_path):
  """A frozen encoder's weights and BatchNorm statistics leave training as they were loaded."""
  weights_file = tmp_path / "mobilenet_random.npz"
  save_weights(weights_file, keras_layer_weights(randomized_keras_model("mobilenet")),
               {"backbone": "mobilenet", "source": "random weights", "imagenet": False})
  workdir = tmp_path / "run"
  summary = run_train(data, workdir, "--backbone", "mobilenet", "--weights", str(weights_file),
                      "--freeze-encoder")
  assert summary["weights"] == f"random weights ({weights_file})"

  run = RunFolder(workdir)
  config, _ = run.read_config()
  # Seeded by config.seed and loaded from config.weights, as training's was.
  _, before = engine.build(config, resolve_kernels(config.kernels))
  after, _ = run.checkpoints.restore("best", before.replace(opt_state=None))
  run.checkpoints.close()
  for kind in ("params", "model_state"):  # weights; BatchNorm statistics
    encoder_before, decoder_before = encoder_leaves(getattr(before, kind))
    encoder_after, decoder_after = encoder_leaves(getattr(after, kind))
    assert encoder_before.keys() == encoder_after.keys() and encoder_before, kind
    for path, value in encoder_before.items():
      np.testing.assert_array_equal(encoder_after[path], value, err_msg=f"{kind}{path}")
    assert any(not np.array_equal(decoder_after[path], value)
               for path, value in decoder_before.items()), f"the decoder's {kind} did not change"


def test_evaluate_and_predict_equal_training_with_imagenet_rescale(data, tmp_path, capsys):
  """EfficientNetB2 from a converted file marked ImageNet (Keras adds an input rescale with
  those weights): evaluate scores and predict computes exactly what the trained model did."""
  weights_file = tmp_path / "efficientnetb2.npz"
  save_weights(weights_file, keras_layer_weights(randomized_keras_model("efficientnetb2")),
               {"backbone": "efficientnetb2", "source": "random weights", "imagenet": True})
  workdir = tmp_path / "run"
  summary = run_train(data, workdir, "--backbone", "efficientnetb2", "--weights", str(weights_file))
  capsys.readouterr()
  evaluate.main(["--workdir", str(workdir), "--json"])
  assert json.loads(capsys.readouterr().out)["test"] == summary["test"]

  trained = TrainedModel(workdir)
  config = trained.config
  model, state = engine.build(config, resolve_kernels(config.kernels))  # as training built it
  steps = engine.Steps(model, config.augment, config.batch_size)
  run = RunFolder(workdir)
  state, _ = run.checkpoints.restore("best", steps.place(state.replace(opt_state=None)))
  run.checkpoints.close()
  scale = np.asarray(trained.network().encoder.input_scale[...])
  np.testing.assert_allclose(scale, [1 / math.sqrt(s) for s in (0.229, 0.224, 0.225)], rtol=1e-6)
  images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  np.testing.assert_array_equal(trained.predict(images), steps.predict(state, images))
