"""Residual vector quantisation by k-means (the RVQ of SoundStream and EnCodec): a patch's bottleneck
vector as Q codes, each from its own dictionary, fitted on what the stages before it left unexplained.

    codebooks = fit_residual_codebooks(latents, first=tokenizer.centroids, stages=2)   # [(K, D)] * Q
    codes, quantised = residual_quantise(latents, codebooks)    # (N, Q) int64, (N, D) float32

latents: (N, D) bottleneck vectors (``CodeTokenizer.latents``). Stage 1 is the tokenizer's own
dictionary, so a patch's first code is its ``CodeTokenizer`` code; each further stage quantises the
remainder, and the sum of a patch's Q centroids is its quantised vector. Q dictionaries of K codes
describe a patch as finely as one dictionary of K ** Q would, but each of their centroids is fitted
on N / K points, not N / K ** Q: a finer tokenizer without a dictionary too large for the data (a
single dictionary of 1,024 codes did worse than 64 on B's 1,200 labelled notes).

    tokens = flatten_stages(codes, codes_per_stage=64)   # (N * Q,) in [0, Q * 64): a CodeLM's input

A language model reads a clip's residual codes flattened patch by patch (AudioLM's coarse acoustic
tokens): a patch's stage-s code c becomes token s * K + c, so each token says which stage it is and
the model predicts a patch's finer codes from its coarser ones, then the next patch's first.
"""
from __future__ import annotations

import torch

from .._checks import check_int_arg
from .kmeans import kmeans, nearest_centroid


def fit_residual_codebooks(latents, *, first, stages: int, codes: int | None = None, iterations: int = 100,
                           seed: int = 0) -> list[torch.Tensor]:
    """``first`` (K, D) as stage 1, then ``stages`` - 1 k-means dictionaries of ``codes`` (default K)
    centroids, stage s fitted (seed ``seed`` + s) on the latents' remainders after stages 1 .. s - 1
    -> the ``stages`` dictionaries, float32 on the latents' device."""
    latents = _check_latents(latents)
    first = torch.as_tensor(first).float().to(latents.device)
    if first.ndim != 2 or first.shape[1] != latents.shape[1] or len(first) < 2:
        raise ValueError(f"first must be (K >= 2, D = {latents.shape[1]}) centroids, got {tuple(first.shape)}")
    stages = check_int_arg(stages, "stages")
    codes = len(first) if codes is None else check_int_arg(codes, "codes", 2)
    codebooks = [first]
    remainder = latents - first[nearest_centroid(latents, first)[0]]
    for stage in range(1, stages):
        result = kmeans(remainder, codes, iterations=iterations, seed=seed + stage)
        codebooks.append(result.centroids)
        remainder = remainder - result.centroids[result.labels]
    return codebooks


def residual_quantise(latents, codebooks: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Each latent through the dictionaries in turn (the nearest centroid to what is left) -> (codes
    (N, Q) int64, quantised vectors (N, D) float32: the sum of each row's Q centroids), on the CPU."""
    latents = _check_latents(latents)
    if not codebooks or any(book.ndim != 2 or book.shape[1] != latents.shape[1] for book in codebooks):
        raise ValueError(f"codebooks must be a non-empty list of (K, D = {latents.shape[1]}) centroids, got shapes "
                         f"{[tuple(book.shape) for book in codebooks]}")
    remainder, quantised, codes = latents, torch.zeros_like(latents), []
    for book in codebooks:
        book = book.float().to(latents.device)
        index, _ = nearest_centroid(remainder, book)
        codes.append(index)
        quantised = quantised + book[index]
        remainder = remainder - book[index]
    return torch.stack(codes, dim=1).cpu(), quantised.cpu()


def flatten_stages(codes, codes_per_stage: int) -> torch.Tensor:
    """codes (N, Q) ints in [0, codes_per_stage) (``residual_quantise``'s) -> (N * Q,) int64 tokens in
    [0, Q * codes_per_stage): row by row, stage s's code c as s * codes_per_stage + c."""
    codes_per_stage = check_int_arg(codes_per_stage, "codes_per_stage", 2)
    codes = torch.as_tensor(codes)
    if codes.ndim != 2 or codes.shape[1] == 0 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"codes must be (N, Q >= 1) integers, got {tuple(codes.shape)} {codes.dtype}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codes_per_stage):
        raise ValueError(f"codes must be in [0, {codes_per_stage}), got [{int(codes.min())}, {int(codes.max())}]")
    offsets = torch.arange(codes.shape[1], dtype=torch.int64) * codes_per_stage
    return (codes.long() + offsets).reshape(-1)


def _check_latents(latents) -> torch.Tensor:
    latents = torch.as_tensor(latents).float()
    if latents.ndim != 2 or len(latents) == 0 or latents.shape[1] == 0:
        raise ValueError(f"latents must be (N >= 1, D >= 1) vectors, got shape {tuple(latents.shape)}")
    if not bool(torch.isfinite(latents).all()):
        raise ValueError("latents hold NaN or inf")
    return latents
