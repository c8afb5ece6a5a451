"""Batched k-means: planted clusters, empty-cluster re-seeding, duplicates, determinism, exactness of
the returned labels/inertia, chunking, k-means++ seeding and argument checks."""
import numpy as np
import pytest
import torch

import fastwave.codes.kmeans as km
from fastwave.codes.kmeans import kmeans, kmeans_plus_plus, nearest_centroid


def _blobs(n_centers=8, per=200, dim=16, spread=10.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_centers, dim, generator=g) * spread
    truth = torch.arange(n_centers).repeat_interleave(per)
    return centers[truth] + torch.randn(n_centers * per, dim, generator=g), truth, centers


def _check_consistent(x, res):
    """labels are nearest centroids (float64 check), inertia is their float64 sum of squares."""
    d = torch.cdist(x.double(), res.centroids.double()) ** 2
    own = d.gather(1, res.labels[:, None]).squeeze(1)
    assert torch.all(own <= d.min(1).values + 1e-6 * (1 + d.min(1).values))
    assert res.inertia == pytest.approx(float(own.sum()), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_planted_clusters(seed):
    x, truth, centers = _blobs(seed=seed)
    res = kmeans(x, 8, seed=seed)
    assert res.converged and res.centroids.shape == (8, 16) and res.centroids.dtype == torch.float32
    assert res.labels.dtype == torch.int64 and res.labels.shape == (1600,)
    # one-to-one: every found cluster is exactly one planted cluster (purity 1, a permutation)
    pairs = torch.unique(torch.stack([res.labels, truth], 1), dim=0)
    assert len(pairs) == 8 and len(pairs[:, 0].unique()) == 8 and len(pairs[:, 1].unique()) == 8
    match = dict(pairs.tolist())
    for found, planted in match.items():
        assert torch.dist(res.centroids[found], centers[planted]) < 0.5
    _check_consistent(x, res)


@pytest.mark.parametrize("k, n", [(8, 500), (256, 2000)])
def test_every_cluster_used(k, n):
    x = torch.randn(n, 16, generator=torch.Generator().manual_seed(k))
    res = kmeans(x, k, seed=3)
    assert torch.bincount(res.labels, minlength=k).min() > 0
    assert res.converged and 1 <= res.iterations <= 100
    _check_consistent(x, res)


def test_empty_clusters_are_reseeded(monkeypatch):
    x, _, _ = _blobs(n_centers=3, per=50, dim=4)
    # a bad seeding: cluster 1 duplicates cluster 0 (loses all ties) and cluster 2 is far from all data
    bad = torch.stack([x[0], x[0], torch.full((4,), 1e3)])
    monkeypatch.setattr(km, "_kmeans_pp", lambda points, k, generator: bad.clone())
    labels, dist = nearest_centroid(x, bad)
    assert torch.bincount(labels, minlength=3).tolist() == [150, 0, 0]
    one = kmeans(x, 3, iterations=1)
    # the two points farthest from centroid 0 fill the two empty clusters, farthest first
    far = dist.topk(2).indices
    assert torch.equal(one.centroids[1], x[far[0]]) and torch.equal(one.centroids[2], x[far[1]])
    res = kmeans(x, 3)
    assert torch.bincount(res.labels, minlength=3).min() > 0 and res.converged
    _check_consistent(x, res)


def test_fewer_distinct_points_than_k():
    distinct = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    res = kmeans(distinct.repeat(10, 1), 10)
    assert res.inertia == 0.0 and res.converged
    assert torch.bincount(res.labels, minlength=10).tolist() == [10] * 10
    assert torch.equal(res.centroids[res.labels[:10]], distinct)
    # 5 distinct points, 10 codes: inertia 0 and converged; 5 codes necessarily stay empty
    res = kmeans(distinct[:5].repeat(10, 1), 10)
    assert res.inertia == 0.0 and res.converged and len(res.labels.unique()) == 5
    # k-means++ takes every distinct point before any duplicate
    first = kmeans_plus_plus(distinct[:5].repeat(10, 1), 10, torch.Generator().manual_seed(1))[:5]
    assert torch.equal(torch.sort(first, 0).values, torch.sort(distinct[:5], 0).values)


def test_deterministic_and_numpy_input():
    x, _, _ = _blobs(n_centers=5, per=60, dim=8, spread=2.0)
    a, b = kmeans(x, 16, seed=7), kmeans(x.numpy().astype(np.float64), 16, seed=7)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.labels, b.labels)
    assert (a.inertia, a.iterations, a.converged) == (b.inertia, b.iterations, b.converged)


