"""Models that ship inside the package.

``piano_wavenet()``: a score-conditioned WaveNet (20 layers in 2 cycles, 64 / 128 / 128 channels,
16 kHz, 256 mu-law levels, reading a piano roll of ``fastwave.corpora.score`` and each key's onset
envelope every 64 samples) trained on the piano corpus (``fastwave corpus piano``) by
``benchmarks/experiments/piano_model.py``: one run's moving average of the weights at update 4,500
(stage 17; docs/piano_model.md), its record ``benchmarks/results/piano_model_audio.json``.
``piano_cond`` draws the scores it plays:

    model = fastwave.pretrained.piano_wavenet()
    tokens = fastwave.generate(model, 64000, batch=2, cond=fastwave.pretrained.piano_cond(64000, [0, 1]))
    audio = model.tokens_to_audio(tokens)  # (2, 64000) float32: mu-law decoded, then de-emphasised

It is what ``fastwave generate`` plays when given no model, on the score of ``--seed``.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ._checks import MissingFileError

PIANO_WAVENET = os.path.join(os.path.dirname(__file__), "assets", "piano_wavenet.safetensors")
PIANO_CHANNELS = 144  # the shipped model's local channels: the roll and its onset envelope (SCORE_CHANNELS)


def piano_wavenet(map_location="cpu"):
    """The shipped piano WaveNet, in eval mode on ``map_location``."""
    from .models.checkpoint import load_model

    if not os.path.isfile(PIANO_WAVENET):
        raise MissingFileError(2, "this install has no shipped piano model (train it with "
                                  "benchmarks/experiments/piano_model.py)", PIANO_WAVENET)
    return load_model(PIANO_WAVENET, map_location=map_location).eval()


def piano_cond(samples: int, seeds, sample_rate: int = 16000, channels: int | None = None) -> dict:
    """Random piano scores (fastwave.corpora.score.random_score), one per seed, covering ``samples``
    positions (prompt included) -> {"local_cond": (len(seeds), channels, frames) float32}, the
    ``cond`` of fastwave.generate for a piano-score WaveNet of ``channels`` local channels
    (fastwave.corpora.score.score_features: the roll, or the roll and its onset envelope; None: the
    shipped model's, ``PIANO_CHANNELS``)."""
    from .corpora.score import piano_roll, random_score, score_features

    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    seeds = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one score")
    seconds = samples / sample_rate
    rolls = np.stack([piano_roll(random_score(seconds, seed), int(samples), sample_rate) for seed in seeds])
    return {"local_cond": torch.from_numpy(score_features(rolls, PIANO_CHANNELS if channels is None else channels,
                                                     sample_rate=sample_rate))}
