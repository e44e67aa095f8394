"""Host settings made before JAX starts: which platform is known, and malloc's tuning."""

import os
import platform

import pytest

from jaxseg import host


@pytest.mark.parametrize("platforms, expected", [("cpu", True), ("cuda,cpu", False),
                                                 ("tpu", False)])
def test_jax_platforms_decides_whether_the_host_computes(monkeypatch, platforms, expected):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  assert host.cpu_only() is expected


def test_malloc_is_left_alone_on_an_accelerator_or_when_the_environment_sets_it(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  assert host.reuse_freed_memory() is False
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
  assert host.reuse_freed_memory() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibc_takes_the_settings_on_a_cpu(monkeypatch):
  for name in [n for n in os.environ if n.startswith("MALLOC_") or n == "GLIBC_TUNABLES"]:
    monkeypatch.delenv(name)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert host.reuse_freed_memory() is True
