"""Measuring steps: steady-state throughput, compile times, XLA's FLOPs and device memory.

Shared by `jaxseg.bench` and its peers (`jaxseg.bench.peers`), so that every program is timed the
same way: ``warmup`` steps, then the median of ``repeats`` runs of ``steps`` steps, each run
ended by waiting for its last result; the programs compared take turns, run by run.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax


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


def run_seconds(step: Callable[[], Any], sync: Callable[[Any], Any], steps: int) -> float:
  """Seconds that ``steps`` calls of ``step`` take, the last one's result waited for."""
  start = time.perf_counter()
  for _ in range(steps):
    result = step()
  sync(result)
  return time.perf_counter() - start


def steps_per_second(step: Callable[[], Any], sync: Callable[[Any], Any], timing: Timing) -> float:
  """Steady-state rate of ``step``; ``sync`` waits until a step's result is computed."""
  for _ in range(timing.warmup):
    sync(step())
  seconds = [run_seconds(step, sync, timing.steps) for _ in range(timing.repeats)]
  return timing.steps / statistics.median(seconds)


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


PHASES = ("train", "infer")
FIRST_CALL = {"train": "first_call_s", "infer": "infer_first_call_s"}


@dataclasses.dataclass
class Program:
  """One library's train and inference steps on one batch, ready to time.

  ``train()`` and ``infer()`` each run one step on the batch (the train step updating the
  library's own state); ``sync(result)`` waits until that result is computed; ``enter(phase)``
  readies the model for ``"train"`` or ``"infer"`` (torch's ``train()`` and ``eval()``);
  ``close()`` lets go of what the program holds on the device. ``fields`` gathers what was
  measured: setting up (compile times, FLOPs), the first calls, the timed runs.
  """
  train: Callable[[], Any]
  infer: Callable[[], Any]
  sync: Callable[[Any], Any]
  batch_size: int
  fields: dict = dataclasses.field(default_factory=dict)
  enter: Callable[[str], None] = lambda phase: None
  close: Callable[[], None] = lambda: None


def first_calls(program: Program) -> Program:
  """Time each step's first call into ``fields`` (``first_call_s``, ``infer_first_call_s``):
  for a JAX program the first run of an executable compiled ahead, for eager torch the first
  allocations."""
  for phase in PHASES:
    program.enter(phase)
    step = getattr(program, phase)
    start = time.perf_counter()
    program.sync(step())
    program.fields[FIRST_CALL[phase]] = time.perf_counter() - start
  return program


def turn_order(names: list[str], turn: int) -> list[str]:
  """``names`` rotated by ``turn``: the order in which programs compared take their turn-th
  turn, so that none always runs first or last."""
  shift = turn % len(names)
  return names[shift:] + names[:shift]


def measure_together(programs: dict[str, Program], timing: Timing) -> None:
  """Images/s of every program's train step, then of its inference step, into its ``fields``.

  After ``timing.warmup`` steps each, the programs take turns: in each of ``timing.repeats``
  rounds every program runs ``timing.steps`` steps, in an order that rotates from round to
  round. A host that slows or speeds up during the measurement so changes every program's
  runs alike, and `round_ratio` compares two programs round by round. Each program's rate is
  that of its median run; ``{phase}_round_s`` keeps every run's seconds.
  """
  names = list(programs)
  for phase in PHASES:
    for program in programs.values():
      program.enter(phase)
      for _ in range(timing.warmup):
        program.sync(getattr(program, phase)())
    rounds = {name: [] for name in names}
    for turn in range(timing.repeats):
      for name in turn_order(names, turn):
        program = programs[name]
        rounds[name].append(run_seconds(getattr(program, phase), program.sync, timing.steps))
    for name, program in programs.items():
      program.fields[f"{phase}_round_s"] = rounds[name]
      program.fields[f"{phase}_images_per_s"] = (
        timing.steps * program.batch_size / statistics.median(rounds[name]))


def round_ratio(ours: dict, theirs: dict, phase: str) -> float:
  """Our images/s over theirs in ``phase``: the median of the ratios of runs timed in the
  same round of `measure_together` (both programs on the same batch size)."""
  return statistics.median(t / o for o, t in zip(ours[f"{phase}_round_s"],
                                                  theirs[f"{phase}_round_s"]))


def jitted_program(train, infer, state, train_inputs: tuple, infer_inputs: tuple,
                   batch_size: int, flops: tuple[float | None, float | None] | None = None
                   ) -> Program:
  """Two jitted steps as a `Program`, compiled ahead (`compile_costs`) and called once each.

  ``train(state, *train_inputs)`` returns ``(state, aux)`` and may donate ``state``;
  ``infer(state, *infer_inputs)`` returns predictions. JAX keeps the executables compiled
  ahead, so the first call runs one without compiling again: a training run's first step
  costs ``lower_s + compile_s + first_call_s``.
  """
  costs = compile_costs(train, infer, state, train_inputs, infer_inputs, batch_size, flops)

  def train_once():
    nonlocal state
    state, aux = train(state, *train_inputs)
    return state, aux

  def infer_once():
    return infer(state, *infer_inputs)

  program = Program(train_once, infer_once, jax.block_until_ready, batch_size, costs)
  return first_calls(program)


def compile_costs(train, infer, state, train_inputs: tuple, infer_inputs: tuple,
                  batch_size: int, flops: tuple[float | None, float | None] | None = None
                  ) -> dict:
  """Lower and compile both steps of `jitted_program` ahead of time: the times it took, FLOPs
  per image, and XLA's memory estimate of one train step. FLOPs are XLA's cost analysis of the
  lowered steps, or ``flops`` (train, inference) where the steps' own count would be wrong (a
  loop's body is counted once: `jaxseg.bench.steps.portable_flops`)."""
  lowered, lower_s = timed(lambda: train.lower(state, *train_inputs))
  compiled, compile_s = timed(lowered.compile)
  infer_lowered = infer.lower(state, *infer_inputs)
  _, infer_compile_s = timed(infer_lowered.compile)
  train_flops, infer_flops = flops or (xla_flops(lowered), xla_flops(infer_lowered))
  return {
    "lower_s": lower_s,
    "compile_s": compile_s,
    "infer_compile_s": infer_compile_s,
    "train_gflop_per_image": train_flops / batch_size / 1e9 if train_flops else None,
    "infer_gflop_per_image": infer_flops / batch_size / 1e9 if infer_flops else None,
    "train_step_bytes": step_bytes(compiled),
  }
