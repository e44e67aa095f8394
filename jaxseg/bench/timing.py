"""Measuring steps: steady-state throughput, compile times, XLA's FLOPs and device memory.

Shared by `jaxseg.bench` and its peers (`jaxseg.bench.peers`), so that every program is timed the
same way: ``warmup`` steps, then the median of ``repeats`` runs of ``steps`` steps, each run
ended by waiting for its last result.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxseg.models.layers import reference_ops


@dataclasses.dataclass(frozen=True)
class Timing:
  steps: int = 20
  repeats: int = 5
  warmup: int = 3


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
  """``fn()`` and the seconds it took."""
  start = time.perf_counter()
  result = fn()
  return result, time.perf_counter() - start


def steps_per_second(step: Callable[[], Any], sync: Callable[[Any], Any], timing: Timing) -> float:
  """Steady-state rate of ``step``; ``sync`` waits until a step's result is computed."""
  for _ in range(timing.warmup):
    sync(step())
  seconds = []
  for _ in range(timing.repeats):
    start = time.perf_counter()
    for _ in range(timing.steps):
      result = step()
    sync(result)
    seconds.append(time.perf_counter() - start)
  return timing.steps / statistics.median(seconds)


def model_flops(jitted, *args) -> float | None:
  """FLOPs of ``jitted(*args)`` by XLA's cost analysis of the models' reference operations
  (`jaxseg.models.layers.reference_ops`), the same on every backend: on a CPU some layers
  loop over kernel taps, and the analysis counts a loop's body once."""
  fresh = jax.jit(functools.partial(jitted.__wrapped__))  # traced anew, not from jitted's cache
  with reference_ops():
    return xla_flops(fresh.lower(*args))


def xla_flops(stage) -> float | None:
  """FLOPs of a lowered or compiled computation by XLA's cost analysis (None if it has none)."""
  analysis = stage.cost_analysis()
  if isinstance(analysis, Sequence):  # a list with one dict per computation in older jax
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops", 0.0)
  return float(flops) if flops > 0 else None


def step_bytes(compiled) -> int | None:
  """Device memory one call of ``compiled`` needs by XLA's estimate: arguments, outputs, temps."""
  try:
    memory = compiled.memory_analysis()
  except NotImplementedError:
    return None
  if memory is None:
    return None
  return int(memory.argument_size_in_bytes + memory.output_size_in_bytes
             + memory.temp_size_in_bytes - memory.alias_size_in_bytes)


def peak_memory_bytes() -> int | None:
  """The devices' peak bytes in use since the process started (None where not reported)."""
  stats = [device.memory_stats() for device in jax.local_devices()]
  peaks = [s["peak_bytes_in_use"] for s in stats if s and "peak_bytes_in_use" in s]
  return max(peaks) if peaks else None


def measure_jitted(train, infer, state, train_inputs: tuple, infer_inputs: tuple,
                   batch_size: int, timing: Timing) -> dict:
  """Compile times, FLOPs per image, throughput and memory of two jitted steps.

  ``train(state, *train_inputs)`` returns ``(state, aux)`` and may donate ``state``;
  ``infer(state, *infer_inputs)`` returns predictions. Each step is lowered and compiled ahead
  of time (timed apart, and the source of the cost analysis); JAX keeps that executable, so
  the first call runs it without compiling again: a training run's first step costs
  ``lower_s + compile_s + first_call_s``.
  """
  costs = compile_costs(train, infer, state, train_inputs, infer_inputs, batch_size)

  def train_once():
    nonlocal state
    state, aux = train(state, *train_inputs)
    return state, aux

  def infer_once():
    return infer(state, *infer_inputs)

  _, first_call_s = timed(lambda: jax.block_until_ready(train_once()))
  train_rate = steps_per_second(train_once, jax.block_until_ready, timing)
  _, infer_first_call_s = timed(lambda: jax.block_until_ready(infer_once()))
  infer_rate = steps_per_second(infer_once, jax.block_until_ready, timing)
  return {
    **costs,
    "first_call_s": first_call_s,
    "infer_first_call_s": infer_first_call_s,
    "train_images_per_s": train_rate * batch_size,
    "infer_images_per_s": infer_rate * batch_size,
    "peak_memory_bytes": peak_memory_bytes(),
  }


def compile_costs(train, infer, state, train_inputs: tuple, infer_inputs: tuple,
                  batch_size: int) -> dict:
  """Lower and compile both steps of `measure_jitted` ahead of time: the times it took, FLOPs
  per image (`model_flops`), and XLA's memory estimate of one train step."""
  lowered, lower_s = timed(lambda: train.lower(state, *train_inputs))
  compiled, compile_s = timed(lowered.compile)
  infer_lowered = infer.lower(state, *infer_inputs)
  _, infer_compile_s = timed(infer_lowered.compile)
  train_flops = model_flops(train, state, *train_inputs)
  infer_flops = model_flops(infer, state, *infer_inputs)
  return {
    "lower_s": lower_s,
    "compile_s": compile_s,
    "infer_compile_s": infer_compile_s,
    "train_gflop_per_image": train_flops / batch_size / 1e9 if train_flops else None,
    "infer_gflop_per_image": infer_flops / batch_size / 1e9 if infer_flops else None,
    "train_step_bytes": step_bytes(compiled),
  }
