"""The profile command on a tiny plain U-Net, and its reading of a trace: what it reports,
never how fast anything is."""

import json
from types import SimpleNamespace

import pytest

from jaxseg.bench import profile

TINY = ["--backbone", "unet", "--unet-filters", "4", "--image-size", "32", "--batch-size", "2",
        "--steps", "2", "--warmup", "0"]


def event(name, start, duration):
  return SimpleNamespace(name=name, start_ns=start, duration_ns=duration,
                         stats=[("hlo_op", name)] if name else [])


def test_nested_operations_count_once_and_overlap_counts_once_in_busy_time():
  trace = SimpleNamespace(planes=[SimpleNamespace(lines=[
    # A while loop (100 ns) runs a fusion inside it; a profiler event (no hlo_op) is skipped.
    SimpleNamespace(name="tf_XLAEigen/123", events=[
      event("while.1", 0, 100), event("loop_fusion.3", 10, 30), event("", 0, 500)]),
    # Another thread runs a convolution that overlaps the loop by 50 ns.
    SimpleNamespace(name="tf_XLAPjRtCpuClient/-9", events=[event("convolution.7", 50, 100)]),
  ])])
  ops, busy = profile.xla_ops(trace)
  self_ns = {op["name"]: round(op["self_s"] * 1e9) for op in ops}
  assert self_ns == {"while.1": 70, "loop_fusion.3": 30, "convolution.7": 100}
  assert {op["pool"] for op in ops} == {"tf_XLAEigen", "tf_XLAPjRtCpuClient"}
  assert busy * 1e9 == pytest.approx(150)
  assert profile.op_kind("loop_add_fusion.12") == "loop_add_fusion"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  path = tmp_path_factory.mktemp("profile") / "profile.json"
  returned = profile.main([*TINY, "--json", str(path)])
  assert json.loads(path.read_text()) == json.loads(json.dumps(returned))
  return returned


def test_traced_operations_fit_in_the_steps(result):
  assert result["config"]["backbone"] == "unet" and result["config"]["batch_size"] == 2
  assert len(result["steps"]) == 2
  # Operations ran only inside the steps; summed over threads they cover at least that.
  assert 0 < result["ops_busy_s"] <= result["wall_s"]
  assert result["ops_self_s"] >= result["ops_busy_s"] - 1e-6
  assert any("conv" in row["name"] for row in result["by_kind"])
  for table in ("by_kind", "by_op", "by_pool"):
    assert sum(row["share"] for row in result[table]) == pytest.approx(1)
  for step in result["steps"]:
    assert step["wall_s"] > 0 and step["threads"] >= 2 and step["minor_faults"] >= 0
  assert result["threads"]["tf_XLAEigen"] >= 1  # XLA's intra-op pool


def test_bad_step_count_is_one_line(capsys):
  with pytest.raises(SystemExit) as stop:
    profile.main([*TINY[:-4], "--steps", "0"])
  assert stop.value.code == 2
  assert "--steps must be at least 1" in capsys.readouterr().err


def test_convolution_time_is_their_share_of_the_busy_time():
  result = {"steps": [{}, {}], "ops_busy_s": 2.0, "by_kind": [
    {"name": "ynn_fusion", "share": 0.5}, {"name": "dot", "share": 0.1},
    {"name": "convolution-base-dilated", "share": 0.1}, {"name": "transpose_copy_fusion",
                                                         "share": 0.2},
    {"name": "convert_bitcast_fusion", "share": 0.1}]}  # a dtype conversion, not a conv
  assert profile.convolution_ms(result) == pytest.approx(700)  # 70% of 1 s a step


def test_traced_convolutions_are_counted(result):
  assert 0 < result["convolution_ms"] <= 1e3 * result["ops_busy_s"] / len(result["steps"])


@pytest.mark.parametrize("flags, message", [
  (["--precision", "bf16", "--decoder", "smp"], "profiles fp32 and --decoder smp"),
  (["--decoder", "paper"], "profiles fp32 and --decoder smp"),
])
def test_peer_with_other_settings_than_its_own_is_one_line(capsys, flags, message):
  with pytest.raises(SystemExit) as stop:
    profile.main([*TINY, *flags, "--peer", "smp"])
  assert stop.value.code == 2
  assert message in capsys.readouterr().err
