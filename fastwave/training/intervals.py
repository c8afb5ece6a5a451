"""Intervals for comparing models, and the smallest difference a test set can detect.

    mean, low, high = t_interval([0.41, 0.44, 0.43])                       # over training seeds
    mean, low, high = cluster_bootstrap(correct, programs, seed=0)          # items clustered by program
    mean, low, high = cluster_bootstrap(correct_a - correct_b, programs)    # a paired difference
    smallest = detectable_difference(correct_a - correct_b, programs)       # what this test set can resolve
    detectable_with_seeds(differences_by_seed, programs, seeds=12)          # ... and would more seeds help?
    verdict(over_seeds, over_programs)   # 'supported' only if every interval of the difference is above 0
    paired_difference(a_minus_b_per_item, programs, a_minus_b_per_seed)   # all of it, for one claim
    cluster_bootstrap(correct, programs, strata=families)   # programs drawn within each family
    usable_strata(programs, families)        # the families, or None where one holds a single program

Test items are not independent when they share a source: the notes of one GM program, the phrases
of one piano preset. An interval that treats 2,000 notes of 16 programs as 2,000 draws is far too
narrow, because a method that suits one instrument suits all its notes. So the bootstrap here
resamples whole clusters (programs, presets) with replacement, and the detectable difference is
computed from the spread between cluster means: the number of clusters sets the precision, not the
number of items.

Where the design fixes a stratum and samples clusters within it — k folds over programs test the
same share of every instrument family, and a mean over families (mAP) weighs each family by
design — pass ``strata`` (one id per item, each cluster inside one stratum, at least 2 clusters a
stratum): clusters are then resampled within their stratum, and the spread is that of clusters
about their stratum's mean. The differences between strata are part of what is measured, not
noise of which clusters were drawn, so the unstratified interval is wider than the design's.

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


def _stratum_members(clusters, strata, count: int) -> list[np.ndarray]:
    """-> the clusters of each stratum (indices into the first-seen cluster order of
    ``_cluster_means``); one stratum of all ``count`` clusters when ``strata`` is None."""
    if strata is None:
        return [np.arange(count)]
    clusters, strata = np.asarray(clusters), np.asarray(strata)
    if strata.shape != clusters.shape:
        raise ValueError(f"strata must hold one id per value: {strata.shape} ids for {clusters.shape} values")
    _, cluster_index = np.unique(clusters, return_inverse=True)
    _, stratum_index = np.unique(strata, return_inverse=True)
    stratum_of = np.full(count, -1)
    stratum_of[cluster_index] = stratum_index
    if (stratum_of[cluster_index] != stratum_index).any():
        raise ValueError("every cluster must lie inside one stratum: a cluster's items have different strata")
    members = [np.flatnonzero(stratum_of == h) for h in range(stratum_index.max() + 1)]
    if min(m.size for m in members) < 2:
        raise ValueError("every stratum needs at least 2 clusters: one cluster shows no spread within its stratum")
    return members


def usable_strata(clusters, strata):
    """``strata`` where every stratum holds at least 2 clusters (what ``strata=`` needs), else None:
    a design that left one cluster in some stratum (a subset of its folds) is resampled unstratified."""
    clusters, strata = np.asarray(clusters), np.asarray(strata)
    if strata.shape != clusters.shape:
        raise ValueError(f"strata must hold one id per value: {strata.shape} ids for {clusters.shape} values")
    pairs = np.unique(np.stack([np.unique(strata, return_inverse=True)[1],
                                np.unique(clusters, return_inverse=True)[1]]), axis=1)  # (stratum, cluster) pairs
    return strata if np.bincount(pairs[0]).min() >= 2 else None


def _within_strata(residuals: np.ndarray, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Clusters' ``residuals`` (weight x (cluster mean - overall mean), over the last axis) ->
    (each about its stratum's mean, each cluster's n / (n - 1) correction for its stratum's n): the
    cluster-robust variance of a ratio-of-sums mean is sum(correction x centred ** 2)."""
    centred = np.array(residuals, dtype=np.float64)
    correction = np.empty(centred.shape[-1])
    for m in members:
        centred[..., m] -= centred[..., m].mean(axis=-1, keepdims=True)
        correction[m] = m.size / (m.size - 1)
    return centred, correction


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
                      seed: int = 0, strata=None) -> tuple[float, float, float]:
    """The item mean of ``values`` and its percentile-bootstrap interval, resampling whole
    ``clusters`` with replacement (each resample keeps the number of clusters; its mean is the item
    mean of the drawn clusters) -> (mean, low, high). Given ``strata``, each stratum's n clusters are
    resampled within it, n - 1 at a time weighed n / (n - 1), so that the resamples' variance is the
    unbiased one even for strata of 2 clusters."""
    level = _level(level)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an int >= 100, got {resamples!r}")
    sums, counts = _cluster_means(values, clusters)
    mean = float(sums.sum() / counts.sum())
    if sums.size < 2:
        return mean, math.nan, math.nan  # one cluster: no spread between clusters to resample
    rng = np.random.default_rng(seed)
    if strata is None:
        drawn = rng.integers(0, sums.size, size=(resamples, sums.size))
        means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    else:
        # Drawing n of a stratum's n clusters gives (n - 1) / n of the unbiased variance (half, with 2):
        # draw n - 1 and weigh them n / (n - 1) instead (Rao & Wu's rescaling bootstrap, 1988).
        drawn_sums, drawn_counts = np.zeros(resamples), np.zeros(resamples)
        for m in _stratum_members(clusters, strata, sums.size):
            drawn = m[rng.integers(0, m.size, size=(resamples, m.size - 1))]
            drawn_sums += sums[drawn].sum(axis=1) * m.size / (m.size - 1)
            drawn_counts += counts[drawn].sum(axis=1) * m.size / (m.size - 1)
        means = drawn_sums / drawn_counts
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return mean, float(low), float(high)


