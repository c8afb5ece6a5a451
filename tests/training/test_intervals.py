"""Intervals for comparing models: the t-interval against its formula, the cluster bootstrap's
coverage where items within a cluster move together (where an item bootstrap is far too narrow),
the stratified bootstrap's where the design fixes the strata (where the unstratified one is too wide),
and the detectable difference against its closed form and a simulated test's power."""
import math
from statistics import NormalDist

import numpy as np
import pytest

from fastwave.training.intervals import (cluster_bootstrap, detectable_difference, detectable_with_seeds,
                                         paired_difference, t_interval, usable_strata, verdict)


def test_t_interval_is_the_student_t_formula():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 dof) x sd 1 / sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert all(math.isnan(v) for v in t_interval([0.5])[1:])


def clustered(rng, clusters=16, per=60, spread=0.25, mean=0.5):
    """Accuracies of items whose cluster shifts them together: per-cluster rates around ``mean``."""
    rates = np.clip(mean + spread * rng.standard_normal(clusters), 0, 1)
    correct = (rng.random((clusters, per)) < rates[:, None]).astype(float)
    return correct.ravel(), np.repeat(np.arange(clusters), per), rates


def test_the_cluster_bootstrap_covers_where_an_item_bootstrap_does_not():
    rng = np.random.default_rng(0)
    covered = {"cluster": 0, "item": 0}
    trials = 150
    for trial in range(trials):
        values, ids, _ = clustered(rng)
        truth = 0.5  # the mean of the cluster rates' distribution (clipping is symmetric about it)
        for kind, clusters in (("cluster", ids), ("item", np.arange(values.size))):
            _, low, high = cluster_bootstrap(values, clusters, resamples=400, seed=trial)
            covered[kind] += low <= truth <= high
    assert covered["cluster"] / trials > 0.85, covered
    assert covered["item"] / trials < 0.6, covered  # 960 'independent' items: an interval 4x too narrow


def test_a_bootstrap_of_independent_items_matches_the_normal_interval():
    rng = np.random.default_rng(1)
    values = rng.normal(0.3, 1.0, size=2000)
    mean, low, high = cluster_bootstrap(values, np.arange(values.size), resamples=4000)
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert mean == pytest.approx(values.mean())
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)


def test_the_detectable_difference_is_its_closed_form_and_has_its_power():
    rng = np.random.default_rng(2)
    differences, ids, rates = clustered(rng, clusters=32, per=50, spread=0.2, mean=0.0)
    cluster_means = differences.reshape(32, 50).mean(1)
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    expected = z * cluster_means.std(ddof=1) / math.sqrt(32)  # equal clusters: the plain formula
    smallest = detectable_difference(differences, ids)
    assert smallest == pytest.approx(expected, rel=1e-9)
    assert detectable_difference(differences[:800], ids[:800]) > smallest  # fewer clusters, less precision
    # A true difference of that size, tested with the same design, is found about 80% of the time.
    sd = cluster_means.std(ddof=1)
    found = 0
    for _ in range(2000):
        sample = smallest + sd * rng.standard_normal(32)
        found += abs(sample.mean()) / (sample.std(ddof=1) / math.sqrt(32)) > 1.96
    assert 0.72 < found / 2000 < 0.88


def test_more_seeds_shrink_only_the_seeds_share_of_the_detectable_difference():
    rng = np.random.default_rng(4)
    ids = np.repeat(np.arange(400), 5)
    # Every cluster's true difference the same: the spread between clusters is the seeds' noise alone,
    # so 4x the seeds halve what the test detects.
    noisy = 0.1 + rng.standard_normal((3, 400)).repeat(5, axis=1)
    assert detectable_with_seeds(noisy, ids, 3) == pytest.approx(detectable_difference(noisy.mean(0), ids), rel=1e-9)
    assert 0.4 < detectable_with_seeds(noisy, ids, 12) / detectable_with_seeds(noisy, ids, 3) < 0.6
    # Seeds that agree: the spread is the clusters' own, and no number of seeds shrinks it; nor does
    # a seed that shifts every cluster alike (it moves the mean, not the spread between clusters).
    agreeing = np.tile(rng.standard_normal(400).repeat(5), (3, 1))
    assert detectable_with_seeds(agreeing, ids, 100) == pytest.approx(detectable_with_seeds(agreeing, ids, 3))
    shifted = agreeing + np.array([[-0.5], [0.0], [0.7]])
    assert detectable_with_seeds(shifted, ids, 100) == pytest.approx(detectable_difference(shifted.mean(0), ids))
    # Few clusters and loud seeds: the seeds' share is capped at the spread, so S seeds stay exact.
    few = rng.standard_normal((3, 4)).repeat(5, axis=1)
    assert detectable_with_seeds(few, ids[:20], 3) == pytest.approx(detectable_difference(few.mean(0), ids[:20]))
    with pytest.raises(ValueError, match="seeds >= 2"):
        detectable_with_seeds(noisy[:1], ids, 6)
    with pytest.raises(ValueError, match="seeds must be an int"):
        detectable_with_seeds(noisy, ids, 0)


