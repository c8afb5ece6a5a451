"""Validation and conversions shared by the modules of fastwave.audio (bad input raises ValueError
naming the argument; nothing passed in is modified)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .._checks import as_tensor, check_int_arg

# Subtypes that store floats as they are; every other subtype (integer PCM, and lossy codecs such as
# Vorbis or MP3) clips outside [-1, 1], which would silently distort the audio.
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_MAX_MULAW_CLASSES = 2**16


def _dtype_kind(x) -> str:
    """'f' floating, 'i' integer (signed or unsigned), 'b' bool, or another numpy kind letter."""
    if isinstance(x, torch.Tensor):
        if x.dtype.is_floating_point:
            return "f"
        if x.dtype.is_complex:
            return "c"
        return "b" if x.dtype == torch.bool else "i"
    return "i" if x.dtype.kind == "u" else x.dtype.kind


def _as_array(x):
    """Leave tensors alone; turn anything else (lists, scalars, numpy) into a numpy array."""
    return x if isinstance(x, torch.Tensor) else np.asarray(x)


def _all_finite(x) -> bool:
    if isinstance(x, torch.Tensor):
        return bool(torch.isfinite(x).all())
    return bool(np.isfinite(x).all())


def _check_audio(audio, name="audio", ranks=None, need_samples=True):
    """Check that ``audio`` (numpy or torch) is floating, of an allowed rank, and finite.

    ``ranks``: allowed numbers of dimensions (default: any). ``need_samples``: require a time axis
    with at least one sample (off for elementwise functions). Returns ``audio`` unchanged.
    """
    if _dtype_kind(audio) != "f":
        raise ValueError(f"{name} must be floating point (samples in [-1, 1]); got dtype {audio.dtype}")
    if ranks is not None and audio.ndim not in ranks:
        raise ValueError(f"{name} must have rank {' or '.join(map(str, ranks))}; got shape {tuple(audio.shape)}")
    if need_samples and audio.ndim == 0:
        raise ValueError(f"{name} must have a time axis, shape (..., T); got a scalar")
    if need_samples and math.prod(audio.shape) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(audio.shape)}); it needs at least one sample")
    if not _all_finite(audio):
        raise ValueError(f"{name} contains NaN or infinite samples")
    return audio


_MAX_FILE_RATE = 2 ** 31 - 1  # libsndfile stores the rate as a C int


def _check_positive_int(value, name):
    return check_int_arg(value, name, minimum=1)


def _check_positive_float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def _to_tensor(x) -> torch.Tensor:
    """numpy -> tensor without a copy where torch can wrap the memory as it is."""
    return as_tensor(x, "audio")


def _like(result: torch.Tensor, reference):
    """Give ``result`` back as the same kind (numpy or torch) as ``reference``."""
    return result if isinstance(reference, torch.Tensor) else result.numpy()


def _float_tensor(audio) -> torch.Tensor:
    """A float32/float64 tensor (half precision is widened: cuFFT and CPU FFTs want >= 32 bits)."""
    tensor = _to_tensor(audio)
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()
