"""The committed reproduction (experiments/results/): all six methods and both targets on a
2-core CPU in about an hour.

python -m jaxseg.reproduce --config configs/reproduce_cpu.py

The quick preset at 64x64 instead of 128x128 and 20 epochs instead of 30: a quarter of the
pixels, so that twelve runs and the repeated seeds fit; and random encoder weights, written
down rather than depending on whether converted ImageNet weights are in the cache.
"""

from jaxseg.configs import quick


def get_config():
  return quick.get_config().replace(image_size=64, epochs=20, weights="none")
