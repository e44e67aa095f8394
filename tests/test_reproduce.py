"""python -m jaxseg.reproduce on tiny images: tables equal to the runs' summaries, seeds share a
split, reruns skip."""

import json
import statistics

import numpy as np
import pytest

from jaxseg import reproduce
from jaxseg.config import Config
from jaxseg.data.synthetic import write_synthetic
from jaxseg.errors import JaxsegError
from jaxseg.metrics import scores
from jaxseg.run_folder import RunFolder

METHODS, TARGETS = ("unet", "mobilenet"), ("nuclei", "cell")
SEEDS = 2


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
  root = tmp_path_factory.mktemp("reproduce")
  data = write_synthetic(root / "data", 16, size=64, progress=False)
  out = root / "out"
  argv = ["--data", str(data), "--out", str(out), "--methods", ",".join(METHODS),
          "--targets", ",".join(TARGETS), "--preset", "quick", "--epochs", "1",
          "--image-size", "32", "--batch-size", "2", "--unet-filters", "4", "--loader", "plain",
          "--weights", "none", "--cache-dir", str(root / "cache"), "--seeds", str(SEEDS)]
  script = reproduce
  script.main(argv)
  return script, argv, out


def summary(out, method, target, suffix=""):
  return json.loads((out / "runs" / f"{method}-{target}{suffix}" / "summary.json").read_text())


def summaries(out, method, target):
  return [summary(out, method, target, f"-seed{seed}" if seed else "") for seed in range(SEEDS)]


def table_rows(path):
  lines = path.read_text().splitlines()
  rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
          if line.startswith("| ")]
  return lines, rows[0], {row[0]: row[1:] for row in rows[1:]}


def interval(value, low_high):
  return f"{100 * value:.2f} [{100 * low_high[0]:.2f}, {100 * low_high[1]:.2f}]"


@pytest.mark.parametrize("target, name", [("cytoplasm", "table1.md"), ("nuclei", "table2.md")])
def test_tables_hold_the_summaries_and_their_ranking(reproduced, target, name):
  script, _, out = reproduced
  lines, header, rows = table_rows(out / name)
  assert header == ["Methods", "Dice (%) [95% interval]", "Difference from best", "Group",
                    "Per-image Dice", "Accuracy", "Sensitivity", "Precision", "IoU",
                    "mean IoU incl. background", "Seeds", "Variables (M)", "GFLOPs / image",
                    "Train images/s"]
  assert lines[2].startswith("Settings: preset quick, epochs 1, image size 32x32")
  assert any("cannot all be pooled metrics of one prediction" in line for line in lines)
  assert any(line.startswith("**Reading.**") for line in lines)
  kinds = [kind for kind in TARGETS if kind in (target, "cell")]
  expected_rows = [reproduce.row_label(method + ("" if kind == target else "-cell"))
                   for method in METHODS for kind in kinds]
  assert list(rows) == [*expected_rows, "Otsu threshold (paper's masks)"]
  results = json.loads((out / "results.json").read_text())
  ranking = results["rankings"][target]
  keys = [key for _, key in script.COLUMNS]
  for method in METHODS:
    for kind in kinds:
      label = reproduce.row_label(method + ("" if kind == target else "-cell"))
      runs = summaries(out, method, kind)
      tests = [run["test"][target] if kind == "cell" else run["test"] for run in runs]
      dice = statistics.mean(test["dice"] for test in tests)
      ranked = ranking["methods"][method + ("" if kind == target else "-cell")]
      assert ranked["pooled_dice"] == pytest.approx(dice)
      assert rows[label][0] == interval(dice, ranked["pooled_dice_interval"])
      assert ranked["pooled_dice_interval"][0] <= dice <= ranked["pooled_dice_interval"][1]
      assert rows[label][2] == ranked["letters"]
      means = [statistics.mean(test[key] for test in tests) for key in keys]
      assert rows[label][4:4 + len(keys)] == [f"{100 * mean:.2f}" for mean in means]
      assert rows[label][4 + len(keys)] == str(SEEDS)
  assert ranking["seeds"] == SEEDS and ranking["images"] == len(
    summaries(out, METHODS[0], TARGETS[0])[0]["test_images"]["names"])


def test_speed_is_each_runs_fastest_epoch_after_the_first(tmp_path):
  run = RunFolder(tmp_path / "run")
  run.path.mkdir()
  for speed in (1.0, 9.5, 4.0, 7.0):  # the first epoch compiles; the third shared the machine
    run.append_metrics({"train_images_per_second": speed})
  assert reproduce.fastest_images_per_second(run.path) == 9.5
  run.metrics_file.unlink()
  with pytest.raises(JaxsegError, match=r"metrics\.jsonl: no epochs recorded"):
    reproduce.fastest_images_per_second(run.path)


