"""The benchmark command on tiny CPU shapes: what its JSON holds, never how fast anything is."""


import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxseg.bench import steps as bench
from jaxseg.bench.peers import PeerUnavailable, load_peer
from jaxseg.bench.timing import (
  Program,
  Timing,
  measure_together,
  round_ratio,
  xla_flops,
)
from jaxseg.config import Config
from jaxseg.models import kernels, layers
from tests.support.commands import json_written

TINY = ["--backbone", "unet,mobilenet", "--batch-size", "2", "--image-size", "32",
        "--steps", "2", "--repeats", "1", "--warmup", "1", "--precision", "fp32",
        "--unet-filters", "4", "--matmul-size", "256"]
MEASURED = ("compile_s", "first_call_s", "train_images_per_s", "infer_images_per_s",
            "train_gflop_per_image", "infer_gflop_per_image", "train_tflops", "train_peak_share")


def importable(peer: str) -> bool:
  try:
    load_peer(peer)
  except PeerUnavailable:
    return False
  return True


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  return json_written(bench.main, [*TINY, "--peer", "smp,keras"],
                      tmp_path_factory.mktemp("bench") / "bench.json")


def test_environment_and_settings(result):
  assert result["command"].startswith("python -m jaxseg.bench --backbone unet,mobilenet")
  assert result["date"]
  environment = result["environment"]
  for key in ("platform", "device_kind", "device_count", "cpu", "jax", "jaxlib", "flax"):
    assert environment[key], key
  assert set(environment["peers"]) == {"smp", "keras"}
  assert environment["load_average"]["end"] is not None  # updated after every row
  assert result["settings"]["augmentation"] == "off"
  assert result["settings"]["image_size"] == 32 and result["settings"]["steps"] == 2
  assert result["matmul_peak"]["size"] == 256 and result["matmul_peak"]["tflops"] > 0


def test_one_row_per_configuration(result):
  rows = result["rows"]
  assert [(r["backbone"], r["batch_size"], r["precision"]) for r in rows] == [
    ("unet", 2, "fp32"), ("mobilenet", 2, "fp32")]
  for row in rows:
    measured = row["jaxseg"]
    for key in MEASURED:
      assert measured[key] > 0, (row["backbone"], key)
    assert measured["train_gflop_per_image"] > measured["infer_gflop_per_image"]
    assert "peak_memory_bytes" in measured  # None on a CPU


@pytest.mark.parametrize("peer", ["smp", "keras"])
def test_peer_rows(result, peer):
  if not importable(peer):
    assert "unavailable" in result["environment"]["peers"][peer]
    pytest.skip(f"{peer} does not import here")
  unet, mobilenet = result["rows"]
  assert peer not in unet["peers"]  # no peer has the paper's plain U-Net
  measured = mobilenet["peers"][peer]
  assert measured["train_images_per_s"] > 0 and measured["infer_images_per_s"] > 0
  assert measured["train_gflop_per_image"] > measured["infer_gflop_per_image"] > 0
  assert mobilenet["ratio"][peer]["train"] > 0 and mobilenet["ratio"][peer]["infer"] > 0


def test_programs_take_turns_and_ratios_pair_their_rounds():
  calls = []

  def program(name: str) -> Program:
    step = lambda phase: lambda: calls.append((name, phase))
    return Program(step("train"), step("infer"), sync=lambda _: None, batch_size=2,
                   enter=lambda phase: calls.append((name, "enter " + phase)))

  programs = {"a": program("a"), "b": program("b"), "c": program("c")}
  measure_together(programs, Timing(steps=2, repeats=3, warmup=1))
  train_calls = calls[:calls.index(("a", "enter infer"))]
  assert train_calls[:6] == [("a", "enter train"), ("a", "train"), ("b", "enter train"),
                             ("b", "train"), ("c", "enter train"), ("c", "train")]
  runs = [name for name, _ in train_calls[6::2]]  # two steps a run
  assert runs == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
  assert len(calls) == 2 * len(train_calls)
  for fields in (p.fields for p in programs.values()):
    assert len(fields["train_round_s"]) == len(fields["infer_round_s"]) == 3
    assert fields["infer_images_per_s"] > 0

  # Our second round ran when the host was twice as slow: its ratio is the other rounds'.
  ours = {"train_round_s": [1.0, 4.0, 1.0]}
  theirs = {"train_round_s": [2.0, 8.0, 2.2]}
  assert round_ratio(ours, theirs, "train") == 2.0


class FakeStage:
  def __init__(self, analysis):
    self.analysis = analysis

  def cost_analysis(self):
    return self.analysis


def test_xla_flops_reads_either_cost_analysis_shape():
  assert xla_flops(FakeStage({"flops": 12.0})) == 12.0
  assert xla_flops(FakeStage([{"flops": 12.0}])) == 12.0  # older jax: one dict per module
  assert xla_flops(FakeStage([])) is None
  assert xla_flops(FakeStage({"bytes accessed": 3.0})) is None


def test_unknown_backbone_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.main(["--backbone", "resnet18"])
  assert exit_info.value.code == 2
  assert "resnet18" in capsys.readouterr().err


def test_an_existing_json_is_refused_before_any_work(tmp_path, capsys):
  existing = tmp_path / "results.json"
  existing.write_text("mine\n")
  with pytest.raises(SystemExit) as exit_info:
    bench.main(["--backbone", "unet", "--json", str(existing)])
  assert exit_info.value.code == 2
  assert f"--json {existing}: exists" in capsys.readouterr().err
  assert existing.read_text() == "mine\n"


def test_flops_are_counted_on_the_portable_kernels():
  """In the CPU form a depthwise conv's kernel gradient loops over its taps, a loop whose body
  XLA's cost analysis counts once; the bench counts the FLOPs of the portable form, XLA's own
  grouped convolution, for the steps it times in either form."""
  x = jax.random.normal(jax.random.key(0), (2, 12, 12, 8))
  layer = kernels.use(layers.depthwise_conv(8, 3, rngs=nnx.Rngs(0)), "cpu")
  dimensions = ("NHWC", "HWIO", "NHWC")

  def gradients(conv):
    loss = lambda kernel, x: jnp.sum(conv(x, kernel, (1, 1), "SAME", dimension_numbers=dimensions,
                                          feature_group_count=8) ** 2)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))

  kernel = layer.kernel[...]
  reference = xla_flops(gradients(jax.lax.conv_general_dilated).lower(kernel, x))
  cpu_form = gradients(layer.conv_general_dilated)
  assert "while" in str(cpu_form.lower(kernel, x).as_text())  # the loop over taps
  assert xla_flops(cpu_form.lower(kernel, x)) < 0.8 * reference  # eight taps uncounted

  config = Config(backbone="mobilenet", image_size=32, batch_size=2, weights="none",
                  augment=bench.NO_AUGMENT)
  images, masks = bench.random_batch(2, 32)
  portable = bench.portable_flops(config, images, masks)
  for form in kernels.KERNELS:
    train, infer, state, train_inputs, infer_inputs = bench.jaxseg_steps(
      config.replace(kernels=form), images, masks)
    counted = (xla_flops(train.lower(state, *train_inputs)),
               xla_flops(infer.lower(state, *infer_inputs)))
    if form == "xla":
      assert counted == pytest.approx(portable)
    else:  # loops counted once, hand-written gradients counted as written: another figure
      assert counted[0] != pytest.approx(portable[0], rel=0.01)
