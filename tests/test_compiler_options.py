"""The XLA options the steps are compiled with on a CPU: convolutions in XLA's own kernels."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg import engine
from tests.helpers import tiny_model


@pytest.fixture
def fresh_options():
  engine.compiler_options.cache_clear()
  yield engine.compiler_options
  engine.compiler_options.cache_clear()


def ynnpack_convolutions(compiled_text: str) -> int:
  """Convolutions inside the YNNPACK fusions of a compiled module's HLO text."""
  bodies = dict(re.findall(r"^%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", compiled_text,
                           re.DOTALL | re.MULTILINE))
  called = re.findall(r"%ynn_fusion[\w.\-]* = [^\n]*calls=%([\w.\-]+)", compiled_text)
  return sum(bodies.get(name, "").count(" convolution(") for name in called)


def test_the_steps_keep_convolutions_out_of_ynnpack_on_a_cpu(fresh_options):
  if jax.default_backend() != "cpu":
    pytest.skip("the options are for XLA's CPU backend")
  _, steps, state = tiny_model(unet_filters=32)
  images = np.random.default_rng(0).random((2, 16, 16, 3), np.float32)
  default = jax.jit(steps.probabilities.__wrapped__).lower(state, images).compile().as_text()
  if not ynnpack_convolutions(default):
    pytest.skip("this XLA does not hand these convolutions to YNNPACK")
  ours = steps.probabilities.lower(state, images).compile().as_text()
  assert " convolution(" in ours and ynnpack_convolutions(ours) == 0


def test_options_are_left_out_where_xla_does_not_know_them(fresh_options, monkeypatch):
  if jax.default_backend() != "cpu":
    pytest.skip("the options are for XLA's CPU backend")
  assert fresh_options() == engine.CPU_COMPILER_OPTIONS  # this XLA knows them
  fresh_options.cache_clear()
  monkeypatch.setattr(engine, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "true"})
  assert fresh_options() == {}


def test_options_in_xla_flags_are_the_users_choice(fresh_options, monkeypatch):
  (name,) = engine.CPU_COMPILER_OPTIONS
  monkeypatch.setenv("XLA_FLAGS", f"--{name}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT")
  assert fresh_options() == {}


def test_a_convolution_in_xlas_kernels_computes_the_same(fresh_options):
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 32))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 32, 32))
  conv = lambda x, kernel: jax.lax.conv_general_dilated(
    x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = jax.jit(conv, compiler_options=fresh_options())(x, kernel)
  np.testing.assert_allclose(ours, jax.jit(conv)(x, kernel), rtol=1e-5, atol=1e-4)
  assert jnp.abs(ours).max() > 1  # not all zeros
