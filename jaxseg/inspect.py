"""The anatomy and cost of the models: ``python -m jaxseg.inspect --backbone densenet121|all``.

One model: a table by block (the encoder's five stages, the centre block where there is one,
the decoder blocks, the 1x1 head) with each block's output shape, variables, forward GFLOPs
and activation memory, per image. An encoder stage is what lies between two of the feature
maps it hands the decoder: its cost is the cost up to its map less the cost up to the one
before.

``all``: one row per model, its steps built as `jaxseg.bench` builds them: variables, forward
and train-step GFLOPs per image, XLA's memory estimate of one train step at ``--batch-size``,
and the train step's compile time (lower + compile). ``--png FILE`` draws the table.

FLOPs are XLA's cost analysis of the models in their portable kernels, the same on every
backend (`jaxseg.bench.steps.portable_flops`), the bench's figures. Activation memory adds up
every array the block's forward pass computes, before XLA fuses elementwise operations: what
a backward pass could keep at most. Variables include BatchNorm statistics. The block table builds the model abstractly (shapes only).
"""

from __future__ import annotations

if __name__ == "__main__":  # a command: the runner sets up the process before the imports below
  from jaxseg.cli import run_command

  run_command(__spec__.name)

import argparse
import contextlib
import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend.core import Literal

from jaxseg import plots
from jaxseg.bench import steps as bench
from jaxseg.bench.timing import compile_costs, xla_flops
from jaxseg.cli import ArgumentParser, command
from jaxseg.config import COMPUTE_DTYPES, Config
from jaxseg.data.masks import RUN_TARGETS
from jaxseg.errors import JaxsegError, refuse_existing
from jaxseg.models import DECODERS, MODELS, build_model


@dataclasses.dataclass(frozen=True)
class Block:
  name: str
  output_shape: tuple[int, ...]  # one image's: height, width, channels
  variables: int
  gflops: float                  # forward, one image
  activation_bytes: int          # forward, one image


def abstract_network(config: Config) -> nnx.Module:
  """The eval-mode network of ``config`` in its portable kernels, shapes for values: no
  initialiser runs."""
  network = nnx.eval_shape(lambda: build_model(config))
  network.eval()
  return network


def variable_count(module: nnx.Module, kind=...) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, kind)))


def block_table(config: Config) -> list[Block]:
  """The blocks of ``config``'s network, in the order they run, for one image."""
  network = abstract_network(config)
  images = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.float32)
  blocks, before = [], _Cost(0.0, 0, 0)
  strides = network.encoder.feature_strides
  for index, stride in enumerate(strides):  # each stage: the encoder up to its map, less
    cost = _cost(network.encoder, [images], lambda maps, index=index: maps[index])
    blocks.append(Block(f"encoder /{stride}", cost.output_shape[1:],
                        cost.variables - before.variables, (cost.flops - before.flops) / 1e9,
                        cost.activation_bytes - before.activation_bytes))
    before = cost
  for name, (module, inputs) in _decoder_calls(network, images).items():
    cost = _cost(module, inputs)
    blocks.append(Block(name, cost.output_shape[1:], cost.variables, cost.flops / 1e9,
                        cost.activation_bytes))
  return blocks


def network_cost(config: Config) -> tuple[int, float]:
  """(variables, forward GFLOPs of one image) of ``config``'s eval-mode network."""
  network = abstract_network(config)
  images = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.float32)
  return variable_count(network), _cost(network, [images]).flops / 1e9


@dataclasses.dataclass(frozen=True)
class _Cost:
  flops: float
  variables: int         # of the variables the computation reads
  activation_bytes: int
  output_shape: tuple[int, ...] = ()


def _cost(module: nnx.Module, inputs: list, select=lambda output: output) -> _Cost:
  """FLOPs, variables read and activation bytes of ``select(module(*inputs))``."""
  graph, state = nnx.split(module)

  def forward(state, *inputs):
    return select(nnx.merge(graph, state)(*inputs))

  flops = xla_flops(jax.jit(forward).lower(state, *inputs)) or 0.0
  closed = jax.make_jaxpr(forward)(state, *inputs)
  live, activation_bytes = _live_values(closed.jaxpr)
  state_vars = closed.jaxpr.invars[:len(jax.tree.leaves(state))]
  variables = sum(math.prod(v.aval.shape) for v in state_vars if v in live)
  output = closed.out_avals[0]
  return _Cost(flops, variables, activation_bytes, tuple(output.shape))


