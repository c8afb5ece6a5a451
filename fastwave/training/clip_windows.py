"""Clips cut into fixed-length windows for clip classifiers, and window scores averaged back per clip.

A classifier such as the wavelet Audio Transformer sees fixed windows (1 s at 16 kHz); a clip's
prediction is the mean of its windows' predictions (``average_by_clip``).

* Split before chunking: ``clip_splits`` picks train/val/test *clips*, and only then are they cut
  into windows (``WindowedClips.from_clips(clips, indices=splits["train"])``). Windows of one clip
  overlap or at least share its recording; spread over splits they would leak test audio into
  training and inflate the score.
* The last window is aligned to the clip's end (``window_starts``) instead of zero-padding a partial
  window: every sample is seen, and no window is mostly silence the model never meets at test time
  in a full window. Only a clip shorter than one window is padded (with zeros at its end).
* ``WindowedClips`` holds the audio as int16: FSD50K's files are 16-bit PCM, so nothing is lost for
  such sources at their own rate (soundfile reads a 16-bit sample ``k`` as ``k / 32768``, stored
  here as ``k`` again), and at 2 bytes per sample FSD50K's dev set (~80 h) takes ~9 GB instead of
  ~18 GB as float32. Windows come back as float32 in [-1, 1].

Bad input raises ValueError / TypeError naming the argument, clip or file; nothing passed in is
modified.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch

from .._checks import as_tensor, check_int_arg, check_tokens
from .data import LabelledClips

__all__ = ["WindowedClips", "average_by_clip", "clip_windows", "window_starts"]

# soundfile's scale for 16-bit PCM (k -> k / 32768): using it makes 16-bit sources round-trip exactly.
_PCM_SCALE = 32768.0
_PCM_MIN, _PCM_MAX = -32768, 32767
_INT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


# --------------------------------------------------------------------------------------------------
# Cutting one clip
# --------------------------------------------------------------------------------------------------


def _check_window_hop(window, hop) -> tuple[int, int]:
    window = check_int_arg(window, "window")
    hop = window if hop is None else check_int_arg(hop, "hop")
    if hop > window:
        raise ValueError(f"hop must be <= window ({window}) so that the windows cover the clip, got {hop}")
    return window, hop


def window_starts(length: int, window: int, hop: int | None = None) -> np.ndarray:
    """Start samples (int64, increasing) of the windows that cover a clip of ``length`` samples.

    Starts are ``0, hop, 2 * hop, ...`` while ``start + window <= length``; when those windows stop
    short of the end, one more window ends exactly at the end (start ``length - window``), so every
    sample is covered without padding. A clip shorter than a window gets the single start 0 (the
    caller pads it). ``hop`` defaults to ``window`` (no overlap) and must be ``<= window``.

    >>> window_starts(25, 10).tolist()
    [0, 10, 15]
    """
    length = check_int_arg(length, "length")
    window, hop = _check_window_hop(window, hop)
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < length:
        starts = np.append(starts, np.int64(length - window))
    return starts


def _check_clip(audio, name: str) -> np.ndarray | torch.Tensor:
    """A 1-D, non-empty, finite floating clip (numpy or torch), returned as given."""
    if isinstance(audio, torch.Tensor):
        floating = audio.dtype.is_floating_point
    elif isinstance(audio, np.ndarray):
        floating = audio.dtype.kind == "f"
    else:
        raise TypeError(f"{name} must be a numpy array or torch.Tensor, got {type(audio).__name__}")
    if not floating:
        raise TypeError(f"{name} must be floating point (samples in [-1, 1]), got dtype {audio.dtype}")
    if audio.ndim != 1:
        raise ValueError(f"{name} must be 1-D (T,) mono samples, got shape {tuple(audio.shape)}")
    if audio.shape[0] == 0:
        raise ValueError(f"{name} is empty: it needs at least one sample")
    finite = torch.isfinite(audio).all() if isinstance(audio, torch.Tensor) else np.isfinite(audio).all()
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or infinite samples")
    return audio


def _short_clip_message(samples: int, min_samples: int) -> str:
    return f"clip of {samples} samples is shorter than min_samples={min_samples} (one model patch)"


def _as_float32_numpy(audio) -> np.ndarray:
    """float32 numpy samples of a checked clip (a new array whenever a conversion is needed)."""
    if isinstance(audio, torch.Tensor):
        return audio.detach().to("cpu", torch.float32).numpy()
    return np.asarray(audio, dtype=np.float32)


def clip_windows(audio, window: int, hop: int | None = None, *, min_samples: int = 1) -> torch.Tensor:
    """Cut one clip into windows at ``window_starts(len(audio), window, hop)``.

    Args:
        audio: 1-D floating samples ``(T,)``, numpy or torch (any device), finite.
        window: samples per window; ``hop``: samples between starts (default ``window``, <= window).
        min_samples: refuse clips shorter than this (pass the model's patch size: a shorter clip
            would hold no whole patch).

    Returns:
        float32 CPU tensor ``(n_windows, window)``; a clip shorter than ``window`` is one window
        zero-padded at its end.
    """
    audio = _check_clip(audio, "audio")
    min_samples = check_int_arg(min_samples, "min_samples")
    window, hop = _check_window_hop(window, hop)
    if audio.shape[0] < min_samples:
        raise ValueError(_short_clip_message(audio.shape[0], min_samples))
    samples = torch.from_numpy(_as_float32_numpy(audio))
    starts = torch.from_numpy(window_starts(samples.shape[0], window, hop))
    if samples.shape[0] < window:
        samples = torch.nn.functional.pad(samples, (0, window - samples.shape[0]))
    # unfold is a view of every window position; indexing it copies just the windows wanted.
    return samples.unfold(0, window, 1)[starts].clone()


# --------------------------------------------------------------------------------------------------
# Average per clip
# --------------------------------------------------------------------------------------------------


def average_by_clip(window_scores, clip_of_window, num_clips: int) -> torch.Tensor:
    """Mean of each clip's window scores: ``(N_windows, C)`` -> float32 ``(num_clips, C)``.

    Args:
        window_scores: floating ``(N_windows, C)`` tensor or array (probabilities or logits: what is
            passed is averaged). Autograd flows through.
        clip_of_window: int ``(N_windows,)``, the clip of each window, in ``[0, num_clips)``
            (``WindowedClips.clip_of_window``, or its entries at the windows scored).
        num_clips: number of clips; each must have at least one window.

    Returns:
        float32 tensor on ``window_scores``' device.
    """
    num_clips = check_int_arg(num_clips, "num_clips")
    scores = as_tensor(window_scores, "window_scores")
    if not scores.dtype.is_floating_point:
        raise TypeError(f"window_scores must be floating point, got dtype {scores.dtype}")
    if scores.dim() != 2:
        raise ValueError(f"window_scores must be (N_windows, C), got shape {tuple(scores.shape)}")
    clips = check_tokens(clip_of_window, num_clips, "clip_of_window", rank=1)
    if clips.shape[0] != scores.shape[0]:
        raise ValueError(f"clip_of_window has {clips.shape[0]} entries but window_scores has "
                         f"{scores.shape[0]} rows (one clip per window)")
    clips = clips.to(scores.device)
    counts = torch.bincount(clips, minlength=num_clips)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        raise ValueError(f"{empty.numel()} of {num_clips} clips have no window in clip_of_window "
                         f"(e.g. clip {int(empty[0])}); cannot average them")
    sums = torch.zeros(num_clips, scores.shape[1], dtype=torch.float32, device=scores.device)
    sums = sums.index_add(0, clips, scores.float())
    return sums / counts.unsqueeze(1).float()


# --------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------


class _PCMBuilder:
    """Clips appended one by one into one int16 buffer, each padded with zeros to at least
    ``pad_to`` samples (so every window is a plain slice of the buffer).

    ``reserve`` sizes the buffer up front (np.zeros pages are only backed by memory once written,
    so a generous estimate costs nothing); it grows 1.5x if the estimate was short.
    """

    def __init__(self, reserve: int, pad_to: int):
        self.pad_to = pad_to
        self.buffer = np.zeros(max(int(reserve), pad_to), dtype=np.int16)
        self.used = 0
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        self.saturated = 0  # samples outside [-1, 1]
        self.saturated_clips = 0

    def append(self, samples: np.ndarray) -> None:
        need = max(samples.shape[0], self.pad_to)
        if self.used + need > self.buffer.shape[0]:
            grown = np.zeros(max(self.used + need, self.buffer.shape[0] * 3 // 2), dtype=np.int16)
            grown[:self.used] = self.buffer[:self.used]
            self.buffer = grown
        outside = int(np.count_nonzero((samples > 1) | (samples < -1)))
        self.saturated += outside
        self.saturated_clips += outside > 0
        scaled = np.rint(samples * np.float32(_PCM_SCALE))  # exact scaling: a power of two
        np.clip(scaled, _PCM_MIN, _PCM_MAX, out=scaled)
        self.buffer[self.used:self.used + samples.shape[0]] = scaled  # the padding stays zero
        self.offsets.append(self.used)
        self.lengths.append(samples.shape[0])
        self.used += need

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pcm int16, offsets int64 (N,), lengths int64 (N,)); warns once if samples saturated."""
        if self.saturated:
            warnings.warn(f"{self.saturated} samples in {self.saturated_clips} clips lie outside [-1, 1] "
                          "and were clipped to the int16 range", stacklevel=4)  # the caller of from_*
        pcm = torch.from_numpy(self.buffer[:self.used])
        return (pcm, torch.tensor(self.offsets, dtype=torch.int64),
                torch.tensor(self.lengths, dtype=torch.int64))


