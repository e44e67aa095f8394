"""Input pipeline benchmark: images/s from image files (1130x1130 BMP) to 224x224 batches.

  python -m jaxseg.bench.pipeline --data synthetic --num-images 100 --json FILE

Times, over the same files in one run: a plain single-threaded OpenCV loop (cv2.imread, then
cv2.resize: area averaging for the image, nearest neighbour for the mask), and the tf.data and
plain `Loader`s: their first epoch (a fresh Loader: decode, check, resize, cache) and the cached
epochs after it (shuffle, batch). Every file is read once before any timing, so that every
method finds the files in the operating system's page cache: the numbers measure decoding, not
the disk. The stages of one `decode_example`, timed alone, show where a first epoch goes.
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import collections
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from jaxseg.cli import ArgumentParser, command
from jaxseg.config import default_cache_dir
from jaxseg.data import synthetic
from jaxseg.data.enhance import Enhance
from jaxseg.data.files import read_image
from jaxseg.data.folder import find_examples
from jaxseg.data.masks import TARGETS, check_mask_values, target_mask
from jaxseg.data.pipeline import Loader, import_tensorflow, tensorflow_available
from jaxseg.errors import JaxsegError, refuse_existing

PAGE_CACHE = "warm: every file was read once before timing"
WARM_UP = "a 2-image Loader of each kind ran first: process start-up is not timed"


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.bench.pipeline", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", required=True, help="'synthetic' or a folder: DATA/images, masks")
  parser.add_argument("--num-images", type=int,
                      help="images to time (synthetic: to write; default 100, a folder: all)")
  parser.add_argument("--synthetic-size", type=int, default=synthetic.PAPER_SIZE)
  parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                      help="where the synthetic images are written")
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--batch-size", type=int, default=18)
  parser.add_argument("--epochs", type=int, default=3, help="the first epoch and cached ones")
  parser.add_argument("--target", choices=TARGETS, default="nuclei")
  parser.add_argument("--repeats", type=int, default=1,
                      help="time every method this often, interleaved; report the fastest")
  parser.add_argument("--opencv-threads", type=int,
                      help="cv2.setNumThreads for every method (default: OpenCV's own)")
  parser.add_argument("--json", type=Path, help="write the results here")
  return parser.parse_args(argv)


def benchmark_examples(args: argparse.Namespace):
  """(folder, examples): the data set's image/mask pairs, the first --num-images of them."""
  if args.data == "synthetic":
    count = args.num_images or 100
    root = synthetic.default_root(args.cache_dir, count, 0, args.synthetic_size)
    root = synthetic.write_synthetic(root, count, size=args.synthetic_size)
  else:
    root = Path(args.data).expanduser()
  examples = find_examples(root)[: args.num_images]
  return root, examples


def read_all_files(examples) -> int:
  """Read every file once, so that all methods find them in the page cache; total bytes."""
  return sum(len(Path(path).read_bytes()) for e in examples for path in (e.image, e.mask))


def stopwatch() -> tuple[float, float]:
  return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float]) -> dict:
  """Wall seconds since ``start``, and this process's CPU seconds (all its threads)."""
  wall, cpu = stopwatch()
  return {"s": wall - start[0], "cpu_s": cpu - start[1]}


def opencv_loop(examples, image_size: int) -> dict:
  """The plain loop's time: one thread, imread and resize, no checks, no batches."""
  size = (image_size, image_size)
  start = stopwatch()
  for example in examples:
    image = cv2.imread(str(example.image), cv2.IMREAD_COLOR)
    mask = cv2.imread(str(example.mask), cv2.IMREAD_UNCHANGED)
    cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
  return {"first_epoch": elapsed(start), "cached_epochs": []}


def time_loader(kind: str, examples, args: argparse.Namespace, epochs: int) -> dict:
  """Times of a fresh Loader's first epoch (decoding included) and of its cached epochs."""
  loader = Loader(examples, image_size=args.image_size, target=args.target,
                  enhancement=Enhance(), batch_size=args.batch_size, seed=0, kind=kind)
  times = []
  for epoch in range(epochs):
    start = stopwatch()
    for _ in loader.epoch(epoch, shuffle=True, drop_remainder=False):
      pass
    times.append(elapsed(start))
  return {"first_epoch": times[0], "cached_epochs": times[1:]}


def summary(runs: list[dict], count: int) -> dict:
  """Images/s of the fastest first epoch and cached epoch over the repeats; the runs kept."""
  first = min((run["first_epoch"] for run in runs), key=lambda time: time["s"])
  cached = [time["s"] for run in runs for time in run["cached_epochs"]]
  return {
    "first_epoch_images_per_s": count / first["s"],
    "first_epoch_cpu_per_wall": first["cpu_s"] / first["s"],
    # CPU time, all threads: what an epoch costs whatever share of the CPUs other jobs leave.
    "first_epoch_cpu_ms_per_image": 1000 * first["cpu_s"] / count,
    "cached_images_per_s": count / min(cached) if cached else None,
    "runs": runs,
  }