def _live_values(jaxpr) -> tuple[set, int]:
  """The variables the outputs depend on, and the bytes of the equation outputs they need
  (an equation that computes no output counts as nothing: XLA drops it)."""
  live = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
  total = 0
  for equation in reversed(jaxpr.eqns):
    if any(v in live for v in equation.outvars):
      total += sum(math.prod(v.aval.shape) * v.aval.dtype.itemsize for v in equation.outvars)
      live.update(v for v in equation.invars if not isinstance(v, Literal))
  return live, total


def _decoder_side(network: nnx.Module):
  """(name, module) of the blocks after the encoder, in the order they run."""
  if network.center is not None:
    yield "centre", network.center
  for index, block in enumerate(network.blocks):
    yield f"decoder {index + 1}", block
  yield "head", network.head


def _decoder_calls(network: nnx.Module, images) -> dict[str, tuple[nnx.Module, list]]:
  """Per block after the encoder, the module and the shapes of its inputs in a forward pass."""
  graph, state = nnx.split(network)
  inputs = {}

  def forward(state, images):
    model = nnx.merge(graph, state)  # new module objects: find the blocks among them
    with _recording_inputs(dict(_decoder_side(model)), inputs):
      return model(images)

  jax.eval_shape(forward, state, images)
  return {name: (module, inputs[name]) for name, module in _decoder_side(network)}


