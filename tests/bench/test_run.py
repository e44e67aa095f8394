"""The whole-run benchmark on a tiny run: what it measures and records, never how fast; and
the smp run's precise BatchNorm where segmentation_models_pytorch imports."""

import json

import numpy as np
import pytest

from jaxseg.bench import run as bench
from tests.support.commands import run_command
from tests.support.helpers import write_folder

TINY = ["--backbone", "unet", "--unet-filters", "4", "--image-size", "32", "--batch-size", "2",
        "--epochs", "1", "--loader", "plain", "--preset", "quick", "--weights", "none"]


def test_a_round_is_timed_from_outside_and_read_from_its_summary(tmp_path):
  data = write_folder(tmp_path / "data", 12, size=64)
  written = tmp_path / "run.json"
  result = bench.main(["--rounds", "1", "--cache", "cold", "--json", str(written), "--", *TINY,
                       "--data", str(data)])
  assert json.loads(written.read_text()) == json.loads(json.dumps(result))
  (jaxseg,) = result["rounds"]["jaxseg"]
  wall = jaxseg["wall_seconds"]
  assert set(wall) == {"start_up", "epochs", "wrap_up", "total"}
  assert wall["start_up"]["imports"] > 0  # a command's own process: its imports are counted
  # The process's own total lies within the time measured around it, and holds the phases.
  assert sum(wall["start_up"].values()) + wall["epochs"] <= wall["total"] <= jaxseg["wall_s"]
  assert result["median_wall_s"] == {"jaxseg": jaxseg["wall_s"]}
  assert 0 <= jaxseg["test_dice"] <= 1 and "smp_over_jaxseg" not in result
  assert result["command"].endswith("-- " + " ".join([*TINY, "--data", str(data)]))


@pytest.mark.parametrize(("args", "named"), [
  (["--", *TINY, "--workdir", "x"], "--workdir: each round trains into a new run folder"),
  (["--", *TINY, "--resume"], "--resume: each round trains into a new run folder"),
  (["--peer-python", "no/such/python", "--", *TINY], "--peer-python no/such/python: not an "
                                                      "executable file"),
  (["--rounds", "0", "--", *TINY], "--rounds 0: must be at least 1"),
])
def test_bad_flags_are_one_line_before_any_run(args, named):
  done = run_command("bench.run", *args)
  assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr
  assert len(done.stderr.strip().splitlines()) == 1


def test_precise_batchnorm_averages_the_batch_statistics(tmp_path):
  torch = pytest.importorskip("torch")
  smp_unet = pytest.importorskip("jaxseg.bench.peers.smp_unet")
  trainer = smp_unet.Trainer("mobilenet", learning_rate=1e-3, precision="fp32")
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
  masks = torch.from_numpy(rng.integers(0, 2, (4, 32, 32), dtype=np.uint8))
  batches = [np.array([0, 1]), np.array([2, 3])]
  norm = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
  momentum, seen = norm.momentum, []
  norm.register_forward_hook(lambda module, inputs, _: seen.append(inputs[0].mean((0, 2, 3))))
  smp_unet.recompute_statistics(trainer, images, masks, batches)
  assert norm.momentum == momentum  # given back
  expected = torch.stack(seen).mean(0)
  torch.testing.assert_close(norm.running_mean, expected, rtol=1e-5, atol=1e-6)
