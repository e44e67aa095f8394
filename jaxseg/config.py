"""Every setting of a run in one dataclass; presets in `jaxseg.configs` fill it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax

from jaxseg.data.augment import Augment
from jaxseg.data.enhance import Enhance


def default_cache_dir() -> Path:
  return Path(os.environ.get("JAXSEG_CACHE", Path.home() / ".cache" / "jaxseg"))


def enable_compilation_cache() -> None:
  """Keep XLA's compiled programs on disk (JAX_COMPILATION_CACHE_DIR, else our cache).

  Building a model compiles one small program per initialiser shape and training compiles
  the step: a minute on a CPU that a second run, evaluate or predict then skips.
  """
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


@dataclasses.dataclass
class Config:
  # Model
  backbone: str = "unet"            # unet or an encoder: vgg19, resnet50, mobilenet, ...
  unet_filters: int = 64            # first width of the plain U-Net (the paper's: 64)
  decoder: str = "paper"            # paper (transposed convs) or smp (nearest upsampling)
  dropout: float = 0.1              # spatial dropout after each block's second conv
  # What evaluation normalises with: statistics recomputed over training images before each
  # validation ("recomputed"), or the running averages as Keras keeps them ("running").
  batchnorm_statistics: str = "recomputed"
  # The running averages' momentum (evaluation uses them only with "running"): Keras's 0.99
  # needs hundreds of steps to settle; 0.9 settles in tens, all a small data set gives.
  batchnorm_momentum: float = 0.9
  batchnorm_images: int = 0         # training images the statistics are recomputed on (0: all)
  weights: str = "imagenet"         # encoder weights: imagenet, none, or a converted .npz
  freeze_encoder: bool = False
  # Data
  data: str = "synthetic"           # synthetic, a folder in DESIGN.md's format, or tfds:NAME
  tfds_dir: str | None = None       # TFDS data folder of tfds:NAME (None: TFDS's default)
  num_images: int = 419             # synthetic images (the paper's data set has 419)
  synthetic_size: int = 1130
  synthetic_seed: int = 0           # the built-in data set; --seed sets the split and training
  synthetic_version: int = 2        # the built-in set's generator: 2, or the first, easier 1
  # Training and validation masks: the data set's own ("exact"), or made from the images by
  # the paper's Otsu rule ("otsu"); test metrics are always against the data set's masks.
  labels: str = "exact"
  cache_dir: str = str(default_cache_dir())
  target: str = "nuclei"            # nuclei or cytoplasm
  image_size: int = 224
  test_fraction: float = 0.2        # the paper's 80/20 split, unless DATA has train/ and test/
  val_fraction: float = 0.1         # of the training images, to choose the best epoch
  enhance: Enhance = dataclasses.field(default_factory=Enhance)
  augment: Augment = dataclasses.field(default_factory=Augment)
  loader: str = "auto"              # auto (tf.data where TensorFlow is installed), tf, plain
  # Optimisation (the paper's: Adam, lr 0.003, batch 18, 100 epochs)
  learning_rate: float = 3e-3
  batch_size: int = 18
  epochs: int = 100
  precision: str = "fp32"           # fp32, or bf16 compute with fp32 parameters
  seed: int = 0
  # Output
  figure_images: int = 3            # test images in the Figure 4 style picture

  def replace(self, **changes) -> Config:
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> Config:
    values = dict(values)
    values["enhance"] = Enhance(**values.get("enhance", {}))
    augment = dict(values.get("augment", {}))
    if "scale_range" in augment:
      augment["scale_range"] = tuple(augment["scale_range"])
    values["augment"] = Augment(**augment)
    return cls(**values)