def test_subsampled_init_and_zero_iterations():
    x, truth, _ = _blobs(per=100)
    for init_points in (4, 50):  # fewer than k: the seeding still uses k points
        res = kmeans(x, 8, init_points=init_points, iterations=300, progress=True)
        assert torch.bincount(res.labels, minlength=8).min() > 0
        _check_consistent(x, res)
    res = kmeans(x, 8, iterations=0)
    assert res.iterations == 0 and not res.converged
    _check_consistent(x, res)


def test_nearest_centroid_chunking():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(103, 8, generator=g), torch.randn(11, 8, generator=g)
    labels, dist = nearest_centroid(x, c)
    brute = torch.cdist(x.double(), c.double())
    assert torch.equal(labels, brute.argmin(1)) and labels.dtype == torch.int64
    assert torch.allclose(dist.double(), brute.min(1).values ** 2, rtol=1e-5) and dist.dtype == torch.float32
    for chunk in (1, 7, 103, 1000):
        l2, d2 = nearest_centroid(x, c, chunk_size=chunk)
        assert torch.equal(l2, labels) and torch.allclose(d2, dist)
    # ties go to the lowest index
    assert nearest_centroid(c[:1], torch.cat([c[3:4], c[:1], c[:1]]))[0].tolist() == [1]


def test_kmeans_plus_plus_picks_distinct_rows():
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
    c = kmeans_plus_plus(x, 40, torch.Generator().manual_seed(5))
    assert c.shape == (40, 6) and c.dtype == torch.float32
    rows = (c[:, None] == x[None]).all(-1).nonzero()  # which point each centroid is
    assert len(rows) == 40 and len(rows[:, 1].unique()) == 40
    assert torch.equal(c, kmeans_plus_plus(x, 40, torch.Generator().manual_seed(5)))
    with pytest.raises(TypeError, match="generator"):
        kmeans_plus_plus(x, 4, 0)


def test_input_not_modified():
    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    before, arr = x.clone(), x.double().numpy()
    arr_before = arr.copy()
    kmeans(x, 5)
    kmeans(arr, 5)
    nearest_centroid(x, x[:3])
    assert torch.equal(x, before) and np.array_equal(arr, arr_before)


@pytest.mark.parametrize("points, k, exc, match", [
    (torch.randn(300, 4), 1024, ValueError, r"k=1024 codes but only 300 points"),
    (torch.randn(30, 4), 0, ValueError, "k must be an int >= 1"),
    (torch.randn(30, 4), True, ValueError, "k must be an int"),
    (torch.randn(30, 4), 2.0, ValueError, "k must be an int"),
    (torch.randn(30), 2, ValueError, r"points must have shape \(N, D\)"),
    (torch.randint(0, 5, (30, 4)), 2, TypeError, "points must be a floating-point"),
    (torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]), 1, ValueError, "points holds NaN or inf"),
    (torch.tensor([[0.0, 1.0], [float("inf"), 2.0]]), 1, ValueError, "points holds NaN or inf"),
    (torch.empty(0, 4), 1, ValueError, "points is empty"),
    ("points", 1, TypeError, "points must be a torch.Tensor"),
])
def test_errors(points, k, exc, match):
    with pytest.raises(exc, match=match):
        kmeans(points, k)


def test_option_errors():
    x = torch.randn(20, 3)
    for kwargs in ({"iterations": -1}, {"tolerance": -1.0}, {"init_points": 0}, {"chunk_size": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            kmeans(x, 2, **kwargs)
    with pytest.raises(ValueError, match="same D"):
        nearest_centroid(x, torch.randn(2, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, truth, _ = _blobs()
    cpu, gpu = kmeans(x, 8, seed=1), kmeans(x.cuda(), 8, seed=1)
    assert gpu.centroids.is_cuda and gpu.labels.is_cuda
    assert torch.equal(gpu.labels.cpu(), cpu.labels)
    assert torch.allclose(gpu.centroids.cpu(), cpu.centroids, atol=1e-4)
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-4)
