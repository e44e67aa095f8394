"""The whole-epoch benchmark on tiny CPU shapes: what it counts and records, never how fast."""


import numpy as np
import pytest

from jaxseg.bench import epoch as bench
from jaxseg.bench.peers import PeerUnavailable, load_peer
from jaxseg.config import Config
from jaxseg.datasets import data_splits
from tests.support.commands import json_written

# test_train's shapes (32 px, batch 2, 9 training images), so the compiled steps are shared.
SETTINGS = {"image_size": 32, "unet_filters": 4, "batch_size": 2, "loader": "plain",
            "num_images": 12, "synthetic_size": 64}
TINY = ["--backbone", "unet", "--epochs", "2", "--image-size", "32", "--unet-filters", "4",
        "--batch-size", "2", "--loader", "plain", "--num-images", "12", "--synthetic-size", "64"]


def smp_peer():
  try:
    return load_peer("smp")
  except PeerUnavailable:
    return None


@pytest.fixture(scope="module")
def result(tmp_path_factory):
  return json_written(bench.main, [*TINY, "--peer", "smp"],
                      tmp_path_factory.mktemp("bench") / "epoch.json")


def test_settings_and_images_counted(result):
  assert result["command"].startswith("python -m jaxseg.bench.epoch --backbone unet")
  settings = result["settings"]
  assert settings["preset"] == "quick" and settings["backbones"] == ["unet"]
  assert (settings["timed_epochs"], settings["untimed_epochs"]) == (2, 1)
  assert settings["config"]["image_size"] == 32 and settings["config"]["batch_size"] == 2
  assert settings["config"]["learning_rate"] == 1e-3  # the quick preset's, under the flags
  assert "backbone" not in settings["config"] and "epochs" not in settings["config"]
  splits = data_splits(Config(**SETTINGS))[1]
  assert settings["steps_per_epoch"] == len(splits.train) // 2
  assert settings["train_images_per_epoch"] == 2 * (len(splits.train) // 2)
  assert settings["validation_images"] == len(splits.val)
  assert settings["loader"] == "plain"


def test_phases_add_up_to_the_epoch(result):
  [row] = result["rows"]
  ours, images = row["jaxseg"], result["settings"]["train_images_per_epoch"]
  assert len(ours["epochs"]) == 2
  assert ours["first_epoch"]["saves"] == 2  # the first epoch is always the best so far
  for record in [ours["first_epoch"], *ours["epochs"]]:
    phases = [record[name] for name in bench.PHASES]
    assert min(phases) > 0  # statistics recomputed, as the quick preset does
    assert sum(phases) <= record["epoch_s"]
    assert record["saves"] in (1, 2) and np.isfinite(record["train_loss"])
  for name in (*bench.PHASES, "epoch_s"):
    assert ours[name] == pytest.approx(np.mean([r[name] for r in ours["epochs"]]))
  assert ours["epoch_images_per_s"] == pytest.approx(images / ours["epoch_s"])
  assert ours["train_images_per_s"] == pytest.approx(images / ours["train_s"])


def test_peer_skipped_with_a_note(result):
  [row] = result["rows"]
  if smp_peer() is None:
    assert "unavailable" in result["environment"]["peers"]["smp"]
    assert row["peers"] == {} and row["ratio"] == {}
  else:
    assert row["peers"]["smp"] == {"skipped": "no unet in the peer"}


def test_smp_epochs(tmp_path):
  peer = smp_peer()
  if peer is None:
    pytest.skip("segmentation_models_pytorch does not import here")
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  masks = rng.integers(0, 2, (6, 32, 32), dtype=np.uint8)
  orders = [rng.permutation(4), rng.permutation(4)]
  records = list(peer.time_epochs("mobilenet", (images[:4], masks[:4]),
                                  (images[4:], masks[4:]), orders, batch_size=2,
                                  learning_rate=1e-3, precision="fp32", flip_probs=(0.5, 0.5),
                                  seed=0, folder=tmp_path))
  assert len(records) == 2 and records[0]["saves"] == 2
  for record in records:
    phases = [record[name] for name in bench.PHASES if record[name] is not None]
    assert len(phases) == 3 and sum(phases) <= record["epoch_s"]
    assert 0 <= record["val_dice"] <= 1
  assert {path.name for path in tmp_path.iterdir()} == {"best.pt", "latest.pt"}


def test_runs_take_turns_and_a_failing_peer_drops_out():
  calls, closed = [], []

  def epochs(name: str, fail_at: int | None = None):
    try:
      for epoch in range(1, 10):
        calls.append(name)
        if epoch == fail_at:
          raise RuntimeError("out of memory")
        yield {"epoch": epoch}
    finally:
      closed.append(name)

  runs = {"jaxseg": epochs("jaxseg"), "smp": epochs("smp"), "other": epochs("other", fail_at=2)}
  records = bench.epochs_in_turns(runs, 3)
  assert calls == ["jaxseg", "smp", "other", "smp", "other", "jaxseg", "jaxseg", "smp"]
  assert records["jaxseg"] == records["smp"] == [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
  assert records["other"] == "RuntimeError: out of memory"
  assert sorted(closed) == ["jaxseg", "other", "smp"]  # each run's files are cleaned up

  with pytest.raises(RuntimeError):  # jaxseg's own failure is not swallowed
    bench.epochs_in_turns({"jaxseg": epochs("jaxseg", fail_at=1), "smp": epochs("smp")}, 2)


@pytest.mark.parametrize("argv, named", [
  (["--epochs", "0"], "--epochs 0"),
  (["--backbone", "resnet18"], "resnet18"),
  (["--learning-rate", "-1"], "--learning-rate"),
])
def test_bad_settings_are_one_line(argv, named, capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.main(argv)
  assert exit_info.value.code == 2
  assert named in capsys.readouterr().err
