"""Reading and writing audio files (soundfile, imported when first needed)."""
from __future__ import annotations

import os

import numpy as np
import torch

from .._checks import check_file
from .._files import write_atomically
from ._validate import _FLOAT_SUBTYPES, _MAX_FILE_RATE, _as_array, _check_audio, _check_positive_int
from .resampling import _soxr_resample


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