def stage_times(examples, image_size: int, target: str) -> dict:
  """Milliseconds per image of each stage of `decode_example`, one image at a time."""
  size = (image_size, image_size)
  totals = collections.defaultdict(float)

  def timed(stage, function, *args, **options):
    start = time.perf_counter()
    result = function(*args, **options)
    totals[stage] += time.perf_counter() - start
    return result

  for example in examples:
    data = timed("read image file", np.fromfile, example.image, np.uint8)
    image = timed("decode image", cv2.imdecode, data, cv2.IMREAD_UNCHANGED)
    image = timed("BGR to RGB", cv2.cvtColor, image, cv2.COLOR_BGR2RGB)
    timed("resize image (area)", cv2.resize, image, size, interpolation=cv2.INTER_AREA)
    data = timed("read mask file", np.fromfile, example.mask, np.uint8)
    mask = timed("decode mask", cv2.imdecode, data, cv2.IMREAD_UNCHANGED)
    timed("check mask values", check_mask_values, mask, example.mask)
    mask = timed("target mask", target_mask, mask, target)
    timed("resize mask (nearest)", cv2.resize, mask, size, interpolation=cv2.INTER_NEAREST)
  return {stage: 1000 * total / len(examples) for stage, total in totals.items()}


def versions() -> dict:
  found = {"python": platform.python_version(), "numpy": np.__version__,
           "opencv": cv2.__version__}
  if tensorflow_available():
    found["tensorflow"] = import_tensorflow().__version__
  return found


def run(args: argparse.Namespace, command: str) -> dict:
  if args.epochs < 1 or args.repeats < 1:
    raise JaxsegError("--epochs and --repeats must be at least 1")
  root, examples = benchmark_examples(args)
  if not examples:
    raise JaxsegError(f"{root}: no images to time")
  count = len(examples)
  kinds = ["tf", "plain"] if tensorflow_available() else ["plain"]
  found_versions = versions()  # imports TensorFlow before any timing
  for kind in kinds:  # start-up costs once per process (TensorFlow's runtime, thread pools)
    time_loader(kind, examples[:2], args, epochs=1)
  file_bytes = read_all_files(examples)
  load_before = os.getloadavg()

  # Repeats interleave the methods, so that a busy spell of other jobs hits them alike.
  runs = collections.defaultdict(list)
  for _ in range(args.repeats):
    runs["opencv_loop"].append(opencv_loop(examples, args.image_size))
    for kind in kinds:
      runs[f"{kind}_loader"].append(time_loader(kind, examples, args, args.epochs))
  results = {name: summary(method_runs, count) for name, method_runs in runs.items()}
  baseline = results["opencv_loop"]["first_epoch_images_per_s"]
  return {
    "command": command,
    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    "cpu_count": os.cpu_count(),
    "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    "load_average_before": load_before,  # 1, 5 and 15 minutes: other jobs on the machine
    "load_average_after": os.getloadavg(),
    "opencv_threads": cv2.getNumThreads(),
    "versions": found_versions,
    "data": str(root),
    "images": count,
    "source_size": list(read_image(examples[0].image).shape[:2]),
    "file_megabytes": round(file_bytes / 1e6, 1),
    "image_size": args.image_size,
    "batch_size": args.batch_size,
    "epochs": args.epochs,
    "repeats": args.repeats,
    "page_cache": PAGE_CACHE,
    "warm_up": WARM_UP,
    "results": results,
    "first_epoch_speedup": {name: timing["first_epoch_images_per_s"] / baseline
                            for name, timing in results.items() if name != "opencv_loop"},
    "stages_ms_per_image": stage_times(examples, args.image_size, args.target),
  }


def print_report(report: dict) -> None:
  print(f"{report['images']} images of {report['source_size'][1]}x{report['source_size'][0]} "
        f"-> {report['image_size']}x{report['image_size']}, batch {report['batch_size']}, "
        f"fastest of {report['repeats']}; {report['usable_cpus']} CPUs, load "
        f"{report['load_average_before'][0]:.2f} before, {report['load_average_after'][0]:.2f} "
        f"after; OpenCV threads {report['opencv_threads']}; page cache {report['page_cache']}")
  print(f"{'method':14s}{'first epoch img/s':>19s}{'vs loop':>9s}{'CPU/wall':>10s}"
        f"{'CPU ms/img':>12s}{'cached img/s':>14s}")
  for name, timing in report["results"].items():
    speedup = report["first_epoch_speedup"].get(name, 1.0)
    cached = timing["cached_images_per_s"]
    print(f"{name:14s}{timing['first_epoch_images_per_s']:19.1f}{speedup:8.2f}x"
          f"{timing['first_epoch_cpu_per_wall']:10.2f}"
          f"{timing['first_epoch_cpu_ms_per_image']:12.1f}"
          + (f"{cached:14.0f}" if cached else f"{'-':>14s}"))
  stages = report["stages_ms_per_image"]
  print(f"stages of decode_example, one image at a time: {sum(stages.values()):.1f} ms/image")
  for name, ms in stages.items():
    print(f"  {name:24s}{ms:7.2f} ms")


@command
def main(argv=None) -> None:
  args = parse_args(argv)
  refuse_existing("--json", args.json, "jaxseg.bench.pipeline")
  command = shlex.join(["python", "-m", "jaxseg.bench.pipeline",
                        *(sys.argv[1:] if argv is None else argv)])
  if args.opencv_threads is not None:
    cv2.setNumThreads(args.opencv_threads)
  report = run(args, command)
  print_report(report)
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")

