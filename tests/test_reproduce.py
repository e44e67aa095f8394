"""experiments/reproduce.py on tiny images: tables equal to the runs' summaries, reruns skip."""

import importlib.util
import json
from pathlib import Path

import pytest

from jaxseg.data.synthetic import write_synthetic

SCRIPT = Path(__file__).parents[1] / "experiments" / "reproduce.py"
METHODS, TARGETS = ("unet", "mobilenet"), ("cytoplasm", "nuclei")


def load_script():
  spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
  root = tmp_path_factory.mktemp("reproduce")
  data = write_synthetic(root / "data", 16, size=64, progress=False)
  out = root / "out"
  argv = ["--data", str(data), "--out", str(out), "--methods", ",".join(METHODS),
          "--targets", ",".join(TARGETS), "--preset", "quick", "--epochs", "1",
          "--image-size", "32", "--batch-size", "2", "--unet-filters", "4", "--loader", "plain",
          "--weights", "none", "--cache-dir", str(root / "cache")]
  script = load_script()
  script.main(argv)
  return script, argv, out


def summary(out, method, target):
  return json.loads((out / "runs" / f"{method}-{target}" / "summary.json").read_text())


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
                    "mean IoU incl. background", "per-image Dice"]
  assert lines[2].startswith("Settings: preset quick, epochs 1, image size 32x32")
  assert any("mean IoU over the target and background" in line for line in lines)
  assert list(rows) == ["U-Net", "U-Net + MobileNet"]
  keys = [key for _, key in script.COLUMNS]
  for method, label in zip(METHODS, rows):
    test = summary(out, method, target)["test"]
    assert rows[label] == [f"{100 * test[key]:.2f}" for key in keys]


def test_results_and_figure(reproduced):
  _, _, out = reproduced
  results = json.loads((out / "results.json").read_text())
  assert results["figure_method"] in METHODS
  for target in TARGETS:
    for method in METHODS:
      assert results["runs"][target][method] == summary(out, method, target)
  assert (out / "figure4.png").stat().st_size > 0
  assert (out / "figure2.png").stat().st_size > 0


def test_rerun_skips_finished_runs_and_resumes_a_stopped_one(reproduced):
  script, argv, out = reproduced
  files = {(m, t): out / "runs" / f"{m}-{t}" / "summary.json" for m in METHODS for t in TARGETS}
  stopped = files.pop(("unet", "nuclei"))
  before = json.loads(stopped.read_text())
  stopped.unlink()  # as if killed after its last epoch, before the summary
  times = {key: path.stat().st_mtime_ns for key, path in files.items()}
  script.main(argv)
  assert {key: path.stat().st_mtime_ns for key, path in files.items()} == times
  after = json.loads(stopped.read_text())
  assert after["test"] == pytest.approx(before["test"])
  assert after["best_epoch"] == before["best_epoch"] == 1
