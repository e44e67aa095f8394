"""python -m jaxseg.reproduce on tiny images: tables equal to the runs' summaries, seeds share a
split, reruns skip."""

import json
import statistics

import pytest

from jaxseg import reproduce
from jaxseg.config import Config
from jaxseg.data.synthetic import write_synthetic
from jaxseg.errors import JaxsegError

METHODS, TARGETS = ("unet", "mobilenet"), ("cytoplasm", "nuclei")
SEEDED = ("unet", "nuclei")  # run with seeds 0 and 1


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
  root = tmp_path_factory.mktemp("reproduce")
  data = write_synthetic(root / "data", 16, size=64, progress=False)
  out = root / "out"
  argv = ["--data", str(data), "--out", str(out), "--methods", ",".join(METHODS),
          "--targets", ",".join(TARGETS), "--preset", "quick", "--epochs", "1",
          "--image-size", "32", "--batch-size", "2", "--unet-filters", "4", "--loader", "plain",
          "--weights", "none", "--cache-dir", str(root / "cache"), "--seeds", "2",
          "--seeded", "-".join(SEEDED)]
  script = reproduce
  script.main(argv)
  return script, argv, out


def summary(out, method, target, suffix=""):
  return json.loads((out / "runs" / f"{method}-{target}{suffix}" / "summary.json").read_text())


def summaries(out, method, target):
  extra = [summary(out, method, target, "-seed1")] if (method, target) == SEEDED else []
  return [summary(out, method, target), *extra]


def table_rows(path):
  lines = path.read_text().splitlines()
  rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
          if line.startswith("| ")]
  return lines, rows[0], {row[0]: row[1:] for row in rows[1:]}


@pytest.mark.parametrize("target, name", [("cytoplasm", "table1.md"), ("nuclei", "table2.md")])
def test_tables_hold_the_summaries(reproduced, target, name):
  script, _, out = reproduced
  lines, header, rows = table_rows(out / name)
  assert header == ["Methods", "Accuracy", "Sensitivity", "Precision", "IoU", "Dice coef",
                    "mean IoU incl. background", "per-image Dice", "Dice sd (seeds)",
                    "Variables (M)", "GFLOPs / image", "Train images/s"]
  assert lines[2].startswith("Settings: preset quick, epochs 1, image size 32x32")
  assert any("mean IoU over the target and background" in line for line in lines)
  assert any("random initialisation" in line for line in lines)
  assert list(rows) == ["U-Net", "U-Net + MobileNet"]
  keys = [key for _, key in script.COLUMNS]
  costs = json.loads((out / "results.json").read_text())["methods"][target]
  for method, label in zip(METHODS, rows):
    runs = summaries(out, method, target)
    means = [statistics.mean(run["test"][key] for run in runs) for key in keys]
    assert rows[label][:len(keys)] == [f"{100 * mean:.2f}" for mean in means]
    dice = [run["test"]["dice"] for run in runs]
    spread = f"{100 * statistics.stdev(dice):.2f} (2)" if len(runs) == 2 else "-"
    speed = statistics.median(run["train_images_per_second"] for run in runs)
    assert rows[label][len(keys):] == [spread, f"{costs[method]['variables'] / 1e6:.1f}",
                                       f"{costs[method]['gflops']:.2f}", f"{speed:.1f}"]
    assert costs[method]["gflops"] > 0 and costs[method]["variables"] > 0


def test_seeds_train_differently_on_one_split(reproduced):
  _, _, out = reproduced
  first, second = (out / "runs" / f"{'-'.join(SEEDED)}{suffix}" for suffix in ("", "-seed1"))
  assert (json.loads((first / "data.json").read_text())["splits"]
          == json.loads((second / "data.json").read_text())["splits"])
  configs = [json.loads((run / "config.json").read_text()) for run in (first, second)]
  assert [config["config"]["seed"] for config in configs] == [0, 1]
  assert summaries(out, *SEEDED)[0]["test"] != summaries(out, *SEEDED)[1]["test"]


def test_results_and_figure(reproduced):
  _, _, out = reproduced
  results = json.loads((out / "results.json").read_text())
  assert results["figure_method"] in METHODS
  for target in TARGETS:
    for method in METHODS:
      assert results["runs"][target][method] == summaries(out, method, target)
  assert results["versions"]["jax"] and results["machine"]
  for figure in ("figure2.png", "figure4.png", "study.png"):
    assert (out / figure).stat().st_size > 0


def test_rerun_skips_finished_runs_and_resumes_a_stopped_one(reproduced):
  script, argv, out = reproduced
  files = {(m, t): out / "runs" / f"{m}-{t}" / "summary.json" for m in METHODS for t in TARGETS}
  files["seed1"] = out / "runs" / f"{'-'.join(SEEDED)}-seed1" / "summary.json"
  stopped = files.pop(("unet", "nuclei"))
  before = json.loads(stopped.read_text())
  stopped.unlink()  # as if killed after its last epoch, before the summary
  times = {key: path.stat().st_mtime_ns for key, path in files.items()}
  script.main(argv)
  assert {key: path.stat().st_mtime_ns for key, path in files.items()} == times
  after = json.loads(stopped.read_text())
  assert after["test"] == pytest.approx(before["test"])
  assert after["best_epoch"] == before["best_epoch"] == 1


def test_finished_run_without_training_speed_is_refused(reproduced, tmp_path):
  script, _, _ = reproduced
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "summary.json").write_text(json.dumps({"config": {"epochs": 1}}))
  with pytest.raises(JaxsegError, match="earlier jaxseg"):
    script.train_or_skip(tmp_path / "old", Config(epochs=1))
