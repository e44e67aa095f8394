"""The PyTorch peer: segmentation_models_pytorch's ``Unet`` on the same encoder, eager mode.

Set up as its users train it: random initialisation, one output class, bf16
autocast for ``bf16`` (fp32 otherwise), channels_last, ``cudnn.benchmark``, Adam and smp's
binary Jaccard loss. Runs on the GPU where torch sees one, else on the CPU. FLOPs are those
torch's FlopCounterMode counts (matmuls and convolutions) on one forward, and on one forward
and backward for training; XLA's count for jaxseg also includes elementwise work.
``time_epochs`` trains it for whole epochs, as `jaxseg.bench.epoch` and `jaxseg.bench.peers.smp_run`
time them; ``profile_step`` measures the time its train step spends in convolutions, as
`jaxseg.bench.profile` does jaxseg's. Importing it imports no JAX (`smp_run` runs where JAX is
not installed): `program` imports jaxseg's timing where it is called.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from jaxseg.metrics import confusion_counts, scores

# smp's encoder of each jaxseg backbone; the plain U-Net has none.
ENCODERS = {
  "vgg19": "vgg19",  # without BatchNorm, as Keras's
  "resnet50": "resnet50",
  "mobilenet": "tu-mobilenetv1_100",  # timm's MobileNet v1
  "efficientnetb2": "efficientnet-b2",
  "densenet121": "densenet121",
}

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def supports(backbone: str) -> bool:
  return backbone in ENCODERS


def versions() -> dict:
  device = _device()
  kind = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
  return {"torch": torch.__version__, "segmentation_models_pytorch": smp.__version__,
          "timm": timm.__version__, "device": kind}


def _device() -> torch.device:
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
  """smp's Unet on ``backbone``, its Adam and binary Jaccard loss, and one train step."""

  def __init__(self, backbone: str, *, learning_rate: float, precision: str):
    self.device = _device()
    torch.backends.cudnn.benchmark = True
    model = smp.Unet(ENCODERS[backbone], encoder_weights=None, classes=1)
    self.model = model.to(self.device, memory_format=torch.channels_last)
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
    self.loss_fn = smp.losses.JaccardLoss(mode="binary")
    self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                   enabled=precision == "bf16")
    self.mean = torch.tensor(IMAGENET_MEAN, device=self.device)[:, None, None]
    self.std = torch.tensor(IMAGENET_STD, device=self.device)[:, None, None]

  def inputs(self, images: torch.Tensor, masks: torch.Tensor):
    """uint8 NHWC images and 0/1 masks on the device, as smp's users feed them: images float
    NCHW (channels_last) normalised by ImageNet's mean and deviation, masks (N, 1, H, W)."""
    x = images.to(self.device).permute(0, 3, 1, 2).float().div_(255)
    x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
    return x, masks.to(self.device)[:, None].float()

  def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    self.optimizer.zero_grad(set_to_none=True)
    with self.autocast:
      loss = self.loss_fn(self.model(x), y)
    loss.backward()
    self.optimizer.step()
    return loss

  def sync(self, _=None) -> None:
    """Wait for the device; CPU ops have finished when they return."""
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)


def program(backbone: str, images: np.ndarray, masks: np.ndarray, *, precision: str):
  """smp's Unet on ``images`` (uint8 NHWC) and ``masks``: its train and inference steps, each
  called once (`first_calls`), with the FLOPs of each and, on a GPU, torch's peak memory, as a
  `jaxseg.bench.timing.Program`."""
  from jaxseg.bench.timing import Program, first_calls

  trainer = Trainer(backbone, learning_rate=3e-3, precision=precision)
  x, y = trainer.inputs(torch.from_numpy(images), torch.from_numpy(masks))
  if trainer.device.type == "cuda":
    torch.cuda.reset_peak_memory_stats(trainer.device)

  def train_once():
    return trainer.train_step(x, y)

  def infer_once():
    with torch.inference_mode(), trainer.autocast:
      return torch.sigmoid(trainer.model(x))

  def enter(phase: str) -> None:
    trainer.model.train(phase == "train")

  def close() -> None:
    trainer.model = trainer.optimizer = None
    if trainer.device.type == "cuda":
      torch.cuda.empty_cache()  # hand the memory back for JAX's next configuration

  batch_size = len(images)
  fields = {"encoder": ENCODERS[backbone], "compile_s": None}  # eager: nothing compiled ahead
  peer = first_calls(Program(train_once, infer_once, trainer.sync, batch_size, fields, enter,
                             close))
  for phase, step in (("train", train_once), ("infer", infer_once)):
    enter(phase)
    fields[f"{phase}_gflop_per_image"] = _counted_flops(step) / batch_size / 1e9
  fields["peak_memory_bytes"] = (torch.cuda.max_memory_allocated(trainer.device)
                                 if trainer.device.type == "cuda" else None)
  return peer


# Where torch spends a convolution's time: the forward op (its oneDNN kernel inside) and the
# backward op of the input and kernel gradients.
CONVOLUTION_OPS = ("aten::convolution", "aten::convolution_backward")


