"""Host settings made before JAX starts: which platform is known, and malloc's tuning."""

import platform

import pytest

from jaxseg import host


@pytest.mark.parametrize("platforms, expected", [("cpu", True), ("cuda,cpu", False),
                                                 ("tpu", False)])
def test_jax_platforms_decides_whether_the_host_computes(monkeypatch, platforms, expected):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  assert host.cpu_only() is expected


def test_malloc_is_left_alone_on_an_accelerator(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  assert host.reuse_freed_memory() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibc_takes_the_settings_on_a_cpu(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert host.reuse_freed_memory() is True