def _check_vocabulary(vocabulary) -> list[str] | None:
    if vocabulary is None:
        return None
    if isinstance(vocabulary, str) or not hasattr(vocabulary, "__iter__"):
        raise TypeError(f"vocabulary must be a list of label names, got {type(vocabulary).__name__}")
    vocabulary = list(vocabulary)
    if not all(isinstance(v, str) for v in vocabulary) or len(set(vocabulary)) != len(vocabulary):
        raise ValueError("vocabulary must hold distinct label names (str)")
    return vocabulary


def _check_targets(targets, n: int, vocabulary, multi_label) -> tuple[torch.Tensor, bool]:
    """Class ids (N,) -> int64, or multi-hot (N, C) of 0/1 -> float32; a new tensor either way."""
    targets = as_tensor(np.asarray(targets) if isinstance(targets, (list, tuple)) else targets, "targets")
    if targets.dim() not in (1, 2):
        raise ValueError(f"targets must be class ids (N,) or multi-hot rows (N, C), got shape {tuple(targets.shape)}")
    rank_multi = targets.dim() == 2
    if multi_label is not None and bool(multi_label) != rank_multi:
        want = "multi-hot (N, C)" if multi_label else "class ids (N,)"
        raise ValueError(f"multi_label={multi_label} needs targets as {want}, got shape {tuple(targets.shape)}")
    if targets.shape[0] != n:
        raise ValueError(f"targets has {targets.shape[0]} rows but audios has {n} clips")
    classes = None if vocabulary is None else len(vocabulary)
    if not rank_multi:
        if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
            raise TypeError(f"class id targets must be integers, got dtype {targets.dtype}")
        low = int(targets.min())
        high = int(targets.max())
        if low < 0 or (classes is not None and high >= classes):
            bound = f"[0, {classes})" if classes is not None else "[0, inf)"
            raise ValueError(f"targets (class ids) must lie in {bound}, got values in [{low}, {high}]")
        return targets.to(torch.int64, copy=True), False
    if classes is not None and targets.shape[1] != classes:
        raise ValueError(f"multi-hot targets have {targets.shape[1]} columns but vocabulary has {classes} labels")
    if targets.dtype.is_complex:
        raise TypeError(f"multi-hot targets must be real 0/1 values, got dtype {targets.dtype}")
    hot = targets.to(torch.float32, copy=True)
    if not bool(((hot == 0) | (hot == 1)).all()):
        raise ValueError("multi-hot targets must hold only 0 and 1")
    return hot, True


