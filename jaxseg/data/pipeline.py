"""Input pipeline: file list, decode, resize, cache, shuffle, batch, prefetch.

One decoding function (`decode_example`, OpenCV) serves two loaders: a plain iterator with a
thread pool (the default), and tf.data (``--loader tf``: parallel decoding, batching,
prefetch). Both hand NumPy batches to JAX: images uint8 (B, S, S, 3), masks uint8 (B, S, S):
0/1 of a binary target, class values of ``cell``. The plain loader is the default because it
is at least as fast at every stage measured and does not import TensorFlow, which adds
seconds to the start and the end of every command ("The input pipeline" in
docs/performance.md).

Every file is decoded once, up front (`Loader.warm`), into arrays held in memory; this finds
a bad file before any training starts. Each epoch's order is one seeded permutation
(`Loader.order`) that both loaders follow, so a run sees the same batches with or without
TensorFlow.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from jaxseg import tiling
from jaxseg.data.enhance import Enhance, enhance
from jaxseg.data.files import read_image, read_mask
from jaxseg.data.folder import Example
from jaxseg.data.masks import check_mask_values, target_mask
from jaxseg.data.otsu import otsu_mask
from jaxseg.errors import DataError, JaxsegError

Batch = tuple[np.ndarray, np.ndarray]
# Where masks come from: the data set's ("exact"), or the paper's Otsu rule on the image.
LABELS = ("exact", "otsu")
# Batches tf.data gathers ahead of the step: a gather from memory takes far less than a step.
PREFETCH_BATCHES = 2
# The random stream of a scaled loader's crop corners, beside each epoch's order.
_CROP_STREAM = 2


def read_example(example: Example, mask_colours: dict | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """An example's RGB image and class mask, checked: same size, known mask values; colour
  masks are read through ``mask_colours`` (`jaxseg.data.files.read_mask`)."""
  image, mask = read_image(example.image), read_mask(example.mask, mask_colours)
  if image.shape[:2] != mask.shape:
    raise DataError(
      f"{example.mask}: mask is {mask.shape[1]}x{mask.shape[0]}, "
      f"its image is {image.shape[1]}x{image.shape[0]}"
    )
  check_mask_values(mask, example.mask)
  return image, mask


def decode_example(example: Example, *, image_size: int, target: str, enhancement: Enhance,
                   labels: str = "exact", mask_colours: dict | None = None, scale: float = 0.0):
  """Read, check, resize (masks by nearest neighbour) and enhance one image/mask pair, to
  `scaled_size`.

  With ``labels="otsu"`` the mask is made from the full-size image by the paper's rule, as
  python -m jaxseg.make_masks makes it, instead of read from the data set.
  """
  image, mask = read_example(example, mask_colours)
  size = scaled_size(image.shape, scale, image_size)
  mask = (otsu_mask(image, target) if labels == "otsu"
          else target_mask(mask, target, example.mask))
  mask = cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)
  return prepare_image(image, size, enhancement), mask


def scaled_size(shape: tuple[int, ...], scale: float, image_size: int) -> tuple[int, int]:
  """(height, width) of an image of ``shape`` as a run sees it: resized whole to
  ``image_size`` square (``scale`` 0, the paper's way), or scaled by ``scale``, its aspect kept."""
  if not scale:
    return image_size, image_size
  return rescaled_size(shape, (scale, scale))


def rescaled_size(shape: tuple[int, ...], factors: tuple[float, float]) -> tuple[int, int]:
  """(height, width) of an image of ``shape`` scaled by ``factors`` (along height, width)."""
  return tuple(max(round(side * factor), 1) for side, factor in zip(shape[:2], factors))


def prepare_image(image: np.ndarray, size: tuple[int, int], enhancement: Enhance) -> np.ndarray:
  """Resize an RGB image to ``size`` (height, width) by area averaging, then enhance it.

  What a model sees of an image, at training, test and prediction time alike.
  """
  return enhance(cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA), enhancement)


