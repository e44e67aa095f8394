"""The paper's settings (section 2.3): Adam at 0.003, batch 18, 100 epochs, 224x224, 419 images."""

from jaxseg.config import Config
from jaxseg.data.enhance import PRESET_ENHANCE


def get_config() -> Config:
  return Config(
    enhance=PRESET_ENHANCE,  # the paper gives no values: see PRESET_ENHANCE for ours
    unet_filters=64,
    unet_depth=5,
    num_images=419,
    image_size=224,
    batch_size=18,
    epochs=100,
    learning_rate=3e-3,
  )