class WindowedClips(torch.utils.data.Dataset):
    """Labelled clips cut into windows, held in memory; item ``i`` is one window.

    Build with ``from_clips`` (audio files, e.g. one split of ``clip_splits``) or ``from_arrays``.
    The audio is stored once per clip as int16 PCM (2 bytes per sample: FSD50K's dev set, ~80 h at
    16 kHz, takes ~9 GB), lossless for 16-bit sources; samples with ``|x| > 1`` saturate at the
    int16 range (a warning counts them). Windows are cut at ``window_starts`` on the fly.

    Attributes:
        sample_rate, window, hop: ints (window and hop in samples).
        num_clips: N. multi_label: bool. vocabulary: list[str] or None. paths: list[str] or None.
        targets: per clip, int64 class ids ``(N,)`` or float32 multi-hot ``(N, C)``.
        clip_lengths: int64 ``(N,)`` samples per clip (before padding).
        windows_per_clip: int64 ``(N,)``. clip_of_window: int64 ``(N_windows,)``, clips in order.

    ``dataset[i]`` -> ``(window float32 (window,), target of its clip, clip index int)``;
    ``batch(indices)`` gathers many windows at once.
    """

    def __init__(self, builder: _PCMBuilder, targets: torch.Tensor, *, sample_rate: int, window: int,
                 hop: int, multi_label: bool, vocabulary: list[str] | None, paths: list[str] | None):
        # Internal: the arguments are checked by from_arrays / from_clips.
        self._pcm, self._clip_offsets, self.clip_lengths = builder.finish()
        self.sample_rate, self.window, self.hop = sample_rate, window, hop
        self.targets, self.multi_label = targets, multi_label
        self.vocabulary, self.paths = vocabulary, paths
        self.num_clips = int(self.clip_lengths.shape[0])
        starts = [torch.from_numpy(window_starts(n, window, hop)) for n in self.clip_lengths.tolist()]
        self.windows_per_clip = torch.tensor([len(s) for s in starts], dtype=torch.int64)
        self.clip_of_window = torch.repeat_interleave(torch.arange(self.num_clips), self.windows_per_clip)
        self._window_offsets = self._clip_offsets[self.clip_of_window] + torch.cat(starts)

    # -- constructors ------------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, audios, targets, *, sample_rate: int, window: int | None = None, hop: int | None = None,
                    min_samples: int = 1, vocabulary=None, multi_label: bool | None = None) -> WindowedClips:
        """Clips given as arrays, already at ``sample_rate``.

        Args:
            audios: list of N 1-D floating clips ``(T_i,)`` (numpy or torch), finite.
            targets: int class ids ``(N,)`` or multi-hot 0/1 ``(N, C)``.
            sample_rate: their rate in Hz (int >= 1). window: samples per window (default one
                second, ``sample_rate``). hop: samples between windows (default ``window``).
            min_samples: every clip must have at least this many samples (the model's patch size).
            vocabulary: label names; class ids must lie in ``[0, len(vocabulary))``, or C equal it.
            multi_label: None infers it from the rank of ``targets``; else it must agree.
        """
        sample_rate = check_int_arg(sample_rate, "sample_rate")
        window, hop = _check_window_hop(sample_rate if window is None else window, hop)
        min_samples = check_int_arg(min_samples, "min_samples")
        if not isinstance(audios, (list, tuple)):
            raise TypeError(f"audios must be a list of 1-D arrays, got {type(audios).__name__}")
        if not audios:
            raise ValueError("audios is empty: give at least one clip")
        vocabulary = _check_vocabulary(vocabulary)
        targets, multi_label = _check_targets(targets, len(audios), vocabulary, multi_label)
        for i, audio in enumerate(audios):
            _check_clip(audio, f"audios[{i}]")
            if audio.shape[0] < min_samples:
                raise ValueError(f"audios[{i}]: {_short_clip_message(audio.shape[0], min_samples)}")
        builder = _PCMBuilder(sum(max(a.shape[0], window) for a in audios), window)
        for audio in audios:
            builder.append(_as_float32_numpy(audio))
        return cls(builder, targets, sample_rate=sample_rate, window=window, hop=hop,
                   multi_label=multi_label, vocabulary=vocabulary, paths=None)

    @classmethod
    def from_clips(cls, clips: LabelledClips, *, sample_rate: int = 16000, window: int | None = None,
                   hop: int | None = None, min_samples: int = 1, indices=None, progress: bool = True) -> WindowedClips:
        """Load the clips at ``indices`` (default all; e.g. ``clip_splits(clips)["train"]``) with
        ``load_audio(path, sample_rate)`` (mono, resampled with soxr), with a progress bar.

        Targets are the rows of ``clips.targets()`` at ``indices``; vocabulary and the paths are kept.
        ``window`` defaults to one second (``sample_rate``); ``hop`` to ``window``.

        Raises:
            ValueError: a file shorter than ``min_samples`` after resampling (named, with its
            duration), a file that cannot be read, indices out of range, bad arguments.
        """
        from tqdm.auto import tqdm

        from ..audio import load_audio

        if not isinstance(clips, LabelledClips):
            raise TypeError(f"clips must be a LabelledClips, got {type(clips).__name__}")
        sample_rate = check_int_arg(sample_rate, "sample_rate")
        window, hop = _check_window_hop(sample_rate if window is None else window, hop)
        min_samples = check_int_arg(min_samples, "min_samples")
        if indices is None:
            indices = np.arange(len(clips), dtype=np.int64)
        else:
            indices = check_tokens(indices, len(clips), "indices", rank=1).numpy()
        paths = [clips.paths[i] for i in indices]
        targets = torch.from_numpy(clips.targets()[indices])  # fancy indexing: a new array
        builder = _PCMBuilder(_estimate_samples(paths, sample_rate, window), window)
        for path in tqdm(paths, desc="load clips", unit="clip", disable=not progress):
            samples, _ = load_audio(path, sample_rate)
            if samples.shape[0] < min_samples:
                raise ValueError(f"file {path!r} lasts {samples.shape[0] / sample_rate:.4g} s at {sample_rate} Hz: "
                                 f"{_short_clip_message(samples.shape[0], min_samples)}")
            builder.append(samples)
        return cls(builder, targets, sample_rate=sample_rate, window=window, hop=hop,
                   multi_label=clips.multi_label, vocabulary=list(clips.vocabulary), paths=paths)

    # -- access ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._window_offsets.shape[0])

    def __repr__(self) -> str:
        kind = "multi-label" if self.multi_label else "multi-class"
        hours = int(self.clip_lengths.sum()) / self.sample_rate / 3600
        return (f"WindowedClips({self.num_clips} clips, {len(self)} windows of {self.window} samples "
                f"(hop {self.hop}) at {self.sample_rate} Hz, {hours:.3g} h, {kind})")

    def _to_float(self, pcm: torch.Tensor) -> torch.Tensor:
        return pcm.to(torch.float32).mul_(1.0 / _PCM_SCALE)  # exact: a power of two

    def __getitem__(self, index):
        """Window ``index`` -> ``(samples float32 (window,), target of its clip, clip index int)``."""
        if isinstance(index, torch.Tensor) and index.dim() == 0 and index.dtype in _INT_DTYPES:
            index = int(index)  # a sampler may hand out 0-d tensors
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}; use batch() for many windows")
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        index %= len(self)
        start = int(self._window_offsets[index])
        clip = int(self.clip_of_window[index])
        return self._to_float(self._pcm[start:start + self.window]), self.targets[clip], clip

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows at ``indices`` (ints ``(B,)`` in ``[0, len)``) -> ``(float32 (B, window),
        targets (B,) or (B, C))``, gathered in one indexing operation."""
        indices = check_tokens(indices, len(self), "indices", rank=1)
        # Row gather on a sliding view of the buffer (no (B, window) index tensor), converted in numpy:
        # numpy backs large arrays with huge pages, which made this several times faster than torch
        # on CPU (the allocation, not the copy, dominated).
        every_window = np.lib.stride_tricks.sliding_window_view(self._pcm.numpy(), self.window)
        rows = every_window[self._window_offsets[indices].numpy()]
        windows = torch.from_numpy(np.multiply(rows, np.float32(1.0 / _PCM_SCALE), dtype=np.float32))
        return windows, self.targets[self.clip_of_window[indices]]

    def clip_audio(self, clip: int) -> torch.Tensor:
        """The float32 samples ``(T,)`` of clip ``clip`` (without padding)."""
        clip = check_int_arg(clip, "clip", minimum=0)
        if clip >= self.num_clips:
            raise IndexError(f"clip index {clip} out of range for {self.num_clips} clips")
        start = int(self._clip_offsets[clip])
        return self._to_float(self._pcm[start:start + int(self.clip_lengths[clip])])


def _estimate_samples(paths, sample_rate: int, window: int) -> int:
    """Samples the clips will take at ``sample_rate`` (padded to ``window``), from the file headers;
    a slight overestimate, so the int16 buffer is allocated once. Unreadable headers count as one
    window here: load_audio reports them."""
    import soundfile

    total = 0
    for path in paths:
        try:
            info = soundfile.info(os.fspath(path))
            samples = math.ceil(info.frames * sample_rate / info.samplerate) + 1  # soxr rounds
        except Exception:  # noqa: BLE001 - any failure here is reported by load_audio
            samples = 0
        total += max(samples, window)
    return total