def tensorflow_available() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def import_tensorflow():
  """TensorFlow for reading data only: start-up logs quiet, GPUs left to JAX."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  return tf


class Loader:
  """Batches of one split; ``epoch(i)`` is shuffled by (seed, i), so a resumed run repeats it.

  With a ``scale``, images are kept whole at that scale (`images`, `masks`: arrays of each
  image's own size) and every batch is of random ``image_size`` crops, one from each image,
  placed by (seed, i) too; evaluation covers the whole images by sliding ``window`` windows
  (`jaxseg.tiling.predict_tiled`). The crops are cut by NumPy for either loader.
  """

  def __init__(self, examples: Sequence[Example], *, image_size: int, target: str,
               enhancement: Enhance, batch_size: int, seed: int, kind: str = "plain",
               labels: str = "exact", mask_colours: dict | None = None, scale: float = 0.0,
               window: int | None = None):
    if labels not in LABELS:
      raise JaxsegError(f"labels {labels!r}: choose {' or '.join(LABELS)}")
    if kind == "auto":
      kind = "tf" if tensorflow_available() else "plain"
    if kind not in ("tf", "plain"):
      raise ValueError(f"unknown loader {kind!r}; choose auto, tf or plain")
    self.kind = kind
    self.examples = list(examples)
    self.batch_size = batch_size
    self.seed = seed
    self.mask_colours = mask_colours
    self.image_size = image_size
    self.scale = scale
    self.window = window or image_size  # the side of a scaled loader's evaluation windows
    self._decode_args = dict(image_size=image_size, target=target, enhancement=enhancement,
                             labels=labels, mask_colours=mask_colours, scale=scale)
    self._cached = None
    self._tf_arrays = None

  def __len__(self) -> int:
    return len(self.examples)

  def steps(self, *, drop_remainder: bool) -> int:
    full, rest = divmod(len(self.examples), self.batch_size)
    return full if drop_remainder or not rest else full + 1

  def warm(self, description: str = "decoding") -> None:
    """Decode every example once into memory; raises `DataError` naming a bad file."""
    if self._cached is not None:
      return
    with tqdm(total=len(self.examples), desc=description, unit="img", leave=False) as bar:
      pairs = self._decode_tf(bar) if self.kind == "tf" else self._decode_plain(bar)
    images, masks = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    if len({image.shape for image in images}) == 1:  # one array where every size is the same
      images, masks = np.stack(images), np.stack(masks)
    self._cached = images, masks

  @property
  def images(self) -> np.ndarray | list[np.ndarray]:
    """Every example's image (uint8 RGB, resized or scaled, and enhanced), in the examples'
    order: one array, or a list where scaled images differ in size."""
    self.warm()
    return self._cached[0]

  @property
  def masks(self) -> np.ndarray | list[np.ndarray]:
    """Every example's target mask (0/1, or class values for ``cell``), in the examples'
    order, as `images`."""
    self.warm()
    return self._cached[1]

  def order(self, index: int, shuffle: bool) -> np.ndarray:
    """The examples' order in epoch ``index``: a permutation seeded by (seed, index)."""
    order = np.arange(len(self.examples))
    if shuffle:
      order = np.random.default_rng(_epoch_seed(self.seed, index)).permutation(order)
    return order

  def epoch(self, index: int = 0, *, shuffle: bool, drop_remainder: bool) -> Iterator[Batch]:
    self.warm()
    order = self.order(index, shuffle)[:self.steps(drop_remainder=drop_remainder) *
                                       self.batch_size]
    batches = [order[start:start + self.batch_size]
               for start in range(0, len(order), self.batch_size)]
    if self.scale:
      return self._crops(index, batches)
    if self.kind == "tf":
      return self._epoch_tf(batches)
    images, masks = self._cached
    return ((images[chosen], masks[chosen]) for chosen in batches)

  def _crops(self, index: int, batches: list[np.ndarray]) -> Iterator[Batch]:
    """Batches of one random ``image_size`` crop of each chosen image; the corners are drawn
    for the whole epoch first, so skipping batches (a resumed epoch) leaves the rest as they
    were. An image smaller than a crop is mirrored out to one, as windows are."""
    rng = np.random.default_rng([self.seed, index, _CROP_STREAM])
    side = self.image_size
    corners = [rng.random((len(chosen), 2)) for chosen in batches]
    for chosen, fractions in zip(batches, corners):
      images, masks = [], []
      for example, (fy, fx) in zip(chosen, fractions):
        image, mask = (tiling.mirrored_to(array, side) for array in (self.images[example],
                                                             self.masks[example]))
        y = int(fy * (image.shape[0] - side + 1))
        x = int(fx * (image.shape[1] - side + 1))
        images.append(image[y:y + side, x:x + side])
        masks.append(mask[y:y + side, x:x + side])
      yield np.stack(images), np.stack(masks)

  # tf.data: decoding runs in TensorFlow's thread pool; errors come back as values, so the
  # message naming the file reaches the user as it was written.
  def _decode_tf(self, bar):
    tf = import_tensorflow()

    def decode(index):
      try:
        image, mask = decode_example(self.examples[int(index)], **self._decode_args)
        return image, mask, b""
      except DataError as error:
        size = self._decode_args["image_size"]
        return (np.zeros((size, size, 3), np.uint8), np.zeros((size, size), np.uint8),
                str(error).encode())

    def decode_tf(index):
      return tf.numpy_function(decode, [index], [tf.uint8, tf.uint8, tf.string])

    decoded = (tf.data.Dataset.range(len(self.examples))
               .map(decode_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
    pairs = []
    for image, mask, error in decoded.with_options(_without_autotune(tf)).as_numpy_iterator():
      if error:
        raise DataError(error.decode())
      pairs.append((image, mask))
      bar.update()
    return pairs

  def _epoch_tf(self, batches: list[np.ndarray]):
    # tf.data gathers each batch of the given order from the arrays and prefetches the next.
    import tensorflow as tf

    if self._tf_arrays is None:
      self._tf_arrays = tuple(tf.constant(array) for array in self._cached)
    images, masks = self._tf_arrays
    indices = tf.ragged.constant([b.tolist() for b in batches], dtype=tf.int64)
    dataset = (tf.data.Dataset.from_tensor_slices(indices)
               .map(lambda chosen: (tf.gather(images, chosen), tf.gather(masks, chosen)))
               .prefetch(PREFETCH_BATCHES))
    return dataset.with_options(_without_autotune(tf)).as_numpy_iterator()

  def _decode_plain(self, bar):
    def decode(example):
      decoded = decode_example(example, **self._decode_args)
      bar.update()
      return decoded

    # OpenCV releases the GIL while it decodes and resizes, so threads decode in parallel.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
      return list(pool.map(decode, self.examples))


def _without_autotune(tf):
  """tf.data options without its autotuning thread: deleting an iterator that lived through a
  training epoch waits for that thread to wake, seconds after each epoch on a small CPU ("The
  input pipeline" in docs/performance.md)."""
  options = tf.data.Options()
  options.autotune.enabled = False
  return options


def _epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.default_rng([seed, epoch]).integers(2**31))
