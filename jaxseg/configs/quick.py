"""A run that finishes in minutes on a 2-core CPU: fewer, smaller images and a narrower U-Net."""

from jaxseg.config import Config


def get_config() -> Config:
  return Config(
    unet_filters=16,
    num_images=100,
    image_size=128,
    batch_size=4,
    epochs=30,
    learning_rate=3e-3,
  )
