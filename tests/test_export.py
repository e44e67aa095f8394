"""Export: the StableHLO and ONNX programs compute what `jaxseg.predict` computes."""

import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from jaxseg import engine, export
from jaxseg.config import Config
from jaxseg.data.enhance import Enhance
from jaxseg.data.pipeline import prepare_image
from jaxseg.errors import JaxsegError
from jaxseg.inference import TrainedModel
from jaxseg.models import MODELS, build_model
from jaxseg.models.kernels import use as use_kernels
from jaxseg.platform import resolve_kernels
from jaxseg.predict import Segmenter
from tests.support.helpers import train_summary, write_folder

SIZE = 32
ENHANCE = Enhance(brightness=-12, contrast=1.3)  # the lookup table is part of the export


def tiny_config(backbone: str) -> Config:
  return Config(backbone=backbone, image_size=SIZE, batch_size=2, unet_filters=4,
                enhance=ENHANCE, weights="none")


def random_network(config: Config, seed: int = 0) -> nnx.Module:
  """``config``'s network in eval mode with variables drawn in NumPy: He-scaled kernels,
  1-D variables in 0.5..1.5 (BatchNorm variances stay positive). No initialiser is compiled:
  seconds per encoder instead of most of a minute on 2 cores."""
  graph, state = nnx.split(nnx.eval_shape(lambda: build_model(config)))
  rng = np.random.default_rng(seed)

  def draw(leaf):
    if len(leaf.shape) >= 2:
      scale = math.sqrt(2 / math.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * scale).astype(leaf.dtype)
    return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)

  network = nnx.merge(graph, jax.tree.map(draw, state))
  network.eval()
  # Scale the head so the logits of test images spread over a few units about 0: features
  # of random encoders without BatchNorm (VGG) are large, and saturated probabilities would
  # hide any difference.
  graph, state = nnx.split(network)
  logits = np.asarray(jax.jit(lambda state, x: nnx.merge(graph, state)(x))(
    state, random_images(3).astype(np.float32))) - network.head.bias[...]
  scale = 2 / logits.std()
  network.head.kernel[...] *= scale
  network.head.bias[...] = -scale * logits.mean()
  return network


