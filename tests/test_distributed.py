"""Data parallelism: 4 devices equal 1 device; two processes, preempted and resumed, equal one
(CPU collectives)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxseg.cli import PREEMPTED
from tests.support.helpers import write_folder


def cpu_devices(count: int, *, as_users_compile: bool = False) -> dict:
  """The environment of a process with ``count`` CPU devices, compiled at the suite's lower
  optimisation level or ``as_users_compile``: at the lower level, one device's and four
  devices' train steps part by whole Adam steps on a few percent of the deepest kernels'
  elements (jax 0.10.2); at the default level they agree within 1e-6."""
  flags = "" if as_users_compile else os.environ.get("XLA_FLAGS", "")
  return dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={count}",
              JAX_PLATFORMS="cpu")


def test_four_devices_train_like_one(tmp_path):
  results = {}
  for devices in (1, 4):
    out = tmp_path / f"{devices}.npz"
    done = subprocess.run([sys.executable, "-m", "tests.support.train_steps", str(out)],
                          env=cpu_devices(devices, as_users_compile=True),
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results[devices] = np.load(out)
  assert int(results[4]["devices"]) == 4 and int(results[1]["devices"]) == 1
  # Per-device BatchNorm statistics would change the losses: the batch mean is global.
  np.testing.assert_allclose(results[4]["losses"], results[1]["losses"], rtol=1e-5)
  names = [n for n in results[1].files if n not in ("devices", "losses")]
  assert names
  for name in names:
    np.testing.assert_allclose(results[4][name], results[1][name], atol=1e-5, rtol=1e-5,
                               err_msg=name)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


TINY = ["--image-size", "32", "--unet-filters", "4", "--batch-size", "4", "--loader", "plain",
        "--preset", "quick"]


def run_processes(count, module, *args, status: int = 0) -> list[tuple[str, str]]:
  """``python -m MODULE ARGS`` as ``count`` processes of two devices each, every one to exit
  with ``status``; their stdout and stderr."""
  port = free_port()
  extra = lambda i: ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(count),
                     "--process-id", str(i)] if count > 1 else []
  procs = [subprocess.Popen([sys.executable, "-m", module, *args, *extra(i)],
                            env=cpu_devices(2),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(count)]
  outputs = [p.communicate(timeout=900) for p in procs]
  # Every failed process's end: one that stops makes the others fail waiting for it.
  failed = [f"process {i} exited {p.returncode}:\n{err[-3000:]}"
            for i, (p, (_, err)) in enumerate(zip(procs, outputs)) if p.returncode != status]
  assert not failed, "\n".join(failed)
  return outputs


def train_processes(count, *args):
  run_processes(count, "jaxseg.train", *args)


def test_a_process_late_to_its_first_collective_is_waited_for():
  # Process 0's value (its id + 10), broadcast; every device's value (process id + 1),
  # doubled, summed over both processes' two devices.
  for out, _ in run_processes(2, "tests.support.late_process"):
    assert [float(v) for v in out.split()[-2:]] == [10, 2 * (1 + 1 + 2 + 2)]


def test_two_processes_preempted_resume_and_equal_one(tmp_path):
  """A SIGTERM to process 1 in epoch 2 stops both processes at the step they agree on, with
  the preempted status, the checkpoint they wrote together kept; resumed, they end as one
  process trained without a stop."""
  data = write_folder(tmp_path / "data", 12, size=64)
  single, multi = tmp_path / "single", tmp_path / "multi"
  train_processes(1, "--data", str(data), "--workdir", str(single), *TINY, "--epochs", "3")
  ends = run_processes(2, "tests.support.preempted_train", "--data", str(data), "--workdir",
                       str(multi), *TINY, "--epochs", "3", status=PREEMPTED)
  for _, err in ends:
    assert "jaxseg: stopped by SIGTERM; the latest checkpoint is kept" in err
  lines = lambda run: [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  (stop,) = json.loads((multi / "preempted.json").read_text())["preemptions"]
  assert stop["epochs_done"] in (1, 2)  # stopped in epoch 2 or 3, not after the last
  assert [m["epoch"] for m in lines(multi)] == list(range(1, stop["epochs_done"] + 1))
  train_processes(2, "--workdir", str(multi), "--resume")
  assert [m["epoch"] for m in lines(multi)] == [1, 2, 3]  # one writer: no duplicate lines
  np.testing.assert_allclose([m["train_loss"] for m in lines(multi)],
                             [m["train_loss"] for m in lines(single)], rtol=1e-4)
  summary = lambda run: json.loads((run / "summary.json").read_text())["test"]
  # Two and four devices sum gradients in different orders, so the weights part by rounding
  # and a pixel scored within rounding of a tie may change class: at most one of the test
  # split's 2 x 32 x 32 pixels, a few percent of counts as small as the nuclei's.
  assert summary(multi)["accuracy"] == pytest.approx(summary(single)["accuracy"], abs=1 / 2048)
  assert summary(multi) == pytest.approx(summary(single), rel=0.03)
