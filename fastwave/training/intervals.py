"""Intervals for comparing models, and the smallest difference a test set can detect.

    mean, low, high = t_interval([0.41, 0.44, 0.43])                       # over training seeds
    mean, low, high = cluster_bootstrap(correct, programs, seed=0)          # items clustered by program
    mean, low, high = cluster_bootstrap(correct_a - correct_b, programs)    # a paired difference
    smallest = detectable_difference(correct_a - correct_b, programs)       # what this test set can resolve
    detectable_with_seeds(differences_by_seed, programs, seeds=12)          # ... and would more seeds help?
    verdict(over_seeds, over_programs)   # 'supported' only if every interval of the difference is above 0
    paired_difference(a_minus_b_per_item, programs, a_minus_b_per_seed)   # all of it, for one claim

Test items are not independent when they share a source: the notes of one GM program, the phrases
of one piano preset. An interval that treats 2,000 notes of 16 programs as 2,000 draws is far too
narrow, because a method that suits one instrument suits all its notes. So the bootstrap here
resamples whole clusters (programs, presets) with replacement, and the detectable difference is
computed from the spread between cluster means: the number of clusters sets the precision, not the
number of items.

A comparison of trained models has two sources of noise: the test items (which instruments happen
to be tested) and the training seeds (which run happened). An interval over items from scores
averaged over seeds leaves the seeds out, and an interval over seeds leaves the items out; a claim
is decided by ``verdict`` only where both exclude zero.

Shapes: ``values`` (N,) real, one per test item (0/1 correctness, a per-clip score, or a paired
difference); ``clusters`` (N,) hashable ids, one per item. Every function returns python floats.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from .._checks import check_int_arg

LEVEL = 0.95


def _values(values, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return array


def _level(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return float(level)


def _cluster_means(values, clusters) -> tuple[np.ndarray, np.ndarray]:
    """-> (sum of values, item count) per cluster, clusters in first-seen order."""
    values = _values(values)
    clusters = np.asarray(clusters)
    if clusters.shape != values.shape:
        raise ValueError(f"clusters must hold one id per value: {clusters.shape} ids for {values.shape} values")
    _, index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    return sums, counts


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent values (one per training seed, or per test item
    when items share nothing) -> (mean, low, high); with one value the interval is (nan, nan): one
    run says nothing about the spread between runs."""
    from scipy.stats import t  # a dependency, imported when first needed

    values, level = _values(values), _level(level)
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = float(t.ppf(0.5 + level / 2, values.size - 1)) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, mean - half, mean + half


def cluster_bootstrap(values, clusters, *, level: float = LEVEL, resamples: int = 10_000,
                      seed: int = 0) -> tuple[float, float, float]:
    """The item mean of ``values`` and its percentile-bootstrap interval, resampling whole
    ``clusters`` with replacement (each resample keeps the number of clusters; its mean is the
    item mean of the drawn clusters) -> (mean, low, high)."""
    level = _level(level)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an int >= 100, got {resamples!r}")
    sums, counts = _cluster_means(values, clusters)
    mean = float(sums.sum() / counts.sum())
    if sums.size < 2:
        return mean, math.nan, math.nan  # one cluster: no spread between clusters to resample
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, sums.size, size=(resamples, sums.size))
    means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return mean, float(low), float(high)


def detectable_difference(differences, clusters, *, level: float = LEVEL, power: float = 0.8) -> float:
    """The smallest true mean difference between two methods that a two-sided test at ``level``
    detects with probability ``power``, on this test set.

    ``differences``: per item, method A's value minus method B's, from a pilot run. (Given one
    method's values instead, multiply the result by sqrt(2) for two methods that err independently.)
    The standard error is that of the item mean over clusters, estimated from the spread of the
    cluster means; the result is (z_level + z_power) x standard error. Size a test set so that this
    is at most half the difference the experiment asks about."""
    level = _level(level)
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    sums, counts = _cluster_means(differences, clusters)
    if sums.size < 2:
        raise ValueError("at least 2 clusters are needed to estimate the spread between them")
    means = sums / counts
    weights = counts / counts.sum()
    centre = float((weights * means).sum())
    # The variance of a ratio-of-sums mean over clusters (the usual cluster-robust estimate).
    variance = float((weights ** 2 * (means - centre) ** 2).sum()) * sums.size / (sums.size - 1)
    z = NormalDist().inv_cdf(0.5 + level / 2) + NormalDist().inv_cdf(power)
    return z * math.sqrt(variance)


