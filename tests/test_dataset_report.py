"""python -m jaxseg.dataset_report on a tiny data set whose answers are known by construction."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from jaxseg import dataset_report as report_tool
from jaxseg.data.folder import split_dataset
from jaxseg.data.masks import CYTOPLASM, NUCLEUS

SIZE = 64
GLASS = (230, 230, 230)  # saturation 0
CELL = (200, 150, 220)  # saturation 81
NUCLEUS_COLOUR = (60, 40, 120)  # saturation 170
COUNT = 10


def write_tiny_set(root: Path) -> Path:
  """Each image: a coloured cell (24x24) with a nucleus (12x12), and a ghost cell of the
  glass's colour, as large, labelled cytoplasm: no colour rule can find it."""
  (root / "images").mkdir(parents=True)
  (root / "masks").mkdir()
  for index in range(COUNT):
    image = np.full((SIZE, SIZE, 3), GLASS, np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    top = 4 + index % 3  # the shapes move a little between images
    image[top:top + 24, 4:28] = CELL
    mask[top:top + 24, 4:28] = CYTOPLASM
    image[top + 6:top + 18, 10:22] = NUCLEUS_COLOUR
    mask[top + 6:top + 18, 10:22] = NUCLEUS
    mask[36:60, 36:60] = CYTOPLASM  # the ghost
    kind = "hsil" if index % 2 else "nsil"
    cv2.imwrite(str(root / "images" / f"{kind}_{index:02d}.png"), image[..., ::-1])
    cv2.imwrite(str(root / "masks" / f"{kind}_{index:02d}.png"), mask)
  return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  root = write_tiny_set(tmp_path_factory.mktemp("tiny"))
  splits = split_dataset(root, test_fraction=0.2, val_fraction=0.1, seed=0)
  return report_tool.report_of(root, splits)


def test_baselines_score_what_colour_can_tell(report):
  baselines = report["baselines"]
  # The coloured cell is found exactly, the ghost never: IoU 576 / (576 + 576).
  assert baselines["saturation"]["cytoplasm"]["iou"] == pytest.approx(0.5)
  assert baselines["colour"]["cytoplasm"]["iou"] == pytest.approx(0.5)
  assert baselines["colour"]["nuclei"]["iou"] == pytest.approx(1.0)
  assert baselines["saturation"]["nuclei"]["iou"] == pytest.approx(1.0)
  assert 0 <= report["saturation_thresholds"]["cytoplasm"] < 81
  assert 81 <= report["saturation_thresholds"]["nuclei"] < 170
  # Three grey levels: Otsu's one threshold falls between nucleus and cytoplasm, so its
  # "cells" are about the nuclei (144 of 1152 pixels, blurred a little wider).
  assert 0.1 < baselines["otsu"]["cytoplasm"]["iou"] < 0.2
  assert baselines["otsu"]["nuclei"]["iou"] > 0.8


def test_cells_nuclei_and_shares_are_counted(report):
  data = report["data"]
  assert report["split"] == {"train": 7, "val": 1, "test": 2}
  assert data["class_share"]["nucleus"] == pytest.approx(144 / SIZE**2)
  assert data["class_share"]["cytoplasm"] == pytest.approx((576 - 144 + 576) / SIZE**2)
  assert data["cells_per_image"]["min"] == data["cells_per_image"]["max"] == 2
  assert sorted(data["kinds"]) == ["hsil", "nsil"]
  for kind in data["kinds"].values():
    assert kind["images"] == COUNT // 2
    assert kind["nucleus_area_px"]["median"] == 144
    assert kind["nc_ratio"]["median"] == pytest.approx(144 / 576)  # the ghost has no nucleus


def test_kinds_come_from_shared_prefixes_only():
  names = ["a_1", "a_2", "b_1", "b_2"]
  assert [report_tool.kind_of(name, names) for name in names] == ["a", "a", "b", "b"]
  unique = ["img1_x", "img2_x", "img3_x"]
  assert {report_tool.kind_of(name, unique) for name in unique} == {"all"}


def test_command_line_prints_json_and_writes_the_plot(tmp_path, capsys):
  root = write_tiny_set(tmp_path / "tiny")
  plot = tmp_path / "histograms.png"
  report_tool.main([str(root), "--json", "--plot", str(plot), "--image-size", "32"])
  printed = json.loads(capsys.readouterr().out)
  assert printed["image_size"] == 32
  assert printed["baselines"]["colour"]["nuclei"]["iou"] > 0.8
  assert cv2.imread(str(plot)) is not None
