"""Pre-emphasis and de-emphasis: the noise shaping of 8-bit sample models.

A model that predicts mu-law tokens of ``pre_emphasis(audio, a)`` and whose samples are played
through ``de_emphasis`` has its sampling noise, white in the token domain, tilted down by
``(1 - a) / (1 + a)`` at the top of the band relative to the bottom, where a piano's energy is:
the hiss a listener hears (and spectral flatness measures) falls while the notes stay (LPCNet,
Valin & Skoglund 2019, uses a = 0.85 for the same reason).

    p[n] = (x[n] - a * x[n - 1]) / (1 + a)       x[-1] = 0
    x[n] = (1 + a) * p[n] + a * x[n - 1]

The 1 / (1 + a) keeps ``p`` in [-1, 1] for any ``x`` in [-1, 1], so mu-law never clips it. Both take
numpy arrays or torch tensors of shape (..., T) (time last) and give back the same kind, float32 or
float64 as given; ``de_emphasis(pre_emphasis(x, a), a)`` is ``x`` to rounding. With a = 0 both
return their input unchanged. The recursive filter runs in scipy (``scipy.signal.lfilter``,
imported only when a > 0).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from ._validate import _as_array, _check_audio, _float_tensor, _like


def check_emphasis(coefficient, name: str = "pre_emphasis") -> float:
    """``coefficient`` as a float in [0, 1), else ValueError naming ``name``."""
    if isinstance(coefficient, bool) or not isinstance(coefficient, numbers.Real) or not 0 <= coefficient < 1:
        raise ValueError(f"{name} must be a number in [0, 1) (0: none; 0.85 is LPCNet's), got {coefficient!r}")
    return float(coefficient)


def pre_emphasis(audio, coefficient: float):
    """audio (..., T) in [-1, 1] -> (x[n] - a x[n-1]) / (1 + a), same shape and kind."""
    return _filter(audio, check_emphasis(coefficient, "coefficient"), inverse=False)


def de_emphasis(audio, coefficient: float):
    """The inverse of ``pre_emphasis``: (..., T) -> (..., T), same shape and kind."""
    return _filter(audio, check_emphasis(coefficient, "coefficient"), inverse=True)


def _filter(audio, a: float, inverse: bool):
    audio = _as_array(audio)
    _check_audio(audio, "audio")
    if a == 0:
        return audio
    from scipy.signal import lfilter

    tensor = _float_tensor(audio)
    x = tensor.detach().cpu().numpy()
    numerator, denominator = ([1 + a], [1, -a]) if inverse else ([1 / (1 + a), -a / (1 + a)], [1])
    y = torch.from_numpy(np.ascontiguousarray(lfilter(numerator, denominator, x, axis=-1).astype(x.dtype)))
    return _like(y.to(tensor.device), audio)
