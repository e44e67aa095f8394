"""The PyTorch peer: segmentation_models_pytorch's ``Unet`` on the same encoder, eager mode.

Set up as its users train it: random initialisation, one output class, bf16
autocast for ``bf16`` (fp32 otherwise), channels_last, ``cudnn.benchmark``, Adam and smp's
binary Jaccard loss. Runs on the GPU where torch sees one, else on the CPU. FLOPs are those
torch's FlopCounterMode counts (matmuls and convolutions) on one forward, and on one forward
and backward for training; XLA's count for jaxseg also includes elementwise work.
"""

from __future__ import annotations

import numpy as np
import segmentation_models_pytorch as smp
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from jaxseg.bench.timing import Timing, steps_per_second, timed

# smp's encoder of each jaxseg backbone; the plain U-Net has none.
ENCODERS = {
  "vgg19": "vgg19",  # without BatchNorm, as Keras's
  "resnet50": "resnet50",
  "mobilenet": "tu-mobilenetv1_100",  # timm's MobileNet v1
  "efficientnetb2": "efficientnet-b2",
  "densenet121": "densenet121",
}


def supports(backbone: str) -> bool:
  return backbone in ENCODERS


def versions() -> dict:
  device = _device()
  kind = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
  return {"torch": torch.__version__, "segmentation_models_pytorch": smp.__version__,
          "timm": timm.__version__, "device": kind}


def _device() -> torch.device:
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def measure(backbone: str, images: np.ndarray, masks: np.ndarray, *, precision: str,
            timing: Timing) -> dict:
  """Train and inference throughput of smp's Unet on ``images`` (uint8 NHWC) and ``masks``."""
  device = _device()
  torch.backends.cudnn.benchmark = True
  model = smp.Unet(ENCODERS[backbone], encoder_weights=None, classes=1)
  model = model.to(device, memory_format=torch.channels_last)
  optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
  loss_fn = smp.losses.JaccardLoss(mode="binary")
  x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float()
  x = x.contiguous(memory_format=torch.channels_last)
  y = torch.from_numpy(masks).to(device)[:, None].float()
  autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

  def sync(_=None):  # CPU ops have finished when they return
    if device.type == "cuda":
      torch.cuda.synchronize(device)

  def train_once():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss

  def infer_once():
    with torch.inference_mode(), autocast:
      return torch.sigmoid(model(x))

  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats(device)
  model.train()
  _, first_call_s = timed(lambda: sync(train_once()))
  train_rate = steps_per_second(train_once, sync, timing)
  train_flops = _counted_flops(train_once)
  model.eval()
  _, infer_first_call_s = timed(lambda: sync(infer_once()))
  infer_rate = steps_per_second(infer_once, sync, timing)
  infer_flops = _counted_flops(infer_once)
  peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
  del model, optimizer
  if device.type == "cuda":
    torch.cuda.empty_cache()  # hand the memory back for JAX's next configuration
  batch_size = len(images)
  return {
    "encoder": ENCODERS[backbone],
    "compile_s": None,  # eager: nothing is compiled ahead
    "first_call_s": first_call_s,
    "infer_first_call_s": infer_first_call_s,
    "train_images_per_s": train_rate * batch_size,
    "infer_images_per_s": infer_rate * batch_size,
    "train_gflop_per_image": train_flops / batch_size / 1e9,
    "infer_gflop_per_image": infer_flops / batch_size / 1e9,
    "peak_memory_bytes": peak,
  }


def _counted_flops(step) -> int:
  counter = FlopCounterMode(display=False)
  with counter:
    step()
  return counter.get_total_flops()
