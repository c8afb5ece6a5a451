"""Resampling (soxr, imported when first needed)."""
from __future__ import annotations

import numpy as np
import torch

from ._validate import _as_array, _check_audio, _check_positive_int


def resample(audio, orig_sample_rate, sample_rate):
    """Resample with soxr (high quality).

    Args:
        audio: numpy array or torch tensor, floating, ``(T,)`` or ``(channels, T)``.
        orig_sample_rate: the rate of ``audio`` in Hz (positive int).
        sample_rate: the rate wanted in Hz (positive int).

    Returns:
        The resampled audio, same kind (numpy or torch on the same device), dtype and layout, with
        about ``T * sample_rate / orig_sample_rate`` samples.
    """
    audio = _as_array(audio)
    _check_audio(audio, "audio", ranks=(1, 2))
    _check_positive_int(orig_sample_rate, "orig_sample_rate")
    _check_positive_int(sample_rate, "sample_rate")
    if orig_sample_rate == sample_rate:
        return audio.clone() if isinstance(audio, torch.Tensor) else audio.copy()
    samples = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio
    if samples.dtype not in (np.float32, np.float64):
        samples = samples.astype(np.float32)  # soxr handles these two float types
    result = np.ascontiguousarray(_soxr_resample(samples.T, orig_sample_rate, sample_rate).T)
    if isinstance(audio, torch.Tensor):
        return torch.from_numpy(result).to(device=audio.device, dtype=audio.dtype)
    return result.astype(audio.dtype, copy=False)


def _soxr_resample(samples: np.ndarray, orig_sample_rate, sample_rate) -> np.ndarray:
    """soxr on time-first data, ``(T,)`` or ``(T, channels)``."""
    import soxr

    return soxr.resample(np.ascontiguousarray(samples), orig_sample_rate, sample_rate, quality="HQ")
