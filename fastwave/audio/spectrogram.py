"""STFT magnitudes, log spectrograms and log-mel spectrograms (torch, on the input's device), and
the mel scale."""
from __future__ import annotations

import functools
import math
import numbers
import warnings

import numpy as np
import torch

from ._validate import _as_array, _check_audio, _check_positive_float, _check_positive_int, _float_tensor

_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "rectangular": lambda length, **kwargs: torch.ones(length, **kwargs),
}


def _make_window(window, win_length, like: torch.Tensor) -> torch.Tensor:
    if isinstance(window, torch.Tensor):
        if window.shape != (win_length,):
            raise ValueError(f"window must have shape ({win_length},) (win_length); got {tuple(window.shape)}")
        return window.to(device=like.device, dtype=like.dtype)
    if window not in _WINDOWS:
        raise ValueError(f"window must be one of {sorted(_WINDOWS)} or a 1-D tensor; got {window!r}")
    # Periodic windows (the torch and librosa default) are the right ones for spectral analysis.
    return _WINDOWS[window](win_length, device=like.device, dtype=like.dtype)


def stft_magnitude(audio, n_fft=512, hop_length=160, win_length=None, window="hann", center=True, power=1.0):
    """Magnitude of the short-time Fourier transform.

    Args:
        audio: numpy array or torch tensor (CPU or CUDA), floating, shape ``(..., T)``, finite.
        n_fft: FFT size; gives ``n_fft // 2 + 1`` frequency bins, bin ``k`` at ``k * rate / n_fft`` Hz.
            512 is 32 ms at 16 kHz.
        hop_length: samples between frames (160 is 10 ms at 16 kHz).
        win_length: window length, ``<= n_fft`` (zero-padded to ``n_fft``); ``None`` means ``n_fft``.
        window: ``"hann"``, ``"hamming"``, ``"blackman"``, ``"rectangular"`` (periodic) or a tensor of
            length ``win_length``.
        center: pad ``n_fft // 2`` zeros on both sides so frame ``t`` is centred on sample
            ``t * hop_length`` (librosa's default padding); then ``frames = 1 + T // hop_length``.
            Without it, ``frames = 1 + (T - n_fft) // hop_length`` and ``T >= n_fft`` is required.
        power: exponent on the magnitude: 1 for magnitude, 2 for power.

    Returns:
        Tensor ``(..., n_fft // 2 + 1, frames)`` on the input's device; float32 (float64 input stays
        float64).
    """
    x = _float_tensor(_check_audio(_as_array(audio)))
    n_fft = _check_positive_int(n_fft, "n_fft")
    hop_length = _check_positive_int(hop_length, "hop_length")
    win_length = n_fft if win_length is None else _check_positive_int(win_length, "win_length")
    if win_length > n_fft:
        raise ValueError(f"win_length must be <= n_fft ({n_fft}); got {win_length}")
    power = _check_positive_float(power, "power")
    length = x.shape[-1]
    if not center and length < n_fft:
        raise ValueError(f"audio has {length} samples, fewer than n_fft={n_fft}; pass center=True or a shorter n_fft")

    spectrum = torch.stft(
        x.reshape(-1, length),  # torch.stft takes one batch dimension
        n_fft,
        hop_length,
        win_length,
        _make_window(window, win_length, x),
        center=center,
        pad_mode="constant",
        return_complex=True,
    )
    magnitude = spectrum.abs()
    if power != 1.0:
        magnitude = magnitude.pow(power)
    return magnitude.reshape(*x.shape[:-1], *magnitude.shape[-2:])


def log_spectrogram(
    audio, n_fft=512, hop_length=160, eps=1e-5, *, win_length=None, window="hann", center=True, power=1.0
):
    """``log(stft_magnitude(audio, ...) + eps)``: shape ``(..., n_fft // 2 + 1, frames)``.

    ``eps`` (positive) bounds the log of silence at ``log(eps)``; the other arguments are those of
    ``stft_magnitude``.
    """
    eps = _check_positive_float(eps, "eps")
    magnitude = stft_magnitude(audio, n_fft, hop_length, win_length, window, center, power)
    return torch.log(magnitude + eps)


# Slaney's mel scale (librosa's default): linear below 1 kHz at 200/3 Hz per mel, logarithmic above.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = 15.0  # 1000 Hz / (200/3 Hz per mel), written exactly
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # 1 mel above the break is this much in ln(Hz)


def _check_frequencies(values, name):
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return values


def _scalar_or_array(values: np.ndarray):
    return float(values) if values.ndim == 0 else values


def hz_to_mel(frequencies, htk=False):
    """Frequencies in Hz (a number or array, >= 0) to mels.

    ``htk=False``: Slaney's scale as in librosa (``hz_to_mel(1000) == 15``); ``htk=True``:
    ``2595 * log10(1 + f / 700)`` (``hz_to_mel(1000, htk=True) == 1000`` to within 0.01).
    """
    hz = _check_frequencies(frequencies, "frequencies")
    if htk:
        return _scalar_or_array(2595.0 * np.log10(1.0 + hz / 700.0))
    log_part = _SLANEY_BREAK_MEL + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return _scalar_or_array(np.where(hz < _SLANEY_BREAK_HZ, hz / _SLANEY_HZ_PER_MEL, log_part))


