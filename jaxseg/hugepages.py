"""Transparent huge pages for the large blocks glibc's malloc maps, in jaxseg's commands.

XLA's CPU runtime takes each step's temporary buffers as one block of hundreds of MiB, which
glibc maps afresh and the kernel faults in 4 KiB at a time, every step (0.15-0.4 s of system
time a training step at batch 8 and 128 px). With ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
glibc asks for transparent huge pages on such blocks, and they fault in 2 MiB at a time
(docs/cpu-performance.md, change 9). glibc reads its tunables only when a process starts, so a
jaxseg command (``python -m jaxseg...`` or a ``jaxseg-...`` script) re-runs itself once with
the setting, before it has imported anything else. It does not when the kernel's huge pages
are ``never`` or already ``always``, nor when GLIBC_TUNABLES already names
``glibc.malloc.hugetlb``: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` turns it off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def rerun_with_huge_pages() -> None:
  """Replace this process by itself with huge pages on, where that applies (module docstring)."""
  tunables = huge_page_tunables(os.environ.get("GLIBC_TUNABLES"), sys.argv[:1], sys.orig_argv)
  if tunables is None or not _supported():
    return
  os.environ["GLIBC_TUNABLES"] = tunables
  sys.stdout.flush()  # exec would drop what is still buffered
  sys.stderr.flush()
  os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def huge_page_tunables(current: str | None, argv0: list[str], orig_argv: list[str]) -> str | None:
  """GLIBC_TUNABLES to re-run a jaxseg command with (``current`` plus the huge-page setting), or
  None: not a jaxseg command, or the setting already chosen."""
  if not _is_jaxseg_command(argv0, orig_argv) or TUNABLE in (current or ""):
    return None
  return ":".join(filter(None, (current, f"{TUNABLE}=1")))


def _is_jaxseg_command(argv0: list[str], orig_argv: list[str]) -> bool:
  # While ``python -m NAME`` imports NAME's packages, sys.argv[0] is "-m".
  if argv0 == ["-m"]:
    return _module_run(orig_argv).split(".")[0] == "jaxseg"
  return bool(argv0) and Path(argv0[0]).name.startswith("jaxseg-")


def _module_run(orig_argv: list[str]) -> str:
  """NAME in ``python [options] -m NAME args`` (or ``-mNAME``)."""
  for i, arg in enumerate(orig_argv[1:], start=1):
    if arg == "-m":
      return orig_argv[i + 1] if i + 1 < len(orig_argv) else ""
    if arg.startswith("-m"):
      return arg[2:]
  return ""


def _supported() -> bool:
  """glibc 2.35 or later (the first with the tunable), and the kernel's huge pages on request."""
  try:
    _, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    mode = _THP_MODE.read_text()
  except (ValueError, OSError, AttributeError):  # not glibc, or not Linux
    return False
  return tuple(map(int, version.split(".")[:2])) >= (2, 35) and "[madvise]" in mode
