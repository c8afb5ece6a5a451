"""Mu-law companding: audio in [-1, 1] <-> integer classes."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .._checks import check_tokens
from ._validate import _MAX_MULAW_CLASSES, _as_array, _check_audio, _float_tensor, _like


def _check_classes(classes) -> int:
    """Validate the number of mu-law classes and return mu = classes - 1."""
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or not (
        2 <= classes <= _MAX_MULAW_CLASSES
    ):
        raise ValueError(f"classes must be an integer in [2, {_MAX_MULAW_CLASSES}]; got {classes!r}")
    return int(classes) - 1


def mulaw_encode(audio, classes=256):
    """Mu-law compand ``audio`` and quantise it to integer tokens.

    ``F(x) = sign(x) * ln(1 + mu|x|) / ln(1 + mu)`` with ``mu = classes - 1`` on ``x`` clipped to
    [-1, 1], then ``token = floor((F + 1) / 2 * mu + 0.5)`` (rounding half up), so the tokens are
    ``0 .. classes - 1`` and silence (``x = 0``) is token ``classes // 2`` (see ``mulaw_silence``).

    Args:
        audio: numpy array or torch tensor (any device), floating, any shape; must be finite.
        classes: number of tokens, 2 .. 65536 (256 is 8-bit mu-law).

    Returns:
        int64 tokens of the same shape and kind as ``audio`` (a tensor stays on its device).
    """
    mu = _check_classes(classes)
    audio = _as_array(audio)
    _check_audio(audio, "audio", need_samples=False)
    x = _float_tensor(audio).clamp(-1.0, 1.0)
    companded = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    tokens = torch.floor((companded + 1.0) * (mu / 2.0) + 0.5).clamp_(0, mu).to(torch.int64)
    return _like(tokens, audio)


def mulaw_decode(tokens, classes=256):
    """Invert ``mulaw_encode``: integer tokens to float32 audio in [-1, 1].

    Args:
        tokens: numpy array or torch tensor (any device) of an integer dtype, any shape, with values
            in ``[0, classes)``.
        classes: the ``classes`` the tokens were encoded with.

    Returns:
        float32 audio of the same shape and kind as ``tokens``. ``mulaw_encode(mulaw_decode(k)) == k``
        for every token ``k``.
    """
    mu = _check_classes(classes)
    tokens = _as_array(tokens)
    checked = check_tokens(tokens, classes, "tokens", rank=None, allow_empty=True)
    companded = checked.to(torch.float32) * (2.0 / mu) - 1.0
    audio = torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(mu)) / mu
    return _like(audio.clamp_(-1.0, 1.0), tokens)


def mulaw_silence(classes=256) -> int:
    """The token of silence, ``mulaw_encode(0.0, classes)``, which is ``classes // 2``."""
    _check_classes(classes)
    return int(mulaw_encode(np.zeros((), np.float32), classes))
