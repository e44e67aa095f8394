"""Settings of the host process that must come before numpy or JAX start a thread: importing
jaxseg imports this module first and makes them.

XLA's CPU runtime allocates a step's buffers afresh at every step, from its worker threads.
glibc's malloc gives those threads arenas of their own, which map big blocks with mmap and
hand them back to the kernel when freed, so every step faulted in (and the kernel zeroed)
hundreds of MiB again: 66,000 minor page faults a step for the quick plain U-Net at batch 8,
165,000 for VGG19 (docs/cpu-performance.md). One arena that neither maps nor trims keeps the
freed memory for the next step. It has to be set before any other thread mallocs: a thread
keeps the arena it got, and numpy starts one at import. On an accelerator the host's malloc is
not on the step's path, so it is left alone there, and so it is where the environment sets
malloc's options itself (``GLIBC_TUNABLES``, ``MALLOC_*``).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform

# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
INT_MAX = 2**31 - 1


def cpu_only() -> bool:
  """Whether JAX will compute on the host CPU, known before it starts: ``JAX_PLATFORMS``
  names the CPU first, or no accelerator plugin (CUDA, ROCm, TPU) is installed."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  return not (importlib.metadata.entry_points(group="jax_plugins")
              or importlib.util.find_spec("jax_plugins") or importlib.util.find_spec("libtpu"))


def reuse_freed_memory() -> bool:
  """On a CPU-only host with glibc, unless the environment sets malloc's options: one malloc
  arena, no mmap, no trimming, so that XLA's per-step buffers are reused instead of faulted
  in anew. True if it was set."""
  if (not cpu_only() or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
      or any(name == "GLIBC_TUNABLES" or name.startswith("MALLOC_") for name in os.environ)):
    return False
  libc = ctypes.CDLL(None)
  return all(libc.mallopt(parameter, value) == 1 for parameter, value in
             ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, INT_MAX)))


FREED_MEMORY_REUSED = reuse_freed_memory()
