"""Audio I/O, mu-law companding and spectral features.

Conventions used throughout:

* Audio is floating point in [-1, 1]; time is the last axis. A mono signal is ``(T,)``, a
  multi-channel one ``(channels, T)`` (channels first, as in torch).
* ``mulaw_encode`` / ``mulaw_decode`` take numpy arrays or torch tensors and give back the same kind
  (a tensor stays on its device).
* The spectral features are computed with torch; they take numpy or torch input of shape
  ``(..., T)`` and return a torch tensor of shape ``(..., freq, frames)`` on the input's device.
* Bad input raises ``ValueError`` naming the argument; nothing passed in is modified.

soundfile and soxr are imported inside the functions that need them, so ``import fastwave`` works on
machines without them.
"""
from __future__ import annotations

import functools
import math
import numbers
import os
import warnings

import numpy as np
import torch

from ._checks import as_tensor, check_file, check_int_arg, check_tokens
from ._files import write_atomically

__all__ = [
    "load_audio",
    "save_audio",
    "resample",
    "audio_file_subtype",
    "mulaw_encode",
    "mulaw_decode",
    "mulaw_silence",
    "stft_magnitude",
    "log_spectrogram",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "log_mel_spectrogram",
]

# Subtypes that store floats as they are; every other subtype (integer PCM, and lossy codecs such as
# Vorbis or MP3) clips outside [-1, 1], which would silently distort the audio.
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_MAX_MULAW_CLASSES = 2**16


# --------------------------------------------------------------------------------------------------
# Shared validation
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# File I/O and resampling
# --------------------------------------------------------------------------------------------------


def load_audio(path, sample_rate=None, mono=True, dtype=np.float32):
    """Read an audio file with soundfile (any format libsndfile reads: wav, flac, ogg, ...).

    Args:
        path: file to read (str or path-like).
        sample_rate: rate to return the audio at, in Hz (positive int). When it differs from the
            file's rate the audio is resampled with soxr (high quality). ``None`` keeps the file's rate.
        mono: ``True`` averages all channels into one and returns shape ``(T,)``; ``False`` returns
            ``(channels, T)``, also for a mono file (``(1, T)``).
        dtype: ``np.float32`` or ``np.float64``; samples are in [-1, 1].

    Returns:
        ``(samples, rate)``: a C-contiguous numpy array as described above and its rate in Hz.

    Raises:
        MissingFileError: there is no file at ``path`` (a FileNotFoundError and a ValueError).
        ValueError: the file is not audio libsndfile can read, is a truncated WAV (its data chunk
            promises more bytes than the file holds), has no samples, or holds NaN/inf; or an
            argument is invalid.
    """
    import soundfile

    path = check_file(path, "path")
    if sample_rate is not None:
        _check_positive_int(sample_rate, "sample_rate")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype}")

    try:
        samples, file_rate = soundfile.read(path, dtype=dtype.name, always_2d=True)  # (T, channels)
    except RuntimeError as error:  # soundfile.LibsndfileError is a RuntimeError
        raise ValueError(f"cannot read {path!r} as audio: {error}") from error
    _check_wav_complete(path)
    if samples.shape[0] == 0:
        raise ValueError(f"audio file {path!r} has no samples")
    if not np.isfinite(samples).all():
        raise ValueError(f"audio file {path!r} contains NaN or infinite samples")

    if mono:
        samples = samples.mean(axis=1, dtype=dtype)  # mix down before resampling: less work
    if sample_rate is not None and sample_rate != file_rate:
        samples = _soxr_resample(samples, file_rate, sample_rate)
        file_rate = int(sample_rate)
    return np.ascontiguousarray(samples.T, dtype=dtype), int(file_rate)


