"""The paper's tables solved for their confusion counts."""

import numpy as np
import pytest

from jaxseg.metrics import scores
from jaxseg.paper_check import implied_scores, paper_check


@pytest.mark.parametrize("counts", [(120, 15, 30, 835), (7, 1, 2, 990), (500, 100, 50, 350)])
def test_implied_scores_recover_the_scores_of_the_counts_behind_them(counts):
  known = scores(np.array([counts]))
  implied = implied_scores(100 * known["accuracy"], 100 * known["sensitivity"],
                           100 * known["precision"])
  assert implied["share"] == pytest.approx(100 * (counts[0] + counts[2]) / sum(counts))
  assert implied["iou"] == pytest.approx(100 * known["iou"])
  assert implied["dice"] == pytest.approx(100 * known["dice"])
  assert implied["mean_iou"] == pytest.approx(100 * known["mean_iou"])


def test_the_papers_printed_iou_lies_above_every_mean_iou_its_other_columns_allow():
  for target in ("cytoplasm", "nuclei"):
    for row in paper_check(target).values():
      assert row["printed_iou"] > row["mean_iou"] + 1
