"""Every setting of a run in one dataclass, checked in one place (`Config.validate`).

Presets (`jaxseg.configs`) and experiment files (``--config FILE``) fill it; every field is
also a command-line flag (`jaxseg.flags`), with the help text given here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import jax.numpy as jnp

from jaxseg.data.augment import Augment
from jaxseg.data.enhance import Enhance
from jaxseg.data.masks import RUN_TARGETS, output_channels, parse_mask_colors
from jaxseg.errors import JaxsegError
from jaxseg.models.registry import DECODERS, KERNELS, MODELS, UNET_DEPTHS

COMPUTE_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def default_cache_dir() -> Path:
  """Where synthetic data, converted weights and compiled programs are kept: $JAXSEG_CACHE,
  else ~/.cache/jaxseg (read when asked, so a later JAXSEG_CACHE counts)."""
  return Path(os.environ.get("JAXSEG_CACHE") or Path.home() / ".cache" / "jaxseg")


def setting(default, help: str, *, choices: tuple | None = None, flag: bool = True):
  """A Config field with its command-line help (and choices, where it has a fixed set);
  ``flag=False`` for a record that no flag sets."""
  factory = dict(default_factory=default) if callable(default) else dict(default=default)
  return dataclasses.field(**factory, metadata={"help": help, "choices": choices, "flag": flag})


@dataclasses.dataclass
class Config:
  # Model
  backbone: str = setting("unet", "the plain paper U-Net, or the encoder of a U-Net: "
                          "vgg19, resnet50, mobilenet, efficientnetb2, densenet121")
  unet_filters: int = setting(64, "first width of the plain U-Net (the paper's: 64)")
  unet_depth: int = setting(5, "the plain U-Net's poolings: 5 (the paper's) or 4 (the classic "
                            "U-Net)", choices=UNET_DEPTHS)
  decoder: str = setting("paper", "decoder: paper (2x2 transposed convs) or smp (nearest "
                         "upsampling, segmentation_models' shape)", choices=DECODERS)
  kernels: str = setting("auto", "forms of the convolutions and BatchNorm: cpu (tuned for XLA's "
                         "CPU backend), xla (XLA's own, the same on every backend), or auto "
                         "(cpu where JAX computes on a CPU, else xla); the values are the same",
                         choices=("auto", *KERNELS))
  dropout: float = setting(0.1, "spatial dropout rate after each block's second conv")
  batchnorm_statistics: str = setting(
    "recomputed", "what evaluation's BatchNorm normalises with: statistics recomputed at the "
    "current weights on training images before each validation, or Keras's running averages",
    choices=("recomputed", "running"))
  batchnorm_momentum: float = setting(
    0.9, "momentum of BatchNorm's running averages (used with --batchnorm-statistics running; "
    "Keras's 0.99 needs hundreds of steps to settle)")
  batchnorm_images: int = setting(0, "training images the statistics are recomputed on (0: all)")
  weights: str = setting("imagenet", "encoder weights: imagenet (converted, from the cache), "
                         "none, or a converted .npz file")
  freeze_encoder: bool = setting(False, "train only the decoder; the encoder's BatchNorm stays "
                                 "in inference mode")
  # Data
  data: str = setting("synthetic", "synthetic (built in), a folder (DATA/images, DATA/masks), "
                      "or tfds:cervical_cytology (records in --tfds-dir)")
  tfds_dir: str | None = setting(None, "TFDS data folder of --data tfds:NAME")
  num_images: int = setting(419, "synthetic images to generate (the paper's data set has 419)")
  synthetic_size: int = setting(1130, "side of the synthetic images, in pixels")
  synthetic_seed: int = setting(0, "the built-in data set's seed (--seed sets the split and "
                                "training)")
  synthetic_version: int = setting(2, "the built-in set's generator: 3, 2 (whose look-alikes "
                                   "are drawn otherwise than the labelled objects), or the first, "
                                   "easier 1", choices=(1, 2, 3))
  labels: str = setting("exact", "training and validation masks: the data set's own (exact), or "
                        "made from the images by the paper's Otsu rule (otsu); test metrics are "
                        "always against the data set's masks", choices=("exact", "otsu"))
  cache_dir: str | None = setting(None, "where synthetic data and converted weights are kept "
                                  "(default: $JAXSEG_CACHE, else ~/.cache/jaxseg)")
  target: str = setting("nuclei", "nuclei (class 2) or cytoplasm (the whole cell): a binary "
                        "model of one target; or cell: one 3-class model of background, "
                        "cytoplasm and nucleus (softmax), scored on both targets",
                        choices=RUN_TARGETS)
  mask_colors: str | None = setting(None, "read the masks of a --data folder as RGB colours "
                                    "(PNG or BMP), each a class: 'R,G,B:CLASS ...', e.g. "
                                    "'0,0,0:0 255,0,0:1 0,0,255:2'; a colour not named stops, "
                                    "naming its file and pixel count")
  image_size: int = setting(224, "training and evaluation size (square); with --scale, the "
                           "side of the training crops and of the evaluation windows")
  scale: float = setting(0.0, "0: every image resized whole to --image-size (the paper's); "
                         "S > 0: images scaled by S, training on random --image-size crops, "
                         "validation and test on whole images by sliding windows, scored "
                         "against the masks at that scale")
  window_size: int = setting(0, "side of the sliding windows that evaluate a scaled run "
                             "(--scale), overlapping by half (0: --image-size); the network "
                             "is convolutional, so a window larger than the training crops "
                             "sees more context per pass")
  test_fraction: float = setting(0.2, "test share of a seeded split (the paper's 80/20), "
                                 "unless DATA has train/ and test/")
  val_fraction: float = setting(0.1, "share of the training images held out to choose the "
                                "best epoch")
  split: str = setting("stratified", "seeded split: stratified (each class of image in "
                       "proportion, where the data names classes: the synthetic set does, a "
                       "folder and its TFDS records through DATA/classes.csv) or random",
                       choices=("stratified", "random"))
  enhance: Enhance = setting(Enhance, "brightness and contrast enhancement")
  augment: Augment = setting(Augment, "augmentation on the device")
  loader: str = setting("plain", "input pipeline: plain (OpenCV on a thread pool), tf (tf.data), "
                        "or auto (tf where TensorFlow is installed); all give the same batches, "
                        "and plain starts without importing TensorFlow",
                        choices=("auto", "tf", "plain"))
  # Optimisation (the paper's: Adam, lr 0.003, batch 18, 100 epochs)
  learning_rate: float = setting(3e-3, "Adam learning rate (the peak, under a schedule)")
  lr_schedule: str = setting("constant", "learning rate over training: constant, or cosine "
                             "(linear warm-up over --warmup-epochs, then cosine decay to 0 at "
                             "the last epoch)", choices=("constant", "cosine"))
  warmup_epochs: int = setting(0, "epochs of linear warm-up of a cosine schedule")
  batch_size: int = setting(18, "global batch size (a multiple of the device count)")
  epochs: int = setting(100, "training epochs")
  checkpoint_steps: int = setting(0, "also checkpoint the run every N training steps within "
                                  "an epoch, for long epochs: a preempted or killed run then "
                                  "loses at most N steps (0: at the end of each epoch only)")
  precision: str = setting("fp32", "fp32, or bf16 compute with fp32 parameters and optimizer "
                           "state", choices=tuple(COMPUTE_DTYPES))
  seed: int = setting(0, "split, initialisation, dropout and augmentation")
  split_seed: int | None = setting(None, "seed of the train/validation/test split alone "
                                   "(default: --seed); fix it to repeat a run with other "
                                   "seeds on the same images")
  # Output
  figure_images: int = setting(3, "test images in the Figure 4 style picture")
  preset: str = setting("custom", "the preset or file these settings started from",
                        flag=False)

  def replace(self, **changes) -> Config:
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> Config:
    values = dict(values)
    values.setdefault("unet_depth", 4)  # runs written before the field had four poolings
    values.setdefault("split", "random")  # runs written before stratified splits
    values["enhance"] = Enhance(**values.get("enhance", {}))
    augment = dict(values.get("augment", {}))
    if "scale_range" in augment:
      augment["scale_range"] = tuple(augment["scale_range"])
    values["augment"] = Augment(**augment)
    return cls(**values)

  @property
  def cache_path(self) -> Path:
    return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

  @property
  def data_seed(self) -> int:
    """The split's seed."""
    return self.seed if self.split_seed is None else self.split_seed

  @property
  def window(self) -> int:
    """The side of a scaled run's evaluation windows."""
    return self.window_size or self.image_size

  @property
  def compute_dtype(self):
    return COMPUTE_DTYPES[self.precision]

  @property
  def out_channels(self) -> int:
    """The model's output channels: a binary target's one logit, or a logit per class."""
    return output_channels(self.target)

  @property
  def mask_colour_map(self) -> dict | None:
    """``mask_colors`` as {(r, g, b): class}, or None where masks hold class values."""
    return None if self.mask_colors is None else parse_mask_colors(self.mask_colors)

  def validate(self) -> Config:
    """``self``, or a `JaxsegError` naming the first setting that cannot work."""
    def check(ok: bool, name: str, why: str) -> None:
      if not ok:
        raise JaxsegError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: {why}")

    for field in dataclasses.fields(self):
      choices = field.metadata.get("choices")
      check(choices is None or getattr(self, field.name) in choices, field.name,
            f"choose from {', '.join(map(str, choices or ()))}")
    check(self.backbone in MODELS, "backbone", f"choose from {', '.join(MODELS)}")
    for name in ("unet_filters", "num_images", "batch_size", "epochs", "figure_images"):
      check(getattr(self, name) >= 1, name, "must be at least 1")
    check(self.image_size >= 16, "image_size", "must be at least 16 pixels")
    check(self.synthetic_size >= 32, "synthetic_size", "must be at least 32 pixels")
    check(math.isfinite(self.scale) and 0 <= self.scale <= 4, "scale",
          "must be 0 (resize whole images) or a factor in (0, 4]")
    check(self.window_size == 0 or self.window_size >= 16, "window_size",
          "must be 0 (--image-size) or at least 16 pixels")
    check(self.warmup_epochs < self.epochs or self.lr_schedule == "constant", "warmup_epochs",
          "must be fewer than --epochs")
    for name in ("seed", "synthetic_seed", "batchnorm_images", "checkpoint_steps",
                 "warmup_epochs"):
      check(getattr(self, name) >= 0, name, "must be 0 or more")
    check(self.split_seed is None or self.split_seed >= 0, "split_seed", "must be 0 or more")
    check(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
          "must be a positive number")
    check(0 <= self.dropout < 1, "dropout", "must lie in [0, 1)")
    check(0 <= self.batchnorm_momentum < 1, "batchnorm_momentum", "must lie in [0, 1)")
    for name in ("test_fraction", "val_fraction"):
      check(0 < getattr(self, name) < 1, name, "must lie between 0 and 1")
    check(self.weights in ("imagenet", "none") or self.weights.endswith(".npz"), "weights",
          "choose imagenet, none, or a converted .npz file")
    if self.mask_colors is not None:
      try:
        self.mask_colour_map
      except ValueError as error:
        raise JaxsegError(f"--mask-colors {self.mask_colors!r}: {error}") from None
      check(self.data != "synthetic" and not self.data.startswith("tfds:"), "mask_colors",
            f"for a folder of colour masks; --data {self.data} holds class masks")
    return self
