"""jaxseg's EfficientNetB2 U-Net with its own skip taps and with smp's, beside smp's, taking
turns in one process (docs/cpu-performance.md, "EfficientNetB2 beside smp"):

  python scripts/efficientnet_taps_ab.py --rounds 7 --json out.json

jaxseg follows Keras's segmentation_models: its skips are the expand activations of blocks
2a, 3a, 4a and 6a and the top conv's (96, 144, 288, 720, 1408 channels). smp's
``efficientnet-b2`` taps the stem and the ends of stages 2, 3, 5 and 7 (32, 24, 48, 120, 352)
and has no top conv: a smaller network, by a third in FLOPs. The second arm is jaxseg's
port with smp's taps, so that the ratio to smp compares like with like. smp decoder, batch 8,
128x128, fp32, random weights; needs PyTorch and segmentation-models-pytorch.
"""

import json
import os
from pathlib import Path
from unittest import mock

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.bench.steps import NO_AUGMENT, jaxseg_program, random_batch
from jaxseg.bench.timing import Timing, measure_together, round_ratio
from jaxseg.config import Config, enable_compilation_cache
from jaxseg.errors import ArgumentParser, JaxsegError, cli, refuse_existing
from jaxseg.models import layers
from jaxseg.models.backbones import ENCODERS
from jaxseg.models.backbones.efficientnet import EfficientNetB2, correct_pad

FIELDS = ("train_images_per_s", "infer_images_per_s", "train_gflop_per_image",
          "infer_gflop_per_image", "train_round_s", "infer_round_s")


class EfficientNetB2StageTaps(EfficientNetB2):
  """The port with smp's taps: the stem's output and the last block of stages 2, 3, 5 and 7;
  without the top conv, which no tap then reads."""

  feature_channels = (32, 24, 48, 120, 352)
  tapped_stages = "2357"

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    del self.top_conv, self.top_bn

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
    x = self.normalization(jnp.asarray(x, jnp.float32) * (1.0 / 255.0))
    x = x * self.input_scale[...]
    x = layers.zero_pad(x, correct_pad(x, 3))
    features = [nnx.swish(self.stem_bn(self.stem_conv(x)))]
    x = features[0]
    stages = [block.name[len("block")] for block in self.blocks]  # "block3b" -> "3"
    for block, stage, next_stage in zip(self.blocks, stages, [*stages[1:], None]):
      x, _ = block(x, rngs=rngs)
      if stage != next_stage and stage in self.tapped_stages:
        features.append(x)
    return features


@cli
def main(argv=None) -> None:
  parser = ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--json", type=Path, required=True)
  args = parser.parse_args(argv)
  refuse_existing("--json", args.json, "efficientnet_taps_ab.py")
  if args.rounds < 1:
    raise JaxsegError(f"--rounds {args.rounds}: must be at least 1")
  try:
    from jaxseg.bench.peers import smp_unet
  except ImportError as error:
    raise JaxsegError(f"the smp arm needs torch and segmentation-models-pytorch: {error}") from None
  enable_compilation_cache()
  config = Config(backbone="efficientnetb2", decoder="smp", image_size=128, batch_size=8,
                  augment=NO_AUGMENT, weights="none")
  images, masks = random_batch(8, 128)
  programs = {"jaxseg_keras_taps": jaxseg_program(config, images, masks)}
  with mock.patch.dict(ENCODERS, efficientnetb2=EfficientNetB2StageTaps):
    programs["jaxseg_smp_taps"] = jaxseg_program(config, images, masks)
  programs["smp"] = smp_unet.program("efficientnetb2", images, masks, precision="fp32")
  measure_together(programs, Timing(steps=3, repeats=args.rounds, warmup=2))
  result = {"jax": jax.__version__, "versions": smp_unet.versions(),
            "load_average": os.getloadavg()[0], "arms": {}, "ratios_to_smp": {}}
  for name, program in programs.items():
    result["arms"][name] = {field: program.fields.get(field) for field in FIELDS}
    print(f"{name}: train {program.fields['train_images_per_s']:.2f} img/s "
          f"({program.fields['train_gflop_per_image']:.2f} GFLOP/image), infer "
          f"{program.fields['infer_images_per_s']:.2f} img/s "
          f"({program.fields['infer_gflop_per_image']:.2f} GFLOP/image)")
  for name in ("jaxseg_keras_taps", "jaxseg_smp_taps"):
    ratios = {phase: round_ratio(programs[name].fields, programs["smp"].fields, phase)
              for phase in ("train", "infer")}
    result["ratios_to_smp"][name] = ratios
    print(f"{name} / smp: train {ratios['train']:.3f}, infer {ratios['infer']:.3f}")
  args.json.parent.mkdir(parents=True, exist_ok=True)
  with open(args.json, "x") as file:
    json.dump(result, file, indent=2)


if __name__ == "__main__":
  main()