def stratified(rng, strata=16, per_stratum=8, items=20, between=0.3, within=0.05):
    """Per-item differences of a design that tests ``per_stratum`` clusters of every stratum (families,
    each with its own true mean difference, fixed by the design; the clusters drawn within it) ->
    (values, cluster ids, stratum ids, the true mean over the strata)."""
    family_means = between * np.linspace(-1, 1, strata)
    cluster_means = family_means.repeat(per_stratum) + within * rng.standard_normal(strata * per_stratum)
    values = (cluster_means[:, None] + 0.2 * rng.standard_normal((cluster_means.size, items))).ravel()
    clusters = np.repeat(np.arange(cluster_means.size), items)
    return values, clusters, clusters // per_stratum, float(family_means.mean())


def test_a_stratified_bootstrap_covers_the_design_and_is_narrower_than_an_unstratified_one():
    """Also with strata of 2 clusters, where a plain bootstrap within them would halve the variance."""
    rng = np.random.default_rng(5)
    covered = {"stratified": 0, "unstratified": 0}
    widths = {"stratified": [], "unstratified": []}
    trials = 150
    for trial in range(trials):
        values, clusters, strata, truth = stratified(rng)
        for kind, by in (("stratified", strata), ("unstratified", None)):
            _, low, high = cluster_bootstrap(values, clusters, resamples=400, seed=trial, strata=by)
            covered[kind] += low <= truth <= high
            widths[kind].append(high - low)
    assert 0.88 < covered["stratified"] / trials <= 1.0, covered
    # the strata's own differences are not noise of the draw: unstratified, the interval is about 2.9x wider
    # (the spread of cluster means about 0.07 within a stratum, of the strata's means 0.18)
    assert np.mean(widths["unstratified"]) > 2 * np.mean(widths["stratified"]), widths
    assert covered["unstratified"] == trials
    # Strata of 2 clusters: drawing both of a stratum's clusters would cover about 84% of the time
    # (half the variance); drawing one and weighing it twice covers as asked.
    small = 0
    for trial in range(trials):
        values, clusters, strata, truth = stratified(rng, per_stratum=2)
        _, low, high = cluster_bootstrap(values, clusters, resamples=400, seed=trial, strata=strata)
        small += low <= truth <= high
    assert small / trials > 0.89, small


def test_the_stratified_detectable_difference_is_the_stratified_mean_formula():
    rng = np.random.default_rng(6)
    values, clusters, strata, _ = stratified(rng, strata=4, per_stratum=5, items=10)
    cluster_means = values.reshape(20, 10).mean(1).reshape(4, 5)
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    expected = z * math.sqrt((cluster_means.var(axis=1, ddof=1) / 5).sum() / 4 ** 2)  # equal strata and clusters
    assert detectable_difference(values, clusters, strata=strata) == pytest.approx(expected, rel=1e-9)
    # One stratum is no stratification; and S seeds project to themselves, stratified as well.
    assert detectable_difference(values, clusters, strata=np.zeros(values.size)) == pytest.approx(
        detectable_difference(values, clusters), rel=1e-9)
    one_stratum = cluster_bootstrap(values, clusters, strata=np.zeros(values.size))
    assert one_stratum[0] == cluster_bootstrap(values, clusters)[0]
    assert one_stratum[2] - one_stratum[1] == pytest.approx(np.subtract(*cluster_bootstrap(values, clusters)[2:0:-1]),
                                                            rel=0.1)  # 20 clusters: 19 drawn, weighed 20/19
    by_seed = values + 0.3 * rng.standard_normal((3, 20)).repeat(10, axis=1)
    assert detectable_with_seeds(by_seed, clusters, 3, strata=strata) == pytest.approx(
        detectable_difference(by_seed.mean(0), clusters, strata=strata), rel=1e-9)
    assert detectable_with_seeds(by_seed, clusters, 30, strata=strata) < detectable_with_seeds(
        by_seed, clusters, 3, strata=strata)
    pooled = paired_difference(values, clusters, [0.1, 0.2], strata=strata)
    assert pooled["detectable"] == pytest.approx(expected, rel=1e-9)
    assert pooled["difference"] == pytest.approx(list(cluster_bootstrap(values, clusters, strata=strata)))


