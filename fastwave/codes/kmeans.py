"""Batched k-means in torch, for building code dictionaries from autoencoder bottleneck vectors.

    result = kmeans(points, k=1024, seed=0)     # points: (N, D) float tensor or numpy array
    result.centroids  # (K, D) float32, on the points' device
    result.labels     # (N,) int64, nearest centroid of each point

Choices:
* Everything runs in float32 on the points' device (CPU or CUDA); the input is never modified.
* Initialisation is k-means++ (Arthur & Vassilvitskii 2007) on a uniform random subsample of at
  most ``init_points`` points (but at least k), so its cost is bounded on long recordings.
* All randomness comes from one CPU ``torch.Generator`` seeded with ``seed``: the same points and
  seed give identical results on CPU (on CUDA, index_add_'s atomics may change the last bits).
* Lloyd iterations compute distances as ||x||^2 - 2 x.c^T + ||c||^2 (one matmul) in row chunks so
  a chunk's (rows, K) matrix and (rows, D) temporaries stay near 32M floats; the distance to the
  chosen centroid is then recomputed exactly, so the inertia has no cancellation error (duplicates
  give exactly 0). Centroid sums are accumulated in float64 (index_add_, no loop over clusters).
* An empty cluster is re-seeded with a point that is currently farthest from its centroid
  (distinct points for distinct clusters, in descending distance order), so codes are not wasted.
  A returned cluster is empty only when the data has fewer than k distinct points (re-seeding
  cannot help then) or when ``iterations`` ran out just after a re-seed.
* Iteration stops when the inertia changes by at most ``tolerance`` (relative) or after
  ``iterations`` updates; the returned labels and inertia belong to the returned centroids.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .._checks import as_tensor, check_int_arg

_CHUNK_FLOATS = 2 ** 25  # ~32M floats (128 MB) per chunk of rows: (rows, K) distances + (rows, D)
_SUM_FLOATS = 2 ** 22    # float64 copies of at most ~4M values at a time for the centroid sums


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # (K, D) float32 on the points' device
    labels: torch.Tensor     # (N,) int64: index of each point's nearest centroid
    inertia: float           # sum of squared distances of the points to their centroids
    iterations: int          # Lloyd iterations (update + assignment) run
    converged: bool


def _check_points(points, name: str = "points") -> torch.Tensor:
    """(N, D) finite float tensor, non-empty -> float32 (a new tensor if converted)."""
    x = as_tensor(points, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): k-means needs points with D >= 1")
    x = x.detach().to(torch.float32)  # no autograd graph; a new tensor only if converted
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or inf (or values too large for float32)")
    return x


def _check_k(k, n: int) -> int:
    k = check_int_arg(k, "k")
    if k > n:
        raise ValueError(f"k={k} codes but only {n} points: k-means needs at least k points "
                         "(use fewer codes or more audio)")
    return k


def _chunk_rows(chunk_size, k: int, dim: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_FLOATS // (k + dim))
    return check_int_arg(chunk_size, "chunk_size")


def _assign(x: torch.Tensor, c: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    dist = torch.empty(len(x), dtype=torch.float32, device=x.device)
    c_sq = (c * c).sum(1)
    for start in range(0, len(x), rows):
        xs = x[start:start + rows]
        d = torch.addmm(c_sq, xs, c.T, alpha=-2).add_((xs * xs).sum(1, keepdim=True))  # (rows, K)
        lab = d.argmin(1)  # lowest index on ties
        labels[start:start + rows] = lab
        dist[start:start + rows] = (xs - c[lab]).pow_(2).sum(1)  # exact, unlike the expansion
    return labels, dist


def _means(x: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster point counts and means; sums in float64 so that big clusters keep their precision
    (and a cluster of identical points has exactly that point as its mean)."""
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    rows = max(1, _SUM_FLOATS // x.shape[1])
    for start in range(0, len(x), rows):
        sums.index_add_(0, labels[start:start + rows], x[start:start + rows].double())
    counts = torch.bincount(labels, minlength=k)
    return counts, (sums / counts.clamp(min=1).unsqueeze(1)).float()


def nearest_centroid(points, centroids, chunk_size=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (N,) int64 of each point's nearest centroid (lowest index on ties) and the squared
    distance (N,) float32 to it; rows are processed ``chunk_size`` at a time."""
    x, c = _check_points(points), _check_points(centroids, "centroids")
    if x.shape[1] != c.shape[1] or x.device != c.device:
        raise ValueError(f"points {tuple(x.shape)} on {x.device} and centroids {tuple(c.shape)} on "
                         f"{c.device} must have the same D and device")
    return _assign(x, c, _chunk_rows(chunk_size, len(c), c.shape[1]))


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    n = len(x)
    chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
    idx = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[idx]]
    chosen[idx] = True
    min_d = (x - x[idx]).pow_(2).sum(1)  # squared distance to the nearest chosen centroid
    for _ in range(1, k):
        cum = min_d.double().cumsum(0)
        u = float(torch.rand((), generator=generator, dtype=torch.float64))  # drawn on CPU
        if cum[-1] > 0:  # draw with probability proportional to min_d (chosen points have 0)
            idx = int(torch.searchsorted(cum, u * cum[-1], right=True).clamp_(max=n - 1))
        else:  # fewer distinct points than k: any point not chosen yet
            free = (~chosen).nonzero().squeeze(1)
            idx = int(free[min(int(u * len(free)), len(free) - 1)])
        centroids.append(x[idx])
        chosen[idx] = True
        torch.minimum(min_d, (x - x[idx]).pow_(2).sum(1), out=min_d)
    return torch.stack(centroids)


def kmeans_plus_plus(points, k, generator) -> torch.Tensor:
    """k-means++ seeding: k distinct rows of ``points`` as (k, D) float32 centroids."""
    x = _check_points(points)
    k = _check_k(k, len(x))
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError(f"generator must be a CPU torch.Generator, got {generator!r}")
    return _kmeans_pp(x, k, generator)


def kmeans(points, k, *, iterations=100, tolerance=1e-4, seed=0, init_points=100_000,
           chunk_size=None, progress=False) -> KMeansResult:
    """Cluster (N, D) ``points`` into ``k`` centroids; see the module docstring for the method."""
    x = _check_points(points)
    k = _check_k(k, len(x))
    iterations = check_int_arg(iterations, "iterations", minimum=0)
    init_points = check_int_arg(init_points, "init_points")
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    rows = _chunk_rows(chunk_size, k, x.shape[1])
    gen = torch.Generator().manual_seed(check_int_arg(seed, "seed", minimum=0))

    sample = x
    if len(x) > max(init_points, k):  # bound the O(N*D*K) seeding cost on big data
        sample = x[torch.randperm(len(x), generator=gen)[:max(init_points, k)].to(x.device)]
    centroids = _kmeans_pp(sample, k, gen)
    labels, dist = _assign(x, centroids, rows)
    inertia = float(dist.sum(dtype=torch.float64))
    converged, done = False, 0
    with tqdm(total=iterations, desc="k-means", disable=not progress) as bar:
        for done in range(1, iterations + 1):
            counts, centroids = _means(x, labels, k)
            empty = (counts == 0).nonzero().squeeze(1)
            if len(empty):  # re-seed with the points worst served by their current centroid
                centroids[empty] = x[dist.topk(len(empty)).indices]
            labels, dist = _assign(x, centroids, rows)
            new_inertia = float(dist.sum(dtype=torch.float64))
            # with a cluster left empty, converge only once re-seeding was tried and did not help
            # (fewer distinct points than k); otherwise the next update re-seeds it
            has_empty = bool((torch.bincount(labels, minlength=k) == 0).any())
            settled = abs(inertia - new_inertia) <= tolerance * inertia  # relative change (0 -> 0 too)
            converged = settled and (len(empty) > 0 or not has_empty)
            inertia = new_inertia
            bar.set_postfix(inertia=f"{inertia:.6g}")
            bar.update(1)
            if converged:
                break
    return KMeansResult(centroids, labels, inertia, done, converged)
