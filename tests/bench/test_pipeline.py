"""The input pipeline benchmark on a tiny folder: its report, not its speed."""

import json

from jaxseg.bench import pipeline as bench_pipeline
from jaxseg.data.pipeline import tensorflow_available
from tests.support.helpers import write_folder


def test_benchmark_writes_report(tmp_path, capsys):
  root = write_folder(tmp_path / "data", 3, size=128)
  out = tmp_path / "bench.json"
  bench_pipeline.main(["--data", str(root), "--image-size", "32", "--batch-size", "2",
                       "--epochs", "2", "--json", str(out)])
  report = json.loads(out.read_text())

  assert report["command"].startswith("python -m jaxseg.bench.pipeline --data ")
  for field in ("date", "cpu_count", "usable_cpus", "load_average_before", "load_average_after",
                "opencv_threads", "page_cache", "warm_up"):
    assert report[field], field
  assert {"python", "numpy", "opencv"} <= set(report["versions"])
  assert (report["images"], report["source_size"], report["image_size"]) == (3, [128, 128], 32)

  loaders = ["tf_loader", "plain_loader"] if tensorflow_available() else ["plain_loader"]
  assert list(report["results"]) == ["opencv_loop", *loaders]
  assert report["results"]["opencv_loop"]["first_epoch_images_per_s"] > 0
  for name in loaders:
    timing = report["results"][name]
    assert timing["first_epoch_images_per_s"] > 0 and timing["cached_images_per_s"] > 0
    assert timing["first_epoch_cpu_per_wall"] > 0
    assert report["first_epoch_speedup"][name] > 0
  assert all(ms >= 0 for ms in report["stages_ms_per_image"].values())
  assert "opencv_loop" in capsys.readouterr().out
