"""The built-in synthetic Pap-smear data set: brightfield-like images with exact class masks.

It stands in for the paper's private data (419 BMP images of 1130x1130; HSIL 124, LSIL 61,
NSIL 234). Image ``i`` depends only on ``(seed, i)`` (and the generator's version), so a
larger set begins with the images of a smaller one, and the kinds follow the paper's
proportions in every run of 419 images.

Version 2 (`v2`, the default) models conventional smears from cytology: see
docs/synthetic-data.md. Version 3 (`v3`) draws version 2's smears with every look-alike painted
as its labelled counterpart is, so that how an object is drawn does not give its label away.
Version 1 (`v1`) is the first, much easier set, kept to compare with. A set's folder and
manifest name its version, so a cached set of one is never read as another.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from jaxseg.data.folder import CLASSES_FILE, write_classes
from jaxseg.data.synthetic import v1, v2, v3
from jaxseg.data.synthetic.draw import Drawn
from jaxseg.errors import DataError

KINDS = ("hsil", "lsil", "nsil")
PAPER_COUNTS = {"hsil": 124, "lsil": 61, "nsil": 234}
PAPER_SIZE = 1130
GENERATORS = {1: v1.sample, 2: v2.sample, 3: v3.sample}
# The versions that say where each object lies (jaxseg.data.shortcuts measures them).
OBJECT_GENERATORS = {2: v2.sample_objects, 3: v3.sample_objects}
# The version made unless asked: version 3 removes version 2's shortcuts, but colour finds its
# cells a little more easily (docs/synthetic-data.md, "Which version is the default").
LATEST_VERSION = 2

log = logging.getLogger(__name__)

# Random streams: the kind order and each image draw from their own seed sequences.
_KIND_STREAM, _IMAGE_STREAM = 0, 1


@functools.lru_cache(maxsize=16)
def _kind_cycle(seed: int) -> tuple[int, ...]:
  """A seeded shuffle of the paper's 419 kinds; image ``i`` takes entry ``i mod 419``."""
  kinds = np.repeat(np.arange(len(KINDS)), [PAPER_COUNTS[kind] for kind in KINDS])
  return tuple(np.random.default_rng([seed, _KIND_STREAM]).permutation(kinds).tolist())


def kind_of(index: int, seed: int) -> str:
  """The kind ('hsil', 'lsil' or 'nsil') of image ``index``; 419 in a row hold 124/61/234."""
  cycle = _kind_cycle(seed)
  return KINDS[cycle[index % len(cycle)]]


def check_version(version: int) -> None:
  if version not in GENERATORS:
    raise DataError(f"synthetic_version {version}: choose from {', '.join(map(str, GENERATORS))}")


def default_root(cache_dir: Path, num_images: int, seed: int, size: int,
                 version: int = LATEST_VERSION) -> Path:
  """Where the data set of these settings is cached under ``cache_dir``."""
  check_version(version)
  return Path(cache_dir) / f"synthetic-v{version}-s{seed}-n{num_images}-{size}px"


def generate_sample(seed: int, index: int, size: int = PAPER_SIZE,
                    version: int = LATEST_VERSION) -> tuple[np.ndarray, np.ndarray]:
  """Image ``index`` of the set of ``seed``: (RGB uint8 HxWx3, class mask uint8 HxW)."""
  check_version(version)
  return GENERATORS[version]((seed, _IMAGE_STREAM, index), kind_of(index, seed), size)


def generate_objects(seed: int, index: int, size: int = PAPER_SIZE,
                     version: int = LATEST_VERSION) -> tuple[np.ndarray, np.ndarray, list[Drawn]]:
  """`generate_sample`'s image and mask, and a `Drawn` for each cell, bare nucleus, neutrophil
  and red blood cell in it: where each lies, and what it is."""
  check_version(version)
  if version not in OBJECT_GENERATORS:
    raise DataError(f"synthetic_version {version}: records no objects; choose from "
                    f"{', '.join(map(str, OBJECT_GENERATORS))}")
  return OBJECT_GENERATORS[version]((seed, _IMAGE_STREAM, index), kind_of(index, seed), size)


