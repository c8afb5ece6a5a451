"""Audio I/O, mu-law companding and spectral features.

Conventions used throughout:

* Audio is floating point in [-1, 1]; time is the last axis. A mono signal is ``(T,)``, a
  multi-channel one ``(channels, T)`` (channels first, as in torch).
* ``pre_emphasis`` / ``de_emphasis`` (a sample model's noise shaping) and ``mulaw_encode`` /
  ``mulaw_decode`` take numpy arrays or torch tensors and give back the same kind
  (a tensor stays on its device).
* The spectral features are computed with torch; they take numpy or torch input of shape
  ``(..., T)`` and return a torch tensor of shape ``(..., freq, frames)`` on the input's device.
* Bad input raises ``ValueError`` naming the argument; nothing passed in is modified.

soundfile and soxr are imported inside the functions that need them, so ``import fastwave`` works on
machines without them.
"""
from __future__ import annotations

from .emphasis import de_emphasis, pre_emphasis
from .files import audio_file_subtype, load_audio, save_audio
from .mulaw import mulaw_decode, mulaw_encode, mulaw_silence
from .resampling import resample
from .spectrogram import hz_to_mel, log_mel_spectrogram, log_spectrogram, mel_filterbank, mel_to_hz, stft_magnitude

__all__ = [
    "load_audio",
    "save_audio",
    "resample",
    "audio_file_subtype",
    "mulaw_encode",
    "mulaw_decode",
    "mulaw_silence",
    "pre_emphasis",
    "de_emphasis",
    "stft_magnitude",
    "log_spectrogram",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "log_mel_spectrogram",
]
