"""Ranking of segmentation methods on Dice for an architecture study: which method is best, by
how much, and which methods the study cannot tell apart.

A ranking from one run per method confuses the methods with the luck of the seed and of the
test images; this module puts intervals and tests on it. Its input is, per method, the
confusion counts (tp, fp, fn, tn) of the target per training seed and test image. Seeds are
paired across methods (seed i is the same split and batch order for every method) and every
method is tested on the same images. This text is the method as the docs cite it.

- **Statistics.** Per seed, pooled Dice (counts summed over the test images, then Dice) and
  per-image Dice (the mean over images of each image's Dice); a method's value is their mean
  over seeds. Dice follows `jaxseg.metrics`: an image with no target pixels and none predicted
  scores 1.
- **Intervals.** A hierarchical bootstrap resamples the seeds with replacement and,
  independently, the test images with replacement, and computes the statistic on each resample
  (2000 by default). Seeds and images are crossed (every seed is tested on the same images), so
  one draw of images serves every seed of a resample; and one resample draws the same seeds and
  images for every method, so differences between methods are paired. An interval runs from the
  alpha/2 to the 1 - alpha/2 percentile of the resamples (95% at alpha 0.05). With one seed the
  intervals reflect the images alone.
- **Best method and differences.** The best method has the highest mean of the chosen
  statistic (pooled or per-image Dice). Each method's difference from it is method minus best
  (<= 0), with an interval from the paired bootstrap.
- **Detectable difference.** The smallest true difference from the best that the study detects
  with 80% power in a two-sided test at level alpha is (z_{1-alpha/2} + z_{0.80}) * se, where
  z_q is the standard normal quantile and se the bootstrap standard error of the difference:
  2.80 se at alpha 0.05.
- **Tests.** A block is a test image, holding every method's Dice of it averaged over the
  seeds. The blocks are the images rather than (seed, image) pairs because an image recurs in
  every seed: pairs would not be independent, and the tests would see the study as larger than
  it is. Friedman's test over all methods asks whether any of them differ; it needs 3 methods,
  and with 2 it is skipped. Wilcoxon's signed-rank test (two-sided; zero differences are
  dropped, scipy's default ``zero_method="wilcox"``) compares each pair of methods, and a pair
  whose differences are all zero gets p = 1. Holm's step-down correction adjusts the pairwise
  p-values for their number. The tests compare per-image Dice whatever the statistic ranked.
- **Groups.** A compact letter display: methods sorted by mean, best first; two methods share
  a letter if and only if their Holm-adjusted p-value is at least alpha. Each letter is a maximal
  group of methods that no test separates (a maximal clique of the "not different" graph), and
  letters go in the order of their best members, so the best method has 'a'. Where Friedman's
  test is not significant at alpha, every method gets 'a'.
"""

from __future__ import annotations

import string

import numpy as np
from scipy.stats import friedmanchisquare, norm, wilcoxon

from jaxseg.metrics import dice

STATISTICS = ("pooled", "per_image")
POWER = 0.80


def bootstrap_indices(rng: np.random.Generator, seeds: int, images: int, resamples: int):
  """Resampled seed indices (resamples, seeds) and, drawn independently, image indices
  (resamples, images), both with replacement."""
  seed_index = rng.integers(seeds, size=(resamples, seeds))
  return seed_index, rng.integers(images, size=(resamples, images))


def _weights(index: np.ndarray, size: int) -> np.ndarray:
  """How often each of ``size`` items is drawn in each row of ``index`` (rows, draws)."""
  rows = index.shape[0]
  flat = (np.arange(rows)[:, None] * size + index).ravel()
  return np.bincount(flat, minlength=rows * size).reshape(rows, size).astype(np.float64)


def hierarchical_bootstrap(counts: np.ndarray, seed_index: np.ndarray, image_index: np.ndarray,
                           statistic: str) -> np.ndarray:
  """The statistic's mean over seeds on each resample: counts (methods, seeds, images, 4) and
  `bootstrap_indices` give (methods, resamples), every method on the same seeds and images."""
  counts = np.asarray(counts, np.float64)
  seeds, images = counts.shape[1:3]
  seed_weights = _weights(seed_index, seeds)
  image_weights = _weights(image_index, images)
  if statistic == "pooled":
    # A resample's images, repeats included, summed per seed: (methods, resamples, seeds, 4).
    pooled = np.einsum("rn,msnk->mrsk", image_weights, counts, optimize=True)
    return np.einsum("mrs,rs->mr", dice(pooled), seed_weights) / seeds
  return np.einsum("rs,msn,rn->mr", seed_weights, dice(counts), image_weights,
                   optimize=True) / (seeds * images)


