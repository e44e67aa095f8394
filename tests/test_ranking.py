import json
import time
import warnings

import numpy as np
import pytest
from scipy.stats import friedmanchisquare, wilcoxon

from jaxseg.metrics import scores
from jaxseg.ranking import compact_letters, hierarchical_bootstrap, holm, rank

TP = 10_000  # target pixels found per image: Dice is set to within 1e-4 by the errors' count


def counts_of(target_dice) -> np.ndarray:
  """Counts (..., 4) whose Dice is ``target_dice``, TP true positives each."""
  wrong = np.rint(2 * TP * (1 - np.asarray(target_dice)) / np.asarray(target_dice)).astype(int)
  fp = wrong // 2
  return np.stack([np.full_like(wrong, TP), fp, wrong - fp, np.full_like(wrong, 500_000)], -1)


def centred(rng, scale, shape):
  noise = rng.normal(0, scale, shape)
  return noise - noise.mean()


def test_the_interval_of_a_known_difference_covers_it_and_excludes_0():
  rng = np.random.default_rng(0)
  seeds, images = 5, 20
  a = (0.8 + rng.normal(0, 0.05, images) + rng.normal(0, 0.02, (seeds, 1))
       + rng.normal(0, 0.01, (seeds, images)))
  # Centred noise: B's per-image Dice is A's minus 0.05 on average over seeds and images.
  b = a - 0.05 + centred(rng, 0.01, (seeds, 1)) + centred(rng, 0.02, (seeds, images))
  counts = {"A": counts_of(a), "B": counts_of(b)}
  result = rank(counts, statistic="per_image", rng=np.random.default_rng(1))
  assert result["best"] == "A"
  difference = result["methods"]["B"]["difference"]
  low, high = result["methods"]["B"]["difference_interval"]
  assert difference == pytest.approx(-0.05, abs=1e-3)
  assert low <= -0.05 <= high < 0
  assert result["methods"]["A"]["difference_interval"] == [0.0, 0.0]
  pooled = rank(counts, statistic="pooled", rng=np.random.default_rng(1))
  assert pooled["methods"]["B"]["difference_interval"][1] < 0


def test_the_interval_narrows_with_more_seeds():
  rng = np.random.default_rng(2)
  images = 10
  image_effect = rng.normal(0, 0.01, images)
  # Each method's own luck per seed dominates. The 12-seed study repeats the 3-seed study's
  # seed effects 4 times: the same spread of seeds, 4 times as many of them.
  luck = {"A": 0.8 + np.array([[-0.03], [0.0], [0.03]]),
          "B": 0.77 + np.array([[0.02], [-0.03], [0.01]])}

  def widths(seeds):
    counts = {name: counts_of(np.tile(seed_effect, (seeds // 3, 1)) + image_effect
                              + rng.normal(0, 0.005, (seeds, images)))
              for name, seed_effect in luck.items()}
    result = rank(counts, rng=np.random.default_rng(3))
    low, high = result["methods"]["B"]["difference_interval"]
    mean_low, mean_high = result["methods"]["A"]["pooled_dice_interval"]
    return high - low, mean_high - mean_low, result["methods"]["B"]["detectable_difference"]

  few, many = widths(3), widths(12)
  # Half as wide in expectation (1 / sqrt(4)); 0.7 leaves room for the resamples' own noise.
  assert many[0] < 0.7 * few[0]
  assert many[1] < 0.7 * few[1]
  assert many[2] < 0.7 * few[2]


def test_the_paired_tests_are_scipys_on_the_per_image_dice_of_metrics():
  rng = np.random.default_rng(4)
  seeds, images = 3, 8
  counts = {name: rng.integers(0, 50, (seeds, images, 4)) + [shift, 0, 0, 0]
            for name, shift in zip("ABCD", (0, 5, 10, 30))}
  counts["D"][0, 0] = [0, 0, 0, 100]  # no target, none predicted: Dice 1
  result = rank(counts, rng=np.random.default_rng(5))
  # Blocks are images: each image's Dice averaged over the seeds.
  per_image = {name: np.array([[scores(row[None])["dice"] for row in seed] for seed in values]
                              ).mean(axis=0) for name, values in counts.items()}
  expected = friedmanchisquare(*per_image.values())
  assert result["friedman"]["statistic"] == pytest.approx(expected.statistic)
  assert result["friedman"]["p"] == pytest.approx(expected.pvalue)
  assert result["friedman"]["skipped"] is None
  pairs = result["pairwise"]
  assert len(pairs) == 6
  raw = [wilcoxon(per_image[x], per_image[y]).pvalue for x, y in (p["methods"] for p in pairs)]
  np.testing.assert_allclose([p["p"] for p in pairs], raw)
  np.testing.assert_allclose([p["p_holm"] for p in pairs], holm(raw))
  assert result["order"] == sorted(counts, key=lambda name: -result["methods"][name]["pooled_dice"])


def test_holm_by_hand():
  np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
  # Monotone in the order of the raw p-values: 3 * 0.01 = 0.03 > 1 * 0.025, so 0.025 -> 0.04.
  np.testing.assert_allclose(holm([0.01, 0.02, 0.025]), [0.03, 0.04, 0.04])
  np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])


def separated(rng, levels, seeds=3, images=10):
  return {name: counts_of(level + rng.normal(0, 0.01, (seeds, images)))
          for name, level in levels.items()}