def test_strata_are_used_only_where_every_stratum_holds_two_clusters():
    clusters, strata = [0, 0, 1, 2, 3, 3], ["a", "a", "a", "b", "b", "b"]  # a: clusters 0, 1; b: 2, 3
    assert list(usable_strata(clusters, strata)) == strata
    assert usable_strata([0, 0, 1, 2, 2, 2], strata) is None  # b holds cluster 2 alone
    with pytest.raises(ValueError, match="one id per value"):
        usable_strata(clusters, strata[:-1])


@pytest.mark.parametrize("call, message", [
    (lambda: cluster_bootstrap([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 3], strata=[0, 0, 1]), "one id per value"),
    (lambda: cluster_bootstrap([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 2], strata=[0, 1, 1, 1]), "inside one stratum"),
    (lambda: detectable_difference([1.0, 2.0, 3.0], [0, 1, 2], strata=[0, 0, 1]), "at least 2 clusters"),

    (lambda: cluster_bootstrap([1.0, 2.0], [0]), "one id per value"),
    (lambda: cluster_bootstrap([], []), "non-empty"),
    (lambda: cluster_bootstrap([1.0, math.nan], [0, 1]), "non-finite"),
    (lambda: cluster_bootstrap([1.0, 2.0], [0, 1], level=1.5), "level"),
    (lambda: cluster_bootstrap([1.0, 2.0], [0, 1], resamples=10), "resamples"),
    (lambda: detectable_difference([1.0, 2.0], [0, 0]), "at least 2 clusters"),
    (lambda: detectable_difference([1.0, 2.0], [0, 1], power=1.0), "power"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_verdict_needs_every_interval_of_the_difference_on_one_side():
    above, below, across = (0.03, 0.01, 0.05), (-0.03, -0.05, -0.01), (0.03, -0.01, 0.07)
    assert verdict(above) == verdict(above, above) == "supported"
    assert verdict(below, below) == "contradicted"
    # narrow over test items, wide over seeds: the seeds decide nothing, so neither does the claim
    assert verdict(above, across) == verdict(across, below) == "not resolved"
    assert verdict(above, below) == "not resolved"
    assert verdict(above, (0.03, math.nan, math.nan)) == verdict(above, (0.03, None, None)) == "not resolved"
    with pytest.raises(ValueError, match="at least one"):
        verdict()
    with pytest.raises(ValueError, match="mean, low, high"):
        verdict((0.0, 1.0))


def test_a_paired_difference_reports_both_intervals_and_decides_by_both():
    items = np.array([0.05, 0.04, 0.06, 0.05] * 4)
    programs = np.repeat(np.arange(8), 2)
    agreeing = paired_difference(items, programs, [0.05, 0.045, 0.055])
    assert agreeing["verdict"] == "supported" and agreeing["difference"][0] == pytest.approx(0.05)
    assert agreeing["difference_over_seeds"] == pytest.approx(list(t_interval([0.05, 0.045, 0.055])))
    assert agreeing["detectable"] == pytest.approx(detectable_difference(items, programs))
    assert paired_difference(items, programs, [0.15, -0.10, 0.10])["verdict"] == "not resolved"
    one_seed = paired_difference(items, programs, [0.05])
    assert one_seed["difference_over_seeds"][1:] == [None, None] and one_seed["verdict"] == "not resolved"
    assert paired_difference(items, programs, [])["difference_over_seeds"] == [None, None, None]
