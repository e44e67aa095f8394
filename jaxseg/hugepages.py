"""Transparent huge pages for the large blocks glibc's malloc maps, in a command that computes
on a CPU (`jaxseg.cli`).

XLA's CPU runtime takes each step's temporary buffers as one block of hundreds of MiB, which
glibc maps afresh and the kernel faults in 4 KiB at a time, every step. With
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` glibc asks for transparent huge pages on such blocks,
and they fault in 2 MiB at a time ("Huge pages for malloc" in docs/performance.md). glibc
reads its tunables only when a process starts, so the command re-runs itself once with the
setting, before it imports JAX. It does not where that was not measured to help: where JAX
has an accelerator plugin to compute on (or ``JAX_PLATFORMS`` names no CPU), where the
kernel's huge pages are ``never`` or already ``always``, on a glibc older than 2.35, and
where ``GLIBC_TUNABLES`` already names ``glibc.malloc.hugetlb``
(``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` turns it off).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def rerun_with_huge_pages() -> None:
  """Replace this process by itself with huge pages on, where that applies (module docstring)."""
  tunables = huge_page_tunables(os.environ.get("GLIBC_TUNABLES"))
  if tunables is None or not computes_on_cpu(os.environ) or not supported():
    return
  os.environ["GLIBC_TUNABLES"] = tunables
  sys.stdout.flush()  # exec would drop what is still buffered
  sys.stderr.flush()
  os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def huge_page_tunables(current: str | None) -> str | None:
  """GLIBC_TUNABLES to re-run with (``current`` plus the huge-page setting), or None where
  ``current`` chooses the setting already."""
  if TUNABLE in (current or ""):
    return None
  return ":".join(filter(None, (current, f"{TUNABLE}=1")))


def computes_on_cpu(environ) -> bool:
  """Whether JAX will compute on the CPU, as far as can be told without importing it:
  ``JAX_PLATFORMS`` names the CPU first, or names nothing and no accelerator plugin (CUDA,
  ROCm, TPU) is installed."""
  platforms = environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  plugins = importlib.metadata.entry_points(group="jax_plugins")
  return not plugins and importlib.util.find_spec("libtpu") is None


def supported() -> bool:
  """glibc 2.35 or later (the first with the tunable), and the kernel's huge pages on request."""
  try:
    _, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    mode = _THP_MODE.read_text()
  except (ValueError, OSError, AttributeError):  # not glibc, or not Linux
    return False
  return tuple(map(int, version.split(".")[:2])) >= (2, 35) and "[madvise]" in mode
