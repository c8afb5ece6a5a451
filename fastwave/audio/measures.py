"""Measures of what generated audio sounds like, for checking a trained model without listening.

- ``spectral_flatness``: geometric over arithmetic mean of each frame's power spectrum, averaged
  over frames: about 0.002-0.003 for the piano corpus's phrases, 0.56 for white noise (e^-0.577:
  one periodogram of noise is not flat bin by bin), near 0 for a pure tone.
- ``chroma``: the energy of each of the 12 pitch classes per frame (60 Hz - 4 kHz), each frame of
  unit length; ``chroma_agreement`` is the mean cosine of two clips' chroma over the frames where the
  reference is not silent: near 1 when they play the same notes.

Frames are 2,048 samples (128 ms at 16 kHz: a semitone apart is about one bin at 100 Hz) every 512,
from fastwave.audio.stft_magnitude without centring. Audio: (T,) float, T >= 2048.
"""
from __future__ import annotations

import numpy as np

from .spectrogram import stft_magnitude

FRAME, HOP = 2048, 512


def power_frames(audio) -> np.ndarray:
    """(T,) audio -> power spectra (frames, FRAME // 2 + 1) float64 of Hann-windowed frames."""
    power = stft_magnitude(np.asarray(audio, np.float32), n_fft=FRAME, hop_length=HOP, center=False, power=2.0)
    if power.dim() != 2:
        raise ValueError(f"audio must be one channel (T,), got shape {tuple(power.shape[:-2]) + ('T',)}")
    return power.T.double().numpy()


def spectral_flatness(audio) -> float:
    power = power_frames(audio) + 1e-12
    return float(np.mean(np.exp(np.log(power).mean(1)) / power.mean(1)))


def chroma(audio, sample_rate: int = 16000) -> np.ndarray:
    """(T,) audio -> (frames, 12) pitch-class energies (class 0 = C), each frame of unit length."""
    return _chroma_of(power_frames(audio), sample_rate)


def _chroma_of(power: np.ndarray, sample_rate: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(FRAME, 1 / sample_rate)
    keep = (freqs > 60) & (freqs < 4000)
    pitch_class = np.round(12 * np.log2(freqs[keep] / 440.0) + 69).astype(int) % 12
    out = np.stack([power[:, keep][:, pitch_class == c].sum(1) for c in range(12)], axis=1)
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)


def chroma_agreement(audio, reference, sample_rate: int = 16000) -> float:
    """Mean cosine of the chroma of ``audio`` and ``reference`` over the frames where the reference's
    energy is within 40 dB of its loudest frame (the common length of the two)."""
    n = min(len(audio), len(reference))
    reference_power = power_frames(reference[:n])  # once: for its chroma and for its loud frames
    ours, theirs = chroma(audio[:n], sample_rate), _chroma_of(reference_power, sample_rate)
    energy = reference_power.sum(1)
    loud = energy > 1e-4 * energy.max()
    return float(np.mean((ours * theirs).sum(1)[loud]))