def test_clearly_separated_methods_get_their_own_letters_and_identical_ones_share():
  rng = np.random.default_rng(6)
  counts = separated(rng, {"C": 0.7, "A": 0.9, "B": 0.8})
  result = rank(counts, rng=np.random.default_rng(7))
  assert result["order"] == ["A", "B", "C"]
  assert [result["methods"][name]["letters"] for name in "ABC"] == ["a", "b", "c"]
  counts["A2"] = counts["A"].copy()
  result = rank(counts, rng=np.random.default_rng(7))
  assert result["order"] == ["A", "A2", "B", "C"]
  assert {name: values["letters"] for name, values in result["methods"].items()} == {
    "A": "a", "A2": "a", "B": "b", "C": "c"}
  # The same resamples for every method: identical methods differ by exactly 0 in each.
  assert result["methods"]["A2"]["difference_interval"] == [0.0, 0.0]
  assert next(p for p in result["pairwise"] if p["methods"] == ["A", "A2"])["p"] == 1.0


def test_methods_tied_in_every_block_are_one_group_without_scipys_0_over_0():
  same = separated(np.random.default_rng(13), {"A": 0.8})["A"]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    result = rank({"A": same, "B": same, "C": same}, rng=np.random.default_rng(14))
  assert result["friedman"] == {"statistic": 0.0, "p": 1.0, "skipped": None}
  assert [p["p_holm"] for p in result["pairwise"]] == [1.0, 1.0, 1.0]
  assert [values["letters"] for values in result["methods"].values()] == ["a", "a", "a"]


def test_compact_letters_of_an_overlap():
  # x ~ y and y ~ z, but x differs from z: y belongs to both groups.
  same = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
  assert compact_letters(["x", "y", "z"], same) == {"x": "a", "y": "ab", "z": "b"}
  same = np.eye(4, dtype=bool)
  same[0, 2] = same[2, 0] = same[1, 3] = same[3, 1] = True
  assert compact_letters(list("wxyz"), same) == {"w": "a", "x": "b", "y": "a", "z": "b"}


def test_two_methods_skip_friedman_and_the_wilcoxon_test_decides():
  result = rank(separated(np.random.default_rng(8), {"A": 0.9, "B": 0.8}),
                rng=np.random.default_rng(9))
  assert result["friedman"]["statistic"] is None and result["friedman"]["p"] is None
  assert "3 methods" in result["friedman"]["skipped"]
  assert [result["methods"][name]["letters"] for name in "AB"] == ["a", "b"]


def test_the_identity_resample_is_metrics_dice_and_a_resample_repeats_its_draws():
  rng = np.random.default_rng(10)
  counts = rng.integers(0, 40, (2, 3, 5, 4))
  counts[0, 1, 2] = [0, 0, 0, 64]  # empty image, nothing predicted: Dice 1 per image
  seeds, images = np.arange(3)[None], np.arange(5)[None]
  for statistic, key in (("pooled", "dice"), ("per_image", "per_image_dice")):
    expected = [np.mean([scores(seed)[key] for seed in method]) for method in counts]
    np.testing.assert_allclose(hierarchical_bootstrap(counts, seeds, images, statistic)[:, 0],
                               expected)
    drawn_seeds, drawn_images = np.array([[0, 0, 2]]), np.array([[1, 1, 3, 4, 0]])
    expected = [np.mean([scores(seed[drawn_images[0]])[key] for seed in method[drawn_seeds[0]]])
                for method in counts]
    np.testing.assert_allclose(
      hierarchical_bootstrap(counts, drawn_seeds, drawn_images, statistic)[:, 0], expected)


@pytest.mark.parametrize("shapes, named", [
  ({"a": (3, 5, 4), "b": (3, 6, 4)}, "'b'"),
  ({"a": (3, 5, 3), "b": (3, 5, 3)}, "'a'"),
  ({"a": (0, 5, 4), "b": (0, 5, 4)}, "'a'"),
  ({"a": (3, 1, 4), "b": (3, 1, 4)}, "'a'"),
  ({"a": (3, 5, 4), "b": (5, 4)}, "'b'"),
  ({"a": (3, 5, 4)}, "2 methods"),
])
def test_bad_shapes_raise(shapes, named):
  counts = {name: np.ones(shape, int) for name, shape in shapes.items()}
  with pytest.raises(ValueError, match=named):
    rank(counts, rng=np.random.default_rng(0))


def test_bad_statistic_raises():
  with pytest.raises(ValueError, match="statistic"):
    rank({"a": np.ones((1, 2, 4)), "b": np.ones((1, 2, 4))}, statistic="mean",
         rng=np.random.default_rng(0))


def test_a_study_ranks_in_well_under_a_second_into_plain_json():
  rng = np.random.default_rng(11)
  counts = {f"m{index}": counts_of(rng.uniform(0.6, 0.9, (5, 20))) for index in range(6)}
  start = time.perf_counter()
  result = rank(counts, rng=np.random.default_rng(12))
  assert time.perf_counter() - start < 1.0
  text = json.dumps(result, allow_nan=False)
  assert json.loads(text) == result
  assert result == rank(counts, rng=np.random.default_rng(12))
  assert (result["seeds"], result["images"], result["resamples"]) == (5, 20, 2000)
  assert all(values["difference"] <= 0 for values in result["methods"].values())
  others = [values["detectable_difference"] for values in result["methods"].values()][1:]
  assert result["detectable_difference_median"] == pytest.approx(np.median(others))
