"""What the platform a command runs on decides: the forms its models are built in and the XLA
options their steps compile with. Commands resolve the ``kernels`` setting here once; the
models themselves never ask which backend they run on (`jaxseg.models.kernels`)."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

# XLA's CPU backend hands convolutions, matmuls and reductions to YNNPACK; its own (Eigen)
# convolutions run the train steps and predictions faster ("XLA's own convolution kernels" in
# docs/performance.md). Matmuls and reductions stay in YNNPACK.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


def resolve_kernels(setting: str) -> str:
  """The kernels ``setting`` names: ``auto`` is ``cpu`` where JAX computes on a CPU and
  ``xla`` elsewhere; ``xla`` and ``cpu`` are themselves."""
  if setting != "auto":
    return setting
  return "cpu" if jax.default_backend() == "cpu" else "xla"


@functools.cache
def compiler_options(kernels: str) -> dict[str, str]:
  """XLA options the steps of a model in ``kernels`` forms compile with: `CPU_COMPILER_OPTIONS`
  for ``cpu``, unless ``XLA_FLAGS`` sets them (a user's choice wins) or this XLA does not know
  them (they are experimental); none for ``xla``."""
  if kernels != "cpu" or any(name in os.environ.get("XLA_FLAGS", "")
                             for name in CPU_COMPILER_OPTIONS):
    return {}
  try:
    jax.jit(jnp.negative, compiler_options=CPU_COMPILER_OPTIONS).lower(1.0).compile()
  except jax.errors.JaxRuntimeError:
    return {}
  return CPU_COMPILER_OPTIONS