@contextlib.contextmanager
def _recording_inputs(modules: dict[str, nnx.Module], inputs: dict):
  """While inside, a call of one of ``modules`` records its positional inputs' shapes in
  ``inputs[name]``; other modules of the same classes run as ever."""
  names = {id(module): name for name, module in modules.items()}
  originals = {cls: cls.__call__ for cls in {type(module) for module in modules.values()}}

  def recording(original):
    def call(self, *args, **kwargs):
      if id(self) in names:
        inputs[names[id(self)]] = [
          None if a is None else jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
      return original(self, *args, **kwargs)
    return call

  for cls, original in originals.items():
    cls.__call__ = recording(original)
  try:
    yield
  finally:
    for cls, original in originals.items():
      cls.__call__ = original


def model_row(config: Config) -> dict:
  """One model side by side with others: variables, and its train and probability steps
  compiled as `jaxseg.bench` compiles them (``config.batch_size`` images a step)."""
  network = abstract_network(config)
  images, masks = bench.random_batch(config.batch_size, config.image_size, target=config.target)
  costs = compile_costs(*bench.jaxseg_steps(config, images, masks), config.batch_size,
                        bench.portable_flops(config, images, masks))
  return {
    "backbone": config.backbone,
    "variables": variable_count(network),
    "encoder_variables": variable_count(network.encoder),
    "trainable": variable_count(network, nnx.Param),
    "forward_gflop_per_image": costs["infer_gflop_per_image"],
    "train_gflop_per_image": costs["train_gflop_per_image"],
    "train_step_bytes": costs["train_step_bytes"],
    "compile_s": costs["lower_s"] + costs["compile_s"],
  }


def _mib(value) -> str:
  return "-" if value is None else f"{value / 2**20:,.1f}"


def _gflop(value) -> str:
  return "-" if value is None else f"{value:,.3f}"


def print_blocks(config: Config, blocks: list[Block]) -> None:
  print(f"{config.backbone} U-Net ({config.decoder} decoder), {config.image_size}x"
        f"{config.image_size} input, target {config.target} ({config.out_channels}-channel "
        f"head), per image")
  print(f"{'block':14s}{'output':>18s}{'variables':>14s}{'GFLOPs':>10s}{'activ. MiB':>12s}")
  for block in blocks:
    shape = "x".join(str(side) for side in block.output_shape)
    print(f"{block.name:14s}{shape:>18s}{block.variables:>14,d}{_gflop(block.gflops):>10s}"
          f"{_mib(block.activation_bytes):>12s}")
  print(f"{'total':14s}{'':>18s}{sum(b.variables for b in blocks):>14,d}"
        f"{_gflop(sum(b.gflops for b in blocks)):>10s}"
        f"{_mib(sum(b.activation_bytes for b in blocks)):>12s}")


ROW_COLUMNS = (  # heading, key, format
  ("variables", "variables", "{:,d}".format),
  ("encoder", "encoder_variables", "{:,d}".format),
  ("fwd GFLOP/img", "forward_gflop_per_image", _gflop),
  ("train GFLOP/img", "train_gflop_per_image", _gflop),
  ("train step MiB", "train_step_bytes", _mib),
  ("compile s", "compile_s", "{:.1f}".format),
)


def print_header(config: Config) -> None:
  print(f"{config.image_size}x{config.image_size} input, {config.decoder} decoder, plain U-Net "
        f"from {config.unet_filters} filters, target {config.target} ({config.out_channels}-"
        f"channel head), {config.precision}; train step at batch {config.batch_size} (memory: "
        f"XLA's estimate)")
  print(f"{'backbone':16s}" + "".join(f"{heading:>17s}" for heading, _, _ in ROW_COLUMNS))


def print_row(row: dict) -> None:
  print(f"{row['backbone']:16s}" + "".join(f"{fmt(row[key]):>17s}" for _, key, fmt in
                                           ROW_COLUMNS), flush=True)


def draw_rows(rows: list[dict], path: Path, title: str) -> None:
  """Horizontal bars per model, one panel per column of the table."""
  panels = (("variables (millions)", "variables", 1e-6),
            ("forward GFLOP / image", "forward_gflop_per_image", 1),
            ("train-step GFLOP / image", "train_gflop_per_image", 1),
            ("train step memory (GiB)", "train_step_bytes", 2**-30),
            ("compile time (s)", "compile_s", 1))
  fig = plots.new_figure(figsize=(3.2 * len(panels), 0.5 * len(rows) + 1.4))
  axes = fig.subplots(1, len(panels), sharey=True)
  names = [row["backbone"] for row in rows]
  for axis, (label, key, scale) in zip(axes, panels):
    axis.barh(names, [(row[key] or 0) * scale for row in rows], color="tab:blue")
    axis.set_title(label, fontsize=9)
  axes[0].invert_yaxis()  # the first model on top, as in the table
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def parse_args(argv=None) -> argparse.Namespace:
  parser = ArgumentParser(prog="python -m jaxseg.inspect", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--backbone", choices=("all", *MODELS), default="all",
                      help="one model's blocks, or all models side by side")
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--decoder", choices=DECODERS, default="paper")
  parser.add_argument("--unet-filters", type=int, default=64,
                      help="plain U-Net's first width (the paper's: 64)")
  parser.add_argument("--batch-size", type=int, default=18,
                      help="train step batch of the side-by-side table (the paper's: 18)")
  parser.add_argument("--precision", choices=tuple(COMPUTE_DTYPES), default="fp32")
  parser.add_argument("--target", choices=RUN_TARGETS, default="nuclei",
                      help="cell: the 3-class model, whose head has a channel per class")
  parser.add_argument("--png", type=Path, help="draw the side-by-side table here (a new file)")
  return parser.parse_args(argv)


@command(compilation_cache=True)
def main(argv=None) -> list:
  args = parse_args(argv)
  if args.image_size < 32 or args.batch_size < 1:
    raise JaxsegError("--image-size must be at least 32 and --batch-size at least 1")
  refuse_existing("--png", args.png, "inspect")
  if args.png is not None and args.backbone != "all":
    raise JaxsegError("--png draws the side-by-side table: use it with --backbone all")
  config = Config(unet_filters=args.unet_filters, decoder=args.decoder,
                  image_size=args.image_size, batch_size=args.batch_size,
                  precision=args.precision, target=args.target, augment=bench.NO_AUGMENT)
  if args.backbone != "all":
    config = config.replace(backbone=args.backbone)
    blocks = block_table(config)
    print_blocks(config, blocks)
    return blocks
  print_header(config)
  rows = []
  for backbone in MODELS:
    rows.append(model_row(config.replace(backbone=backbone)))
    print_row(rows[-1])
  if args.png is not None:
    draw_rows(rows, args.png, f"jaxseg U-Nets, {args.image_size}x{args.image_size}, train step "
                              f"at batch {args.batch_size}, {args.precision}")
    print(f"jaxseg.inspect: drew {args.png}")
  return rows