def detectable_with_seeds(differences, clusters, seeds: int, *, level: float = LEVEL, power: float = 0.8) -> float:
    """``detectable_difference`` projected to ``seeds`` training seeds: would more seeds sharpen the test?

    ``differences``: (S >= 2, N), per training seed (seed s of A against seed s of B) and test item,
    A's value minus B's. The spread between the clusters' seed-averaged means holds the clusters' own
    spread, which no number of seeds shrinks, and the seeds' noise: how differently the seeds rank
    the clusters (a seed that shifts every cluster alike changes the mean, not the spread, and is left
    out), over S. The projection keeps the first and puts ``seeds`` in place of S in the second; the
    seeds' share is capped at the whole spread, so with ``seeds`` == S it is ``detectable_difference``
    of the seed-averaged differences. Only the over-items interval is projected: the t-interval over
    seeds narrows with more seeds far faster (its critical value falls too)."""
    level = _level(level)
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    seeds = check_int_arg(seeds, "seeds")
    table = np.asarray(differences, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 2:
        raise ValueError(f"differences must be (seeds >= 2, items): a spread across seeds needs two, got shape "
                         f"{table.shape}")
    per_seed = [_cluster_means(row, clusters) for row in table]
    counts = per_seed[0][1]
    if counts.size < 2:
        raise ValueError("at least 2 clusters are needed to estimate the spread between them")
    means = np.stack([sums / counts for sums, _ in per_seed])  # (S, clusters)
    weights = counts / counts.sum()
    correction = counts.size / (counts.size - 1)
    averaged = means.mean(axis=0)
    total = float((weights ** 2 * (averaged - (weights * averaged).sum()) ** 2).sum()) * correction
    centred = means - (weights * means).sum(axis=1, keepdims=True)  # each seed's shift taken out
    noise = min(float((weights ** 2 * centred.var(axis=0, ddof=1)).sum()) * correction / len(table), total)
    z = NormalDist().inv_cdf(0.5 + level / 2) + NormalDist().inv_cdf(power)
    return z * math.sqrt(total - noise + noise * len(table) / seeds)


def verdict(*intervals) -> str:
    """The verdict on a claim "A is better than B" from intervals of the difference A - B, each
    (mean, low, high): "supported" when every interval lies above 0, "contradicted" when every one
    lies below, else "not resolved". An interval with a missing bound (NaN or None: one seed, one
    cluster) resolves nothing."""
    if not intervals:
        raise ValueError("verdict needs at least one interval")
    bounds = []
    for interval in intervals:
        if len(interval) != 3:
            raise ValueError(f"an interval is (mean, low, high), got {interval!r}")
        low, high = interval[1], interval[2]
        if low is None or high is None or math.isnan(low) or math.isnan(high):
            return "not resolved"
        bounds.append((low, high))
    if all(low > 0 for low, _ in bounds):
        return "supported"
    if all(high < 0 for _, high in bounds):
        return "contradicted"
    return "not resolved"


def paired_difference(item_differences, clusters, seed_differences, *, seed: int = 0) -> dict:
    """One claim "A is better than B", from A - B per test item (each item's score averaged over
    seeds; ``clusters`` as for ``cluster_bootstrap``) and per training seed (seed s of A against seed
    s of B: each seed's mean score) -> {"difference": (mean, low, high) over items, "difference_over_
    seeds": (mean, low, high) over seeds (None bounds for one seed; all None for no seed in common), "detectable": the smallest true
    difference the items detect, "verdict": ``verdict`` of both}."""
    over_items = cluster_bootstrap(item_differences, clusters, seed=seed)
    # no seed in common (A's seeds 0-1 against B's seed 2): nothing to say over seeds
    over_seeds = t_interval(seed_differences) if len(seed_differences) else (math.nan,) * 3
    return {"difference": list(over_items),
            "difference_over_seeds": [None if math.isnan(v) else v for v in over_seeds],  # JSON has no NaN
            "detectable": detectable_difference(item_differences, clusters),
            "verdict": verdict(over_items, over_seeds)}