def _check_wav_complete(path: str) -> None:
    """ValueError when ``path`` is a RIFF/WAVE file whose data chunk promises more bytes than the
    file holds: libsndfile reads a cut-off WAV (a copy or download that stopped part-way) as a
    shorter clip without a word."""
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # another format (or RF64, W64): libsndfile's own checks apply
        size = os.fstat(f.fileno()).st_size
        position = 12
        while position + 8 <= size:
            f.seek(position)
            chunk = f.read(8)
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                held = size - position - 8
                # 0 and 0xFFFFFFFF: a writer that streamed and never knew the length
                if declared not in (0, 0xFFFFFFFF) and held < declared:
                    raise ValueError(f"audio file {path!r} is truncated: its data chunk promises {declared:,} "
                                     f"bytes of samples and the file holds {held:,}")
                return
            position += 8 + declared + (declared & 1)  # chunks are padded to even sizes


def save_audio(path, audio, sample_rate, subtype=None):
    """Write ``audio`` to ``path`` with soundfile; the format comes from the file extension.

    Args:
        path: file to write (str or path-like); its extension picks the format (.wav, .flac, .ogg, ...).
        audio: numpy array or torch tensor (any device), floating, shape ``(T,)`` or ``(channels, T)``.
        sample_rate: rate in Hz (positive int).
        subtype: libsndfile subtype such as ``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``; ``None`` uses
            the format's default (PCM_16 for wav and flac). Only ``"FLOAT"`` and ``"DOUBLE"`` accept
            samples outside [-1, 1]; every other subtype would clip them, so that is an error.

    Raises:
        ValueError: bad rank, empty or non-finite audio, out-of-range samples for the subtype, an
            unknown extension or subtype, a bad rate, a folder that does not exist or cannot be
            written, or a write that libsndfile refuses.

    The file is written beside ``path`` and renamed over it: a write that fails part-way (a full
    disk) leaves an existing file as it was.
    """
    import soundfile

    path = os.fspath(path)
    audio = _as_array(audio)
    _check_audio(audio, "audio", ranks=(1, 2))
    _check_positive_int(sample_rate, "sample_rate")
    if sample_rate > _MAX_FILE_RATE:
        raise ValueError(f"sample_rate must be at most {_MAX_FILE_RATE} Hz for an audio file, got {sample_rate}")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = (audio if audio.dtype in (torch.float32, torch.float64) else audio.float()).numpy()
    elif audio.dtype not in (np.float32, np.float64):
        audio = audio.astype(np.float32)  # libsndfile writes 32- and 64-bit floats only
    if audio.ndim == 2 and audio.shape[0] > audio.shape[1]:
        raise ValueError(
            f"audio must be (channels, T); shape {audio.shape} has more channels than samples, "
            "so it is probably (T, channels) - transpose it"
        )

    subtype = audio_file_subtype(path, subtype)
    peak = float(np.abs(audio).max())
    if subtype not in _FLOAT_SUBTYPES and peak > 1.0:
        raise ValueError(
            f"audio has samples outside [-1, 1] (peak {peak:.4g}), which subtype "
            f"{subtype!r} would clip; scale it, or use subtype='FLOAT'"
        )

    try:  # soundfile wants (T, channels); a write that fails part-way leaves the old file
        write_atomically(path, lambda temporary: soundfile.write(temporary, audio.T, int(sample_rate), subtype=subtype))
    except RuntimeError as error:
        raise ValueError(f"cannot write audio to {path!r}: {error}") from error


def audio_file_subtype(path, subtype=None) -> str:
    """The libsndfile subtype ``save_audio`` will write to ``path`` (format from the extension);
    ValueError for an unknown extension or a subtype the format cannot hold. Call it before long
    work whose result goes to ``path``."""
    import soundfile

    path = os.fspath(path)
    file_format = os.path.splitext(path)[1][1:].upper()
    if file_format not in soundfile.available_formats():
        raise ValueError(f"cannot tell the audio format from the extension of {path!r}")
    subtype = (subtype or soundfile.default_subtype(file_format)).upper()
    if not soundfile.check_format(file_format, subtype):
        raise ValueError(f"subtype {subtype!r} cannot be written to a {file_format} file ({path!r})")
    return subtype


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


# --------------------------------------------------------------------------------------------------
# Mu-law
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Spectral features
# --------------------------------------------------------------------------------------------------

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