def random_images(count: int, seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def predict_path(config: Config, network: nnx.Module, images: np.ndarray) -> np.ndarray:
  """Probabilities the way `jaxseg.predict` computes them: `prepare_image`, then the
  engine's jitted probability step on the placed state, in the kernels of this platform."""
  kernels = resolve_kernels(config.kernels)
  model, state = engine.split(config, use_kernels(nnx.clone(network), kernels), kernels)
  steps = engine.Steps(model, config.augment, config.batch_size)
  batch = np.stack([prepare_image(image, (SIZE, SIZE), config.enhance) for image in images])
  return steps.predict(steps.place(state), batch)


@pytest.fixture(scope="module", params=MODELS)
def model(request):
  """A tiny random model of each backbone, its inputs and what the predict path makes of them."""
  config = tiny_config(request.param)
  network = random_network(config)
  images = random_images(3)
  expected = predict_path(config, network, images)
  # Neither saturated nor constant: a wrong preprocessing or weight would show.
  assert 0.02 < expected.std() and ((expected > 0.05) & (expected < 0.95)).mean() > 0.2
  return config, network, images, expected


def test_stablehlo_matches_predict_at_two_batch_sizes(model):
  config, network, images, expected = model
  data = export.export_stablehlo(config, network, ("cpu",))  # the command's test adds cuda
  exported = jax.export.deserialize(bytearray(data))
  assert str(exported.in_avals[0].shape[0]) == "batch"
  for count in (1, 3):
    probabilities = np.asarray(exported.call(images[:count]))
    assert probabilities.shape == (count, SIZE, SIZE)
    np.testing.assert_allclose(probabilities, expected[:count], rtol=0, atol=1e-5)


# What jax2onnx 0.17.1 makes of each model; vgg19, efficientnetb2 and densenet121 convert too
# (README), but take minutes each on 2 cores: left out here.
ONNX = {"unet": None, "mobilenet": None, "resnet50": None}  # None: converts


def test_onnx_matches_predict_in_onnxruntime(model):
  onnxruntime = pytest.importorskip("onnxruntime")
  pytest.importorskip("jax2onnx")
  config, network, images, expected = model
  if config.backbone not in ONNX:
    pytest.skip("slow to convert; see README")
  if ONNX[config.backbone] is not None:  # fails in one line, naming the operation
    with pytest.raises(JaxsegError, match=ONNX[config.backbone]) as error:
      export.export_onnx(config, network)
    assert "\n" not in str(error.value)
    return
  data, difference = export.export_onnx(config, network)
  assert difference <= 1e-4
  session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
  for count in (1, 3):
    probabilities = session.run(None, {session.get_inputs()[0].name: images[:count]})[0]
    assert probabilities.shape == (count, SIZE, SIZE)
    assert np.abs(probabilities - expected[:count]).max() <= 1e-4 * np.abs(expected).max()


def test_clahe_cannot_be_exported():
  config = tiny_config("unet").replace(enhance=Enhance(clahe=True))
  with pytest.raises(JaxsegError, match="CLAHE"):
    export.serving_function(config, random_network(config))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A one-epoch plain U-Net run folder."""
  root = tmp_path_factory.mktemp("export")
  data = write_folder(root / "data", 6, size=48)
  workdir = root / "run"
  train_summary(data, workdir, "--epochs", "1", "--image-size", str(SIZE), "--batch-size", "2",
                "--unet-filters", "4", "--loader", "plain", "--preset", "quick")
  return workdir


def one_line_error(argv, capsys) -> str:
  with pytest.raises(SystemExit) as exit_info:
    export.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "Traceback" not in err[0]
  return err[0]


def test_command_exports_a_run_with_its_metadata(run, tmp_path, capsys):
  out = tmp_path / "model.stablehlo"
  export.main(["--run", str(run), "--format", "stablehlo", "--out", str(out)])
  info = json.loads((tmp_path / "model.stablehlo.json").read_text())
  assert info["target"] == "nuclei" and info["image_size"] == [SIZE, SIZE]
  assert info["backbone"] == "unet" and info["threshold"] == 0.5
  assert info["versions"]["jax"] == jax.__version__
  exported = jax.export.deserialize(bytearray(out.read_bytes()))
  images = random_images(3, seed=2)
  expected = np.stack(Segmenter(TrainedModel(run)).probabilities(list(images), tiled=False))
  for count in (2, 3):  # float32 noise of two programs of different batch shapes: ~1e-5
    np.testing.assert_allclose(np.asarray(exported.call(images[:count])), expected[:count],
                               rtol=0, atol=3e-5)

  before = out.read_bytes()
  error = one_line_error(["--run", str(run), "--out", str(out)], capsys)
  assert "exists" in error and out.read_bytes() == before
  error = one_line_error(["--run", str(run), "--out", str(run / "config.json")], capsys)
  assert "inside the run folder" in error


def test_command_exports_onnx(run, tmp_path, capsys):
  pytest.importorskip("jax2onnx")
  out = tmp_path / "model.onnx"
  export.main(["--run", str(run), "--format", "onnx", "--out", str(out)])
  assert "largest difference" in capsys.readouterr().out
  info = json.loads((tmp_path / "model.onnx.json").read_text())
  assert info["format"] == "onnx" and info["onnxruntime_max_abs_difference"] <= 1e-4
  assert out.stat().st_size > 0


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_an_export_holds_xlas_own_operations_whatever_the_host(run, tmp_path, platform):
  """However the host trained and predicts (its kernels), the export is lowered from the
  portable kernels: each conv of the network is one convolution of the program, for the CPU
  and for CUDA alike. The CPU forms would have turned some into matmuls."""
  out = tmp_path / f"model-{platform}.stablehlo"
  export.main(["--run", str(run), "--out", str(out), "--platforms", platform])
  exported = jax.export.deserialize(bytearray(out.read_bytes()))
  assert exported.platforms == (platform,)
  network = TrainedModel(run, kernels="xla").network()
  convs = sum(isinstance(module, nnx.Conv) for _, module in nnx.iter_modules(network))
  assert exported.mlir_module().count("stablehlo.convolution") == convs
  config = TrainedModel(run).config
  cpu_forms = export.export_stablehlo(config, TrainedModel(run, kernels="cpu").network(),
                                      (platform,))
  cpu_text = jax.export.deserialize(bytearray(cpu_forms)).mlir_module()
  assert cpu_text.count("stablehlo.convolution") < convs