def write_synthetic(
  root: Path, num_images: int, *, seed: int = 0, size: int = PAPER_SIZE, progress: bool = True,
  version: int = LATEST_VERSION,
) -> Path:
  """Write the set to ``root`` (images/*.bmp, masks/*.png, classes.csv, manifest.json) once;
  return ``root``.

  Nothing is written when ``root`` already holds this set, but for the classes.csv that sets
  written before it lack (from the images' names, `<kind>_<index>`). It is built in a temporary
  sibling folder and renamed into place, so an interrupted run leaves no partial set.
  """
  check_version(version)
  root = Path(root)
  manifest = {"version": version, "seed": seed, "size": size, "num_images": num_images}
  if _manifest_matches(root, manifest):
    if not (root / CLASSES_FILE).exists():
      _add_classes(root)
    return root
  if root.exists() and any(root.iterdir()) and not (root / "manifest.json").exists():
    raise DataError(f"{root}: exists and is not a synthetic data set; choose another folder")
  try:
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
  except OSError as error:
    raise DataError(f"{root.parent}: cannot write the synthetic data set there "
                    f"({error.strerror or error}); choose a writable cache folder "
                    "(JAXSEG_CACHE or --cache-dir)") from None
  try:
    (staging / "images").mkdir()
    (staging / "masks").mkdir()
    indices = tqdm(range(num_images), desc=f"synthetic Pap smears v{version}", unit="image",
                   disable=not progress)
    stems = [_write_image(staging, seed, size, version, index) for index in indices]
    manifest["kinds"] = {stem: stem.split("_")[0] for stem in stems}
    write_classes(staging / CLASSES_FILE, manifest["kinds"])
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    _move_into_place(staging, root)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return root


def _manifest_matches(root: Path, expected: dict) -> bool:
  try:
    manifest = json.loads((root / "manifest.json").read_text())
  except (OSError, ValueError):
    return False
  manifest.setdefault("version", 1)  # version 1 wrote no version
  return all(manifest.get(key) == value for key, value in expected.items())


def _add_classes(root: Path) -> None:
  """Write root/classes.csv from the names of the set's images; the images stay as they are.

  A cache that cannot be written (one shared read-only) still serves its images: without the
  file, a stratified split of them is the random one, as the warning says.
  """
  stems = sorted((path.stem for path in (root / "images").glob("*.bmp")),
                 key=lambda stem: int(stem.split("_")[1]))  # the manifest's order
  try:
    write_classes(root / CLASSES_FILE, {stem: stem.split("_")[0] for stem in stems})
  except OSError as error:
    log.warning("%s: cannot write the images' classes (%s); a stratified split of this set is "
                "random", root / CLASSES_FILE, error.strerror or error)


def _write_image(folder: Path, seed: int, size: int, version: int, index: int) -> str:
  """Write image/mask pair ``index`` into ``folder``; return its name."""
  stem = f"{kind_of(index, seed)}_{index:04d}"
  image, mask = generate_sample(seed, index, size, version)
  image_path, mask_path = folder / "images" / f"{stem}.bmp", folder / "masks" / f"{stem}.png"
  # cv2 writes BGR.
  written = cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
  if not (written and cv2.imwrite(str(mask_path), mask)):
    raise DataError(f"{folder}: cannot write synthetic image {stem}")
  return stem


def _move_into_place(staging: Path, root: Path) -> None:
  """Rename ``staging`` to ``root``, replacing an older set there."""
  if root.exists():
    stale = staging.with_suffix(".stale")
    root.rename(stale)
    staging.rename(root)
    shutil.rmtree(stale)
  else:
    staging.rename(root)