def profile_step(backbone: str, images: np.ndarray, masks: np.ndarray, *, steps: int,
                 warmup: int) -> dict:
  """smp's fp32 train step on ``images`` under torch.profiler: its wall time and the time spent
  in convolutions, forward and backward, each per step (`jaxseg.bench.profile`'s peer)."""
  trainer = Trainer(backbone, learning_rate=3e-3, precision="fp32")
  x, y = trainer.inputs(torch.from_numpy(images), torch.from_numpy(masks))
  trainer.model.train()
  for _ in range(warmup + 1):
    trainer.sync(trainer.train_step(x, y))
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
    start = time.perf_counter()
    for _ in range(steps):
      trainer.sync(trainer.train_step(x, y))
    wall = time.perf_counter() - start
  totals = {event.key: event.cpu_time_total / 1e3 / steps  # microseconds, all steps
            for event in profiler.key_averages() if event.key in CONVOLUTION_OPS}
  return {"encoder": ENCODERS[backbone], "step_ms": 1e3 * wall / steps,
          "images_per_s": len(images) * steps / wall,
          "convolution_ms": sum(totals.values()), "convolution_ms_by_op": totals}


def _counted_flops(step) -> int:
  counter = FlopCounterMode(display=False)
  with counter:
    step()
  return counter.get_total_flops()


def time_epochs(backbone: str, train: tuple[np.ndarray, np.ndarray],
                val: tuple[np.ndarray, np.ndarray], orders: list[np.ndarray], *, batch_size: int,
                learning_rate: float, precision: str, flip_probs: tuple[float, float], seed: int,
                folder: Path, statistics: list[np.ndarray] | None = None,
                trainer: Trainer | None = None) -> Iterator[dict]:
  """Train smp's Unet for one epoch per entry of ``orders`` (the training images' indices in
  batch order, whole batches), yielding one record an epoch, as its users write the loop,
  timing each phase: the train steps
  (random flips of each image by ``flip_probs``, horizontal and vertical), then ``eval()`` and
  ``no_grad`` over the validation images for their pooled Dice, then ``torch.save`` of the model
  and optimizer state dicts into ``folder``: latest.pt, and best.pt when the Dice improved.
  Images are uint8 NHWC, masks 0/1, as `jaxseg.data.pipeline.Loader` holds them.

  With ``statistics`` (the training images' indices of each batch), BatchNorm's statistics
  are recomputed over those batches after the train steps ("precise BatchNorm", as jaxseg's
  ``--batchnorm-statistics recomputed`` does), timed as ``statistics_s``. ``trainer``: one
  already built (a whole run times building it apart)."""
  trainer = trainer or Trainer(backbone, learning_rate=learning_rate, precision=precision)
  train_images, train_masks = map(torch.from_numpy, train)
  val_images, val_masks = map(torch.from_numpy, val)
  generator = torch.Generator().manual_seed(seed)
  best_dice = -1.0
  for order in orders:
    start = time.perf_counter()
    trainer.model.train()
    losses = []
    for chosen in torch.from_numpy(order).reshape(-1, batch_size):
      images, masks = _flipped(train_images[chosen], train_masks[chosen], flip_probs, generator)
      losses.append(trainer.train_step(*trainer.inputs(images, masks)).detach())
    train_loss = torch.stack(losses).mean().item()  # waits for the last step
    trained = time.perf_counter()
    if statistics is not None:
      recompute_statistics(trainer, train_images, train_masks, statistics)
    recomputed = time.perf_counter()
    dice = predicted_scores(trainer, val_images, val_masks, batch_size)["dice"]
    validated = time.perf_counter()
    improved, best_dice = dice > best_dice, max(best_dice, dice)
    state = {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict()}
    if improved:
      torch.save(state, folder / "best.pt")
    torch.save(state, folder / "latest.pt")
    end = time.perf_counter()
    yield {"train_s": trained - start,
           "statistics_s": None if statistics is None else recomputed - trained,
           "validation_s": validated - recomputed, "checkpoint_s": end - validated,
           "epoch_s": end - start, "saves": 1 + improved, "train_loss": train_loss,
           "val_dice": dice}


def recompute_statistics(trainer: Trainer, images: torch.Tensor, masks: torch.Tensor,
                          batches: list[np.ndarray]) -> None:
  """Each BatchNorm's running statistics replaced by the plain average over ``batches`` of
  their batch statistics (momentum None), in training mode without gradients."""
  norms = [module for module in trainer.model.modules()
           if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
  momenta = [norm.momentum for norm in norms]
  for norm in norms:
    norm.reset_running_stats()
    norm.momentum = None
  trainer.model.train()
  with torch.no_grad(), trainer.autocast:
    for chosen in batches:
      trainer.model(trainer.inputs(images[chosen], masks[chosen])[0])
  for norm, momentum in zip(norms, momenta):
    norm.momentum = momentum


def _flipped(images: torch.Tensor, masks: torch.Tensor, probs: tuple[float, float],
             generator: torch.Generator):
  """Each image and its mask flipped left-right and up-down, each with its probability."""
  for axis, prob in zip((2, 1), probs):  # NHWC: columns, then rows
    if prob > 0:
      chosen = torch.rand(len(images), generator=generator) < prob
      images = torch.where(chosen[:, None, None, None], images.flip(axis), images)
      masks = torch.where(chosen[:, None, None], masks.flip(axis), masks)
  return images, masks


def predicted_scores(trainer: Trainer, images: torch.Tensor, masks: torch.Tensor,
                     batch_size: int) -> dict:
  """The scores of the target (logit above 0) pooled over every pixel of ``images``, counted
  and scored by jaxseg's own metric functions, in ``eval()`` under ``no_grad``."""
  trainer.model.eval()
  counts = []
  with torch.no_grad(), trainer.autocast:
    for start in range(0, len(images), batch_size):
      x, _ = trainer.inputs(images[start:start + batch_size], masks[start:start + batch_size])
      predicted = (trainer.model(x)[:, 0] > 0).cpu().numpy()
      counts.append(confusion_counts(predicted, masks[start:start + batch_size].numpy()))
  return scores(np.concatenate(counts))