def holm(p_values) -> np.ndarray:
  """Holm's step-down adjustment: the i-th smallest of m p-values times (m - i + 1), made
  non-decreasing in that order and capped at 1."""
  p_values = np.asarray(p_values, np.float64)
  order = np.argsort(p_values)
  scaled = p_values[order] * (len(p_values) - np.arange(len(p_values)))
  adjusted = np.empty_like(p_values)
  adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
  return adjusted


def paired_tests(per_image: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
  """Friedman's test over methods and pairwise Wilcoxon signed-rank tests, on per-image Dice
  shaped (methods, blocks): the Friedman statistic and p (both None with fewer than 3 methods),
  and the raw and Holm-adjusted pairwise p-values as symmetric (methods, methods) matrices."""
  methods = len(per_image)
  if methods < 3:
    friedman = {"statistic": None, "p": None,
                "skipped": "Friedman's test needs at least 3 methods"}
  elif np.all(per_image == per_image[0]):
    # Every block ties every method: the statistic is 0/0, and nothing tells the methods apart.
    friedman = {"statistic": 0.0, "p": 1.0, "skipped": None}
  else:
    result = friedmanchisquare(*per_image)
    friedman = {"statistic": float(result.statistic), "p": float(result.pvalue), "skipped": None}
  first, second = np.triu_indices(methods, 1)
  # Without a nonzero difference the signed-rank test has nothing to rank: no evidence, p = 1.
  raw = np.array([wilcoxon(per_image[i], per_image[j]).pvalue
                  if np.any(per_image[i] != per_image[j]) else 1.0
                  for i, j in zip(first, second)])
  p_matrix, holm_matrix = np.ones((methods, methods)), np.ones((methods, methods))
  p_matrix[first, second] = p_matrix[second, first] = raw
  holm_matrix[first, second] = holm_matrix[second, first] = holm(raw)
  return friedman, p_matrix, holm_matrix


def _maximal_cliques(linked: np.ndarray) -> list[list[int]]:
  """Maximal cliques of a graph given as a symmetric boolean matrix without self-links
  (Bron and Kerbosch), each sorted."""
  cliques = []

  def grow(clique, candidates, excluded):
    if not candidates and not excluded:
      cliques.append(sorted(clique))
    for node in sorted(candidates):
      neighbours = set(np.flatnonzero(linked[node]).tolist())
      grow(clique + [node], candidates & neighbours, excluded & neighbours)
      candidates = candidates - {node}
      excluded = excluded | {node}

  grow([], set(range(len(linked))), set())
  return cliques


def compact_letters(names: list[str], same: np.ndarray) -> dict[str, str]:
  """Letters of methods ``names`` (best first) from ``same`` (methods, methods), true where two
  methods are not significantly different: a letter per maximal clique of that graph, in the
  order of their best members, so two methods share a letter if and only if ``same`` links
  them."""
  same = np.asarray(same, bool) & ~np.eye(len(names), dtype=bool)
  cliques = sorted(_maximal_cliques(same))
  if len(cliques) > len(string.ascii_lowercase):
    raise ValueError(f"{len(cliques)} letter groups: more than the alphabet's 26")
  return {name: "".join(string.ascii_lowercase[letter] for letter, clique in enumerate(cliques)
                        if index in clique)
          for index, name in enumerate(names)}


def detectable_difference(se, alpha: float = 0.05, power: float = POWER):
  """(z_{1-alpha/2} + z_power) * se: the true difference that a two-sided test at level alpha
  detects with the given power, where se is the difference's standard error."""
  return (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * np.asarray(se)


def _check(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The counts as arrays, or ValueError where a shape is not a study's (seeds, images, 4)."""
  if len(counts) < 2:
    raise ValueError(f"a ranking needs at least 2 methods, got {len(counts)}")
  arrays = {name: np.asarray(values) for name, values in counts.items()}
  first, reference = next(iter(arrays.items()))
  for name, values in arrays.items():
    if values.ndim != 3 or values.shape[-1] != 4 or values.shape[0] < 1 or values.shape[1] < 2:
      raise ValueError(f"method {name!r}: counts shaped {values.shape}, want (seeds >= 1, "
                       "images >= 2, 4)")
    if values.shape != reference.shape:
      raise ValueError(f"method {name!r}: counts shaped {values.shape}, but {first!r}'s are "
                       f"{reference.shape}")
  return arrays


def _interval(replicates: np.ndarray, alpha: float) -> np.ndarray:
  """Percentile interval (..., 2) of bootstrap replicates along the last axis."""
  return np.moveaxis(np.percentile(replicates, [100 * alpha / 2, 100 * (1 - alpha / 2)],
                                   axis=-1), 0, -1)


def rank(counts: dict[str, np.ndarray], *, statistic: str = "pooled",
         rng: np.random.Generator, resamples: int = 2000, alpha: float = 0.05) -> dict:
  """Rank methods from their confusion counts, each shaped (seeds, images, 4), as the module's
  docstring describes. Returns plain JSON-able values:

  - ``statistic``, ``alpha``, ``resamples``, ``seeds``, ``images``: what it ran on;
  - ``best``: the best method's name; ``order``: the names, best first;
  - ``methods``: per name, best first: ``pooled_dice``, ``per_image_dice`` (means over seeds)
    and their ``pooled_dice_interval``, ``per_image_dice_interval``; ``difference`` (from the
    best, in the chosen statistic) and ``difference_interval``; ``detectable_difference``
    (None for the best); ``letters``;
  - ``detectable_difference_median``: the median over the methods other than the best;
  - ``friedman``: ``statistic``, ``p``, and ``skipped`` (why, or None);
  - ``pairwise``: per pair of methods, ``methods`` (the two names, better first), ``p``
    (Wilcoxon's) and ``p_holm`` (Holm-adjusted).
  """
  if statistic not in STATISTICS:
    raise ValueError(f"statistic {statistic!r}: want one of {STATISTICS}")
  arrays = _check(counts)
  names = list(arrays)
  stacked = np.stack(list(arrays.values()))
  seeds, images = stacked.shape[1:3]
  identity = np.arange(seeds)[None], np.arange(images)[None]
  seed_index, image_index = bootstrap_indices(rng, seeds, images, resamples)
  means, intervals, replicates = {}, {}, {}
  for kind in STATISTICS:
    means[kind] = hierarchical_bootstrap(stacked, *identity, kind)[:, 0]
    replicates[kind] = hierarchical_bootstrap(stacked, seed_index, image_index, kind)
    intervals[kind] = _interval(replicates[kind], alpha)
  # Stable: methods of equal means keep the order they were given in.
  order = np.argsort(-means[statistic], kind="stable")
  best = order[0]
  differences = replicates[statistic] - replicates[statistic][best]
  difference_intervals = _interval(differences, alpha)
  detectable = detectable_difference(differences.std(axis=1, ddof=1), alpha)
  per_image = dice(stacked).mean(axis=1)  # (methods, images): each image's Dice over seeds
  friedman, p_matrix, holm_matrix = paired_tests(per_image)
  ordered = [names[index] for index in order]
  if friedman["p"] is not None and friedman["p"] >= alpha:
    letters = dict.fromkeys(ordered, "a")
  else:
    letters = compact_letters(ordered, holm_matrix[np.ix_(order, order)] >= alpha)
  methods = {}
  for index in order:
    methods[names[index]] = {
      "pooled_dice": float(means["pooled"][index]),
      "pooled_dice_interval": intervals["pooled"][index].tolist(),
      "per_image_dice": float(means["per_image"][index]),
      "per_image_dice_interval": intervals["per_image"][index].tolist(),
      "difference": float(means[statistic][index] - means[statistic][best]),
      "difference_interval": difference_intervals[index].tolist(),
      "detectable_difference": None if index == best else float(detectable[index]),
      "letters": letters[names[index]],
    }
  others = [detectable[index] for index in order[1:]]
  return {
    "statistic": statistic,
    "alpha": alpha,
    "resamples": resamples,
    "seeds": int(seeds),
    "images": int(images),
    "best": names[best],
    "order": ordered,
    "methods": methods,
    "detectable_difference_median": float(np.median(others)),
    "friedman": friedman,
    "pairwise": [{"methods": [ordered[i], ordered[j]],
                  "p": float(p_matrix[order[i], order[j]]),
                  "p_holm": float(holm_matrix[order[i], order[j]])}
                 for i in range(len(order)) for j in range(i + 1, len(order))],
  }