def test_per_image_counts_add_up_to_the_pooled_metrics(reproduced):
  _, _, out = reproduced
  for method in METHODS:
    for run in summaries(out, method, "nuclei") + summaries(out, method, "cell"):
      targets = ("cytoplasm", "nuclei") if run["target"] == "cell" else ("nuclei",)
      for target in targets:
        counts = np.array(run["test_images"][target]).sum(axis=0)
        test = run["test"][target] if run["target"] == "cell" else run["test"]
        assert scores(counts[None])["dice"] == pytest.approx(test["dice"])
        otsu = np.array(run["otsu_test_images"][target]).sum(axis=0)
        otsu_test = run["otsu_test"][target] if run["target"] == "cell" else run["otsu_test"]
        assert scores(otsu[None])["dice"] == pytest.approx(otsu_test["dice"])


def test_seeds_train_differently_on_one_split(reproduced):
  _, _, out = reproduced
  first, second = (out / "runs" / f"unet-nuclei{suffix}" for suffix in ("", "-seed1"))
  assert (json.loads((first / "data.json").read_text())["splits"]
          == json.loads((second / "data.json").read_text())["splits"])
  configs = [json.loads((run / "config.json").read_text()) for run in (first, second)]
  assert [config["config"]["seed"] for config in configs] == [0, 1]
  assert summaries(out, "unet", "nuclei")[0]["test"] != summaries(out, "unet", "nuclei")[1]["test"]


def test_results_and_figure(reproduced):
  _, _, out = reproduced
  results = json.loads((out / "results.json").read_text())
  val_dice = {}  # each row's mean validation Dice, averaged over the tables it is in
  for target, rows in results["methods"].items():
    for key, row in rows.items():
      if key != "otsu":
        val_dice.setdefault(key, []).append(row["val_dice"])
  assert results["figure_method"] == max(val_dice, key=lambda key: np.mean(val_dice[key]))
  for target in TARGETS:
    for method in METHODS:
      assert results["runs"][target][method] == summaries(out, method, target)
  assert results["versions"]["jax"] and results["machine"]
  for figure in ("figure2.png", "figure4.png", "study.png"):
    assert (out / figure).stat().st_size > 0


def test_rerun_skips_finished_runs_and_resumes_a_stopped_one(reproduced):
  script, argv, out = reproduced
  files = {(m, t): out / "runs" / f"{m}-{t}" / "summary.json" for m in METHODS for t in TARGETS}
  files.update({(m, t, 1): out / "runs" / f"{m}-{t}-seed1" / "summary.json"
                for m in METHODS for t in TARGETS})
  stopped = files.pop(("unet", "nuclei"))
  before = json.loads(stopped.read_text())
  stopped.unlink()  # as if killed after its last epoch, before the summary
  times = {key: path.stat().st_mtime_ns for key, path in files.items()}
  script.main(argv)
  assert {key: path.stat().st_mtime_ns for key, path in files.items()} == times
  after = json.loads(stopped.read_text())
  assert after["test"] == pytest.approx(before["test"])
  assert after["best_epoch"] == before["best_epoch"] == 1


def test_no_train_rebuilds_the_tables_from_the_runs_alone(reproduced, tmp_path, capsys):
  script, argv, out = reproduced
  tables = {name: (out / name).read_text() for name in ("table1.md", "table2.md")}
  for name in tables:
    (out / name).unlink()
  trained = json.loads((out / "results.json").read_text())
  script.main([*argv, "--no-train"])
  assert {name: (out / name).read_text() for name in tables} == tables
  rebuilt = json.loads((out / "results.json").read_text())
  assert rebuilt["command"] == trained["command"] and "--no-train" in rebuilt["rebuilt"]["command"]
  assert rebuilt["rankings"] == trained["rankings"]
  elsewhere = [*argv[:argv.index("--out") + 1], str(tmp_path / "none"),
               *argv[argv.index("--out") + 2:], "--no-train"]
  with pytest.raises(SystemExit):
    script.main(elsewhere)
  assert "unet-nuclei: no finished run" in capsys.readouterr().err


def test_finished_run_without_per_image_counts_is_refused(reproduced, tmp_path):
  script, _, _ = reproduced
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "summary.json").write_text(json.dumps({"config": {"epochs": 1}}))
  with pytest.raises(JaxsegError, match="earlier jaxseg"):
    script.train_or_skip(tmp_path / "old", Config(epochs=1))
