"""What the platform decides: the kernels `auto` means, and the XLA options the steps of the CPU
forms compile with (convolutions in XLA's own kernels)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import platform
from tests.support.helpers import tiny_model


@pytest.fixture
def fresh_options():
  platform.compiler_options.cache_clear()
  yield platform.compiler_options
  platform.compiler_options.cache_clear()


def ynnpack_convolutions(compiled_text: str) -> int:
  """Convolutions inside the YNNPACK fusions of a compiled module's HLO text."""
  bodies = dict(re.findall(r"^%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", compiled_text,
                           re.DOTALL | re.MULTILINE))
  called = re.findall(r"%ynn_fusion[\w.\-]* = [^\n]*calls=%([\w.\-]+)", compiled_text)
  return sum(bodies.get(name, "").count(" convolution(") for name in called)


def test_the_steps_keep_convolutions_out_of_ynnpack_on_a_cpu(fresh_options):
  if jax.default_backend() != "cpu":
    pytest.skip("the options are for XLA's CPU backend")
  _, steps, state = tiny_model(unet_filters=32, kernels="cpu")
  images = np.random.default_rng(0).random((2, 16, 16, 3), np.float32)
  default = jax.jit(steps.probabilities.__wrapped__).lower(state, images).compile().as_text()
  if not ynnpack_convolutions(default):
    pytest.skip("this XLA does not hand these convolutions to YNNPACK")
  ours = steps.probabilities.lower(state, images).compile().as_text()
  assert " convolution(" in ours and ynnpack_convolutions(ours) == 0


def test_options_are_left_out_where_xla_does_not_know_them(fresh_options, monkeypatch):
  if jax.default_backend() != "cpu":
    pytest.skip("the options are for XLA's CPU backend")
  assert fresh_options("cpu") == platform.CPU_COMPILER_OPTIONS  # this XLA knows them
  fresh_options.cache_clear()
  monkeypatch.setattr(platform, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "true"})
  assert fresh_options("cpu") == {}


def test_options_in_xla_flags_are_the_users_choice(fresh_options, monkeypatch):
  (name,) = platform.CPU_COMPILER_OPTIONS
  monkeypatch.setenv("XLA_FLAGS", f"--{name}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT")
  assert fresh_options("cpu") == {}


def test_the_portable_kernels_compile_with_xlas_defaults(fresh_options):
  assert fresh_options("xla") == {}


def test_auto_means_the_cpu_forms_on_a_cpu_and_the_portable_ones_elsewhere():
  expected = "cpu" if jax.default_backend() == "cpu" else "xla"
  assert platform.resolve_kernels("auto") == expected
  assert [platform.resolve_kernels(name) for name in ("xla", "cpu")] == ["xla", "cpu"]


def test_a_convolution_in_xlas_kernels_computes_the_same(fresh_options):
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 32))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 32, 32))
  conv = lambda x, kernel: jax.lax.conv_general_dilated(
    x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = jax.jit(conv, compiler_options=fresh_options("cpu"))(x, kernel)
  np.testing.assert_allclose(ours, jax.jit(conv)(x, kernel), rtol=1e-5, atol=1e-4)
  assert jnp.abs(ours).max() > 1  # not all zeros
