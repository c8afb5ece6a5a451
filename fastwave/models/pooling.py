"""Parameter-free pooling over time between the layers of an audio Transformer (Verma & Berger, 2021).

Shapes: x (B, T, W), T frames of W channels. Every function here is differentiable, works for any
float dtype on any device, and never modifies its input.

``average_pool_time`` halves the frame rate: (B, T, W) -> (B, ceil(T / 2), W), the means of frame
pairs (0, 1), (2, 3), ... (an odd last frame is kept as its own mean), like a CNN's pooling.

``wavelet_pool`` keeps the frame rate and instead makes the embedding multi-scale. The channels are
cut into contiguous groups (``wavelet_channel_split``); group i is replaced, at every frame, by the
mean of the non-overlapping block of 2**i frames holding that frame (blocks start at frame 0; a
last, shorter block averages the frames it holds). That mean is the Haar approximation at scale 2**i
(the scaling coefficient, up to a constant), held constant over its block. Group 0 (scale 1) keeps
full time resolution; the last group is the global part, the mean over all T frames at every frame.

Default fractions ``DEFAULT_WAVELET_FRACTIONS = (0.5, 0.25, 0.125, 0.0625, 0.0625)``, and why:
half the channels keep full resolution, so the next layer's attention still sees 25 ms detail; each
coarser scale gets half as many channels as the one above, the dyadic shape of a Haar decomposition
(each coarser level holds half the coefficients of the one below); the coarsest, global scale gets
what is left, so every scale from 50 ms to the whole second has channels of its own. With width 64
that is 32 / 16 / 8 / 4 / 4 channels at blocks of 1, 2, 4, 8 frames and global.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_int_arg

DEFAULT_WAVELET_FRACTIONS = (0.5, 0.25, 0.125, 0.0625, 0.0625)


def check_wavelet_fractions(fractions, name: str = "fractions") -> tuple[float, ...]:
    """Fractions of the channels per scale: >= 2 finite numbers > 0 summing to 1 -> a tuple of floats."""
    if not isinstance(fractions, (list, tuple)):
        raise ValueError(f"{name} must be a list or tuple of numbers, got {type(fractions).__name__}")
    if len(fractions) < 2:
        raise ValueError(f"{name} needs at least 2 scales (full resolution and global), got {list(fractions)}")
    for value in fractions:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{name} must hold finite numbers > 0, got {list(fractions)}")
    if abs(math.fsum(fractions) - 1) > 1e-6:
        raise ValueError(f"{name} must sum to 1, got {list(fractions)} (sum {math.fsum(fractions)!r})")
    return tuple(float(value) for value in fractions)


def wavelet_channel_split(width: int, fractions=DEFAULT_WAVELET_FRACTIONS, *, name: str = "fractions") -> list[int]:
    """Channels per scale, contiguous groups in order: scale i >= 1 gets max(1, round(fractions[i] *
    width)) channels, scale 0 (full resolution) the rest. ValueError when scale 0 would get none."""
    width = check_int_arg(width, "width")
    fractions = check_wavelet_fractions(fractions, name)
    counts = [max(1, round(fraction * width)) for fraction in fractions[1:]]
    first = width - sum(counts)
    if first < 1:
        raise ValueError(f"{name} {list(fractions)} leave no full-resolution channel at width {width} "
                         f"(the coarser scales take {counts}); use fewer scales or a wider model")
    return [first, *counts]


def _check_frames(x, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.dim() != 3 or x.shape[1] < 1:
        raise ValueError(f"{name} must be (B, T, W) with T >= 1, got shape {tuple(x.shape)}")


def block_means(x: torch.Tensor, block: int) -> torch.Tensor:
    """x (B, T, C) -> (B, T, C): each frame replaced by the mean of its block of ``block`` frames
    (blocks start at frame 0; a last, shorter block averages the frames it holds)."""
    batch, length, channels = x.shape
    if block == 1:
        return x
    if block >= length:
        return x.mean(1, keepdim=True).expand(batch, length, channels)
    blocks = -(-length // block)
    # Zero-pad to whole blocks, sum each block, then divide by the frames each block really holds.
    sums = F.pad(x, (0, 0, 0, blocks * block - length)).reshape(batch, blocks, block, channels).sum(2)
    starts = torch.arange(blocks, device=x.device) * block
    sizes = (length - starts).clamp(max=block).to(x.dtype)
    means = sums / sizes[:, None]
    spread = means[:, :, None, :].expand(batch, blocks, block, channels)
    return spread.reshape(batch, blocks * block, channels)[:, :length]


def wavelet_pool(x: torch.Tensor, fractions=DEFAULT_WAVELET_FRACTIONS) -> torch.Tensor:
    """x (B, T, W) -> (B, T, W): channel group i (``wavelet_channel_split(W, fractions)``) averaged over
    blocks of 2**i frames, the last group over all T frames; see the module docstring."""
    _check_frames(x)
    counts = wavelet_channel_split(x.shape[-1], fractions)
    groups = x.split(counts, dim=-1)
    last = len(groups) - 1
    pooled = [block_means(group, 2 ** i) for i, group in enumerate(groups[:last])]
    pooled.append(groups[last].mean(1, keepdim=True).expand_as(groups[last]))
    return torch.cat(pooled, dim=-1)  # a new tensor: x is never written


def average_pool_time(x: torch.Tensor) -> torch.Tensor:
    """x (B, T, W) -> (B, ceil(T / 2), W): means of frame pairs (0, 1), (2, 3), ...; an odd last frame
    is kept as it is (its own mean). T == 1 returns x itself."""
    _check_frames(x)
    batch, length, width = x.shape
    if length == 1:
        return x
    pairs = x[:, :length - length % 2].reshape(batch, length // 2, 2, width).mean(2)
    return torch.cat([pairs, x[:, length - 1:]], dim=1) if length % 2 else pairs