def detectable_difference(differences, clusters, *, level: float = LEVEL, power: float = 0.8,
                          strata=None) -> float:
    """The smallest true mean difference between two methods that a two-sided test at ``level``
    detects with probability ``power``, on this test set.

    ``differences``: per item, method A's value minus method B's, from a pilot run. (Given one
    method's values instead, multiply the result by sqrt(2) for two methods that err independently.)
    The standard error is that of the item mean over clusters, estimated from the spread of the
    cluster means; the result is (z_level + z_power) x standard error. Size a test set so that this
    is at most half the difference the experiment asks about. With ``strata``, the spread is that of
    the cluster means about their stratum's (the design's own noise; see the module's note)."""
    level = _level(level)
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    sums, counts = _cluster_means(differences, clusters)
    if sums.size < 2:
        raise ValueError("at least 2 clusters are needed to estimate the spread between them")
    members = _stratum_members(clusters, strata, sums.size)
    means = sums / counts
    weights = counts / counts.sum()
    centre = float((weights * means).sum())
    # The variance of a ratio-of-sums mean over clusters (the usual cluster-robust estimate).
    centred, correction = _within_strata(weights * (means - centre), members)
    variance = float((correction * centred ** 2).sum())
    z = NormalDist().inv_cdf(0.5 + level / 2) + NormalDist().inv_cdf(power)
    return z * math.sqrt(variance)


def detectable_with_seeds(differences, clusters, seeds: int, *, level: float = LEVEL, power: float = 0.8,
                          strata=None) -> float:
    """``detectable_difference`` projected to ``seeds`` training seeds: would more seeds sharpen the test?

    ``differences``: (S >= 2, N), per training seed (seed s of A against seed s of B) and test item,
    A's value minus B's. The spread between the clusters' seed-averaged means holds the clusters' own
    spread, which no number of seeds shrinks, and the seeds' noise: how differently the seeds rank
    the clusters (a seed that shifts every cluster alike changes the mean, not the spread, and is left
    out), over S. The projection keeps the first and puts ``seeds`` in place of S in the second; the
    seeds' share is capped at the whole spread, so with ``seeds`` == S it is ``detectable_difference``
    of the seed-averaged differences (``strata`` as there). Only the over-items interval is projected: the t-interval over
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
    members = _stratum_members(clusters, strata, counts.size)
    means = np.stack([sums / counts for sums, _ in per_seed])  # (S, clusters)
    weights = counts / counts.sum()
    # each seed's shift taken out (and each stratum's: only a cluster's place within it is spread)
    centred, correction = _within_strata(weights * (means - (weights * means).sum(axis=1, keepdims=True)), members)
    total = float((correction * centred.mean(axis=0) ** 2).sum())
    noise = min(float((correction * centred.var(axis=0, ddof=1)).sum()) / len(table), total)
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


def paired_difference(item_differences, clusters, seed_differences, *, seed: int = 0, strata=None) -> dict:
    """One claim "A is better than B", from A - B per test item (each item's score averaged over
    seeds; ``clusters`` as for ``cluster_bootstrap``) and per training seed (seed s of A against seed
    s of B: each seed's mean score) -> {"difference": (mean, low, high) over items, "difference_over_
    seeds": (mean, low, high) over seeds (None bounds for one seed; all None for no seed in common), "detectable": the smallest true
    difference the items detect, "verdict": ``verdict`` of both}; ``strata`` as for ``cluster_bootstrap``."""
    over_items = cluster_bootstrap(item_differences, clusters, seed=seed, strata=strata)
    # no seed in common (A's seeds 0-1 against B's seed 2): nothing to say over seeds
    over_seeds = t_interval(seed_differences) if len(seed_differences) else (math.nan,) * 3
    return {"difference": list(over_items),
            "difference_over_seeds": [None if math.isnan(v) else v for v in over_seeds],  # JSON has no NaN
            "detectable": detectable_difference(item_differences, clusters, strata=strata),
            "verdict": verdict(over_items, over_seeds)}
