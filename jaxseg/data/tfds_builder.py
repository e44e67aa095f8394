"""TensorFlow Datasets builder `cervical_cytology`: a folder-format data set as TFRecords.

Prepare the records once from a folder (README's format), then train from them:

  python -m jaxseg.build_tfds FOLDER --tfds-dir DIR
  python -m jaxseg.train --data tfds:cervical_cytology --tfds-dir DIR

Images and masks are stored as PNG, lossless, so the records hold the very pixels of the
files, with each image's class from FOLDER/classes.csv where it has one. The test split is
FOLDER/test where FOLDER has train/ and test/, else the seeded 80/20 split that
`split_dataset` makes with seed 0 (stratified by class where the classes are known).
Validation images are carved from the train split when the records are read, by the run's
seed and split setting, as for a folder. Records once written are reused: to rebuild them
from a changed folder, delete DIR/cervical_cytology/VERSION.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from jaxseg.data.files import Encoded
from jaxseg.data.folder import (
  Example,
  Splits,
  check_split,
  train_test_examples,
  with_validation,
)
from jaxseg.data.pipeline import import_tensorflow, read_example
from jaxseg.errors import DataError

NAME = "cervical_cytology"
# The test split fixed in the records: the paper's 80/20, as `split_dataset` draws it for seed 0
# and the default split setting.
TEST_FRACTION, SPLIT_SEED, SPLIT = 0.2, 0, "stratified"


class CervicalCytology(tfds.core.GeneratorBasedBuilder):
  """Pap-smear images with class masks: 0 background, 1 cytoplasm, 2 nucleus (or 0/255)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
    "1.0.0": "First release: RGB images and one-channel masks as PNG; train, test.",
    "1.1.0": "Each image's class from classes.csv (empty without one); the test split "
             "stratified by it.",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Place a data set in jaxseg's folder format in the manual dir: images/<name>.{bmp,png,jpg,tif}
  and masks/<name>.png (a seeded 80/20 train/test split is made, stratified by class where
  classes.csv names each image's), or the same layout under train/ and test/ (kept as the
  splits).
  """
  # The code path only locates download checksums, and nothing is downloaded. Finding it needs
  # the importlib_resources backport that TFDS 4.9 does not install on Python >= 3.9
  # (tensorflow/datasets#11212).
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo itself, not dataset_info_from_configs: no metadata files to find beside this
    # module.
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
        "name": tfds.features.Text(),
        "class": tfds.features.Text(),
      }),
      supervised_keys=("image", "mask"),
      # Records keep the folder's order, so that validation carving matches `split_dataset`.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    train, test, classes = train_test_examples(dl_manager.manual_dir,
                                               test_fraction=TEST_FRACTION, seed=SPLIT_SEED,
                                               split=SPLIT)
    return {"train": self._generate_examples(train, classes),
            "test": self._generate_examples(test, classes)}

  def _generate_examples(self, examples: list[Example], classes: dict[str, str] | None):
    for index, example in enumerate(examples):
      image, mask = read_example(example)  # a bad file stops preparation, named
      yield index, {"image": image, "mask": mask[..., None], "name": example.name,
                    "class": classes[example.name] if classes else ""}


def prepare(name: str, data_dir, manual_dir) -> tfds.core.DatasetBuilder:
  """Write the records of ``name`` from the folder ``manual_dir`` into ``data_dir`` (once)."""
  manual_dir = Path(manual_dir).expanduser()
  if not manual_dir.is_dir():
    raise DataError(f"{manual_dir}: data folder not found")
  builder = _builder(name, data_dir)
  # No look-up of a prepared copy on Google Cloud Storage: this data set is the user's own.
  config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  builder.download_and_prepare(download_config=config)
  return builder


def tfds_splits(name: str, data_dir, *, manual_dir=None, val_fraction: float, seed: int,
                split: str = "stratified") -> Splits:
  """The train, validation and test examples of TFDS data set ``name`` in ``data_dir``.

  Each example holds its record's PNG bytes (`Encoded`), which the `Loader` decodes as it
  decodes files. Where the records are missing, they are prepared from ``manual_dir``.
  Validation is carved from the train split as ``split`` says: "stratified" by the records'
  classes where every training record has one, or "random".
  """
  check_split(split)
  if manual_dir is not None:
    builder = prepare(name, data_dir, manual_dir)
  else:
    builder = _builder(name, data_dir)
    if not builder.is_prepared():
      raise DataError(f"{builder.data_dir}: no {name} records{_older(builder)}; prepare them "
                      f"with python -m jaxseg.build_tfds FOLDER --tfds-dir {data_dir}")
  features = set(builder.info.features.keys())
  if not {"image", "mask", "name", "class"} <= features:
    raise DataError(f"tfds:{name} has features {sorted(features)}; expected image, mask, name "
                    "and class")
  (train, train_classes), (test, _) = (_read_split(builder, part) for part in ("train", "test"))
  classes = train_classes if split == "stratified" and all(train_classes.values()) else None
  return with_validation(train, test, val_fraction=val_fraction, seed=seed, classes=classes)


def _older(builder: tfds.core.DatasetBuilder) -> str:
  """Where the folder holds records of other versions only, a note naming them."""
  versions = sorted(path.name for path in Path(builder.data_dir).parent.glob("*.*.*")
                    if path.name != str(builder.version))
  return f" of version {builder.version} (found {', '.join(versions)})" if versions else ""


def _builder(name: str, data_dir) -> tfds.core.DatasetBuilder:
  import_tensorflow()
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f"tfds:{name}: no such TFDS data set (jaxseg's is tfds:{NAME})") from None


def _read_split(builder: tfds.core.DatasetBuilder, split: str):
  """(examples, {name: class}) of one split of the records ("" where a class is not known)."""
  undecoded = tfds.decode.SkipDecoding()  # the PNG bytes, decoded later by OpenCV
  records = builder.as_dataset(split=split, shuffle_files=False,
                               decoders={"image": undecoded, "mask": undecoded})
  examples, classes = [], {}
  for record in records.as_numpy_iterator():
    name = record["name"].decode()
    where = f"in {builder.data_dir} [{split}]"
    examples.append(Example(name, Encoded(f"{name} image {where}", record["image"]),
                            Encoded(f"{name} mask {where}", record["mask"])))
    classes[name] = record["class"].decode()
  return examples, classes