def mel_to_hz(mels, htk=False):
    """The inverse of ``hz_to_mel``: mels (a number or array, >= 0) to Hz."""
    mels = _check_frequencies(mels, "mels")
    if htk:
        return _scalar_or_array(700.0 * (10.0 ** (mels / 2595.0) - 1.0))
    log_part = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (np.maximum(mels, _SLANEY_BREAK_MEL) - _SLANEY_BREAK_MEL))
    return _scalar_or_array(np.where(mels < _SLANEY_BREAK_MEL, mels * _SLANEY_HZ_PER_MEL, log_part))


def mel_filterbank(sample_rate, n_fft, n_mels=80, f_min=0.0, f_max=None, htk=False) -> torch.Tensor:
    """Triangular mel filters, as librosa.filters.mel with its defaults (norm="slaney").

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``, where the
    ``n_mels + 2`` points are evenly spaced in mels from ``f_min`` to ``f_max``; each filter is scaled
    by ``2 / (width in Hz)`` so its area is 1 (equal energy per channel).

    Args:
        sample_rate: audio rate in Hz (positive int).
        n_fft: FFT size the filters apply to.
        n_mels: number of filters.
        f_min, f_max: lowest and highest frequency in Hz, ``0 <= f_min < f_max <= sample_rate / 2``;
            ``f_max=None`` means ``sample_rate / 2``.
        htk: use the HTK mel formula instead of Slaney's.

    Returns:
        float32 CPU tensor ``(n_mels, n_fft // 2 + 1)``; ``filters @ magnitude`` gives mel energies.
    """
    sample_rate = _check_positive_int(sample_rate, "sample_rate")
    n_fft = _check_positive_int(n_fft, "n_fft")
    n_mels = _check_positive_int(n_mels, "n_mels")
    f_max = sample_rate / 2 if f_max is None else f_max
    if not (isinstance(f_max, numbers.Real) and 0 < f_max <= sample_rate / 2):
        raise ValueError(f"f_max must be in (0, sample_rate / 2 = {sample_rate / 2}]; got {f_max!r}")
    if not (isinstance(f_min, numbers.Real) and 0 <= f_min < f_max):
        raise ValueError(f"f_min must be in [0, f_max = {f_max}); got {f_min!r}")
    filters = _mel_filters(sample_rate, n_fft, n_mels, float(f_min), float(f_max), bool(htk))
    return torch.from_numpy(filters.astype(np.float32))


@functools.lru_cache(maxsize=32)
def _mel_filters(sample_rate, n_fft, n_mels, f_min, f_max, htk) -> np.ndarray:
    """float64 filters; cached because feature extraction asks for the same bank every call."""
    bin_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(hz_to_mel(f_min, htk), hz_to_mel(f_max, htk), n_mels + 2)
    edges_hz = np.asarray(mel_to_hz(mel_points, htk))
    widths = np.diff(edges_hz)
    offsets = edges_hz[:, None] - bin_hz[None, :]  # (n_mels + 2, bins)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    if not filters.any(axis=1).all():
        warnings.warn(
            f"{int((~filters.any(axis=1)).sum())} of {n_mels} mel filters are empty "
            f"(n_mels={n_mels} is too many for n_fft={n_fft}); use fewer mels or a larger n_fft",
            stacklevel=3,
        )
    filters.flags.writeable = False  # shared through the cache
    return filters


def log_mel_spectrogram(
    audio,
    sample_rate,
    n_fft=512,
    hop_length=160,
    n_mels=80,
    f_min=0.0,
    f_max=None,
    eps=1e-5,
    *,
    htk=False,
    win_length=None,
    window="hann",
    center=True,
    power=1.0,
):
    """Log mel spectrogram: ``log(mel_filterbank @ stft_magnitude(audio) + eps)``.

    The defaults (n_fft=512, hop_length=160) are a 32 ms window and a 10 ms hop at 16 kHz.

    Args:
        audio: numpy array or torch tensor (CPU or CUDA), floating, ``(..., T)``, finite.
        sample_rate: rate of ``audio`` in Hz (sets the filter frequencies).
        n_fft, hop_length: as in ``stft_magnitude``.
        n_mels, f_min, f_max, htk: as in ``mel_filterbank``.
        eps: positive floor inside the log.
        win_length, window, center, power: as in ``stft_magnitude`` (power=1 filters the
            magnitude, power=2 the power spectrum).

    Returns:
        Tensor ``(..., n_mels, frames)`` on the input's device.
    """
    eps = _check_positive_float(eps, "eps")
    filters = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, htk)
    magnitude = stft_magnitude(audio, n_fft, hop_length, win_length, window, center, power)
    mel = torch.matmul(filters.to(device=magnitude.device, dtype=magnitude.dtype), magnitude)
    return torch.log(mel + eps)
