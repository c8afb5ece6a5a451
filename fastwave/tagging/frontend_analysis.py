"""What a raw-waveform front end learned: its first-layer neurons seen as a filterbank.

The Audio Transformer of Verma & Berger (2021) (``fastwave.models.classifier.WaveletClassifier``)
starts with a dense layer applied to each 25 ms patch of raw audio (400 samples at 16 kHz), so each
first-layer neuron is a FIR filter with one tap per sample of the patch. The paper's figure sorts
these filters by centre frequency: a Fourier (DFT) filterbank would give a straight line (neuron k of
N at k/N of Nyquist), while the learned bank gives a curve that rises slowly at first, i.e. it spends
more filters on low frequencies, much like a mel / ERB scale.

    analysis = analyze_frontend(model)                 # or analyze_frontend(filters, sample_rate=16000)
    print(analysis.summary())                          # median centre, share of filters below 1 kHz
    plot_frontend(analysis, "frontend.png")            # needs matplotlib (pip install matplotlib)

Each filter's spectrum is the magnitude of its zero-padded rfft, normalised to a peak of 1; its centre
frequency is where that spectrum peaks (see ``centre_frequencies`` for why not the centroid).

Reading the figure
------------------
Left: every filter's magnitude spectrum in dB (0 dB = that filter's own peak), one column per filter,
columns sorted by centre frequency (x: rank, y: frequency in kHz). The solid curve traces the centre
frequencies; the dashed straight line is where a Fourier filterbank of as many filters would put them.
A curve that stays under the line (bending up late) means the front end dedicates more filters to low
frequencies than a DFT does: a non-uniform, mel-like resolution. A curve lying on the line means a
uniform, DFT-like bank. Untrained (random) filters are broadband noise: no bright ridge along the
curve, and peaks spread evenly over the band, so their curve follows the straight line too. Right: the time-domain taps of a few filters picked evenly along the sorted order (x in ms),
each titled with its centre frequency: trained low-frequency filters look like slow, often windowed
waves, high-frequency ones like fast oscillations.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from .._files import write_atomically

__all__ = ["FrontendAnalysis", "analyze_frontend", "centre_frequencies", "filter_spectra", "plot_frontend"]

LOW_HZ = 1000.0  # the summary's split between "low" and the rest
DB_FLOOR = -80.0  # the image's colour range: [DB_FLOOR, 0] dB relative to each filter's peak
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def _filters(filters, name: str = "filters") -> np.ndarray:
    """(N, taps) finite real filters (torch or numpy) -> a new float64 numpy array."""
    if isinstance(filters, torch.Tensor):
        if filters.is_complex():
            raise TypeError(f"{name} must be real, got dtype {filters.dtype}")
        filters = filters.detach().to(device="cpu", dtype=torch.float64).numpy()
    elif not isinstance(filters, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array (N, taps), got {type(filters).__name__}")
    if filters.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {filters.dtype}")
    if filters.ndim != 2 or filters.shape[0] == 0 or filters.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, taps) array, got shape {tuple(filters.shape)}")
    filters = np.array(filters, dtype=np.float64)  # always a copy: nothing passed in is modified
    if not np.isfinite(filters).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return filters


def _sample_rate(sample_rate) -> float:
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating))
            or not math.isfinite(sample_rate) or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive finite number (Hz), got {sample_rate!r}")
    return float(sample_rate)


def _n_fft(n_fft, taps: int) -> int:
    if n_fft is None:
        return 1 << max(4 * taps - 1, 0).bit_length()  # next power of two >= 4 * taps
    if isinstance(n_fft, bool) or not isinstance(n_fft, (int, np.integer)) or n_fft < taps:
        raise ValueError(f"n_fft must be an int >= taps = {taps}, got {n_fft!r}")
    return int(n_fft)


def filter_spectra(filters, sample_rate, n_fft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectra of FIR filters: (magnitudes (N, n_fft // 2 + 1) float64, freqs_hz (F,)).

    filters: (N, taps) torch tensor or numpy array, one filter per row. Each row is zero-padded to
    ``n_fft`` points (default: the next power of two >= 4 * taps, which samples the spectrum 4x
    finer than the filter's own resolution, for smooth curves), and its magnitude is divided by its
    maximum, so every row peaks at 1; an all-zero filter stays all zero.
    """
    filters = _filters(filters)
    sample_rate = _sample_rate(sample_rate)
    n_fft = _n_fft(n_fft, filters.shape[1])
    magnitudes = np.abs(np.fft.rfft(filters, n=n_fft, axis=1))
    peak = magnitudes.max(axis=1, keepdims=True)
    np.divide(magnitudes, peak, out=magnitudes, where=peak > 0)
    return magnitudes, np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)


def centre_frequencies(magnitudes, freqs_hz) -> np.ndarray:
    """Each filter's centre frequency (N,) in Hz: the frequency where its magnitude peaks.

    The peak (argmax; ties go to the lowest frequency, so an all-zero filter sits at 0 Hz) and not
    the spectral centroid: the paper sorts the filters by the band each passes most, and a 25 ms
    filter has a broad floor of leakage / noise across the whole band, which drags a centroid
    towards Nyquist / 2 (a 400-tap 200 Hz filter at 16 kHz with small noise on its taps, a floor
    about -45 dB below its peak, still peaks at 200 Hz but has its centroid near 1.5 kHz), and
    would flatten the very curve the analysis looks for.
    """
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    freqs_hz = np.asarray(freqs_hz, dtype=np.float64)
    if magnitudes.ndim != 2 or magnitudes.shape[0] == 0 or magnitudes.shape[1] == 0:
        raise ValueError(f"magnitudes must be a non-empty (N, F) array, got shape {magnitudes.shape}")
    if freqs_hz.shape != (magnitudes.shape[1],):
        raise ValueError(f"freqs_hz must be ({magnitudes.shape[1]},) to match magnitudes, got shape {freqs_hz.shape}")
    if not (np.isfinite(magnitudes).all() and np.isfinite(freqs_hz).all()):
        raise ValueError("magnitudes and freqs_hz must be finite")
    return freqs_hz[np.argmax(magnitudes, axis=1)]


@dataclass
class FrontendAnalysis:
    """A filterbank sorted by centre frequency, next to the straight line of a Fourier filterbank.

    order: (N,) indices into the filters given, sorting them by centre frequency (stable: equal
        centres keep their original order).
    centre_hz: (N,) the sorted centre frequencies (non-decreasing).
    fourier_hz: (N,) the Fourier line: rank r of N at (r + 0.5) / N * Nyquist, the middle of the r-th
        of N equal bands tiling [0, Nyquist] (a DFT bin's own band); with r / (N - 1) the line would
        put a whole filter on DC and one on Nyquist, where a real filter passes nothing useful, and
        its share of filters below 1 kHz would depend on N's parity.
    magnitudes: (N, F) the sorted rows of ``filter_spectra`` (each peaking at 1).
    freqs_hz: (F,) the frequency of each column of ``magnitudes``.
    filters: (N, taps) the sorted time-domain filters (float64).
    sample_rate: Hz.
    fraction_below_1khz: share of the filters whose centre is below 1 kHz.
    fourier_fraction_below_1khz: the same share on the Fourier line (~ 1 kHz / Nyquist).
    median_hz: the median centre frequency (the Fourier line's is Nyquist / 2).
    """

    order: np.ndarray
    centre_hz: np.ndarray
    fourier_hz: np.ndarray
    magnitudes: np.ndarray
    freqs_hz: np.ndarray
    filters: np.ndarray
    sample_rate: float
    fraction_below_1khz: float
    fourier_fraction_below_1khz: float
    median_hz: float

    @property
    def num_filters(self) -> int:
        return int(self.centre_hz.shape[0])

    @property
    def taps(self) -> int:
        return int(self.filters.shape[1])

    @property
    def nyquist_hz(self) -> float:
        return self.sample_rate / 2

    def deviation_from_fourier(self) -> np.ndarray:
        """(N,) centre_hz - fourier_hz in Hz: negative where the bank crowds low frequencies."""
        return self.centre_hz - self.fourier_hz

    def summary(self) -> str:
        low, line = self.fraction_below_1khz, self.fourier_fraction_below_1khz
        ratio = f" ({low / line:.1f}x the Fourier share)" if line > 0 else ""
        if line > 0 and low >= 1.5 * line:
            verdict = "more filters at low frequencies than a Fourier filterbank: a curved, mel-like bank"
        elif line > 0 and low <= line / 1.5:
            verdict = "fewer filters at low frequencies than a Fourier filterbank"
        else:
            verdict = "about as many filters at low frequencies as a Fourier filterbank: close to its straight line"
        mean_dev = float(np.mean(np.abs(self.deviation_from_fourier())))
        return (f"{self.num_filters} filters of {self.taps} taps ({1000 * self.taps / self.sample_rate:.1f} ms) at "
                f"{self.sample_rate:g} Hz, sorted by peak frequency: median centre {self.median_hz:.0f} Hz "
                f"(a Fourier filterbank: {self.nyquist_hz / 2:.0f} Hz); {100 * low:.1f}% of the filters peak "
                f"below 1 kHz against {100 * line:.1f}% on the Fourier line{ratio}; the centres lie on average "
                f"{mean_dev:.0f} Hz from that line. That is {verdict}.")


def analyze_frontend(model_or_filters, sample_rate=None, n_fft: int | None = None) -> FrontendAnalysis:
    """Sort a front end's filters by centre frequency and compare them with a Fourier filterbank.

    model_or_filters: a model with ``frontend_filters()`` -> (N, taps) and ``config.sample_rate``
    (``sample_rate`` may then be left out; given and different, it is an error), or an (N, taps)
    torch tensor / numpy array of filters, which needs ``sample_rate``.
    """
    if callable(getattr(model_or_filters, "frontend_filters", None)):
        config = getattr(model_or_filters, "config", None)
        if config is None or not hasattr(config, "sample_rate"):
            raise TypeError(f"{type(model_or_filters).__name__} has frontend_filters() but no config.sample_rate")
        model_rate = _sample_rate(config.sample_rate)
        if sample_rate is not None and _sample_rate(sample_rate) != model_rate:
            raise ValueError(f"sample_rate={sample_rate!r} differs from the model's config.sample_rate={config.sample_rate!r}")
        with torch.no_grad():
            filters = model_or_filters.frontend_filters()
        sample_rate = model_rate
    else:
        if sample_rate is None:
            raise ValueError("sample_rate is required when filters are given as an array "
                             "(a model with frontend_filters() brings its own config.sample_rate)")
        filters = model_or_filters
    filters = _filters(filters)
    sample_rate = _sample_rate(sample_rate)
    magnitudes, freqs = filter_spectra(filters, sample_rate, n_fft)
    centres = centre_frequencies(magnitudes, freqs)
    order = np.argsort(centres, kind="stable")
    count = filters.shape[0]
    fourier = (np.arange(count) + 0.5) / count * (sample_rate / 2)
    centre_sorted = centres[order]
    return FrontendAnalysis(
        order=order, centre_hz=centre_sorted, fourier_hz=fourier, magnitudes=magnitudes[order], freqs_hz=freqs,
        filters=filters[order], sample_rate=sample_rate,
        fraction_below_1khz=float(np.mean(centre_sorted < LOW_HZ)),
        fourier_fraction_below_1khz=float(np.mean(fourier < LOW_HZ)),
        median_hz=float(np.median(centre_sorted)))


def _example_ranks(count: int, examples: int) -> np.ndarray:
    """``examples`` distinct ranks evenly spaced over [0, count) (first and last included)."""
    examples = min(examples, count)
    if examples == 1:
        return np.array([count // 2])
    return np.floor(np.linspace(0, count - 1, examples) + 0.5).astype(np.int64)


def plot_frontend(analysis_or_model, out_path, *, examples: int = 16, dpi: int = 120, sample_rate=None) -> str:
    """Draw the filterbank figure (see the module docstring) and save it to ``out_path``.

    analysis_or_model: a FrontendAnalysis, a model with ``frontend_filters()``, or (N, taps) filters
    together with ``sample_rate``. The format follows the extension (.png, .pdf or .svg); the folder
    must exist. ``examples`` filters, evenly spaced along the sorted order, are drawn in the time
    domain on the right (16: a 4 x 4 grid). Returns the path written. Needs matplotlib.
    """
    if not isinstance(out_path, (str, os.PathLike)):
        raise TypeError(f"out_path must be a path (str or os.PathLike), got {type(out_path).__name__}")
    out_path = os.fspath(out_path)
    fmt = FORMATS.get(os.path.splitext(out_path)[1].lower())
    if fmt is None:
        raise ValueError(f"out_path must end in one of {', '.join(FORMATS)}, got {out_path!r}")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise ValueError(f"out_path's folder does not exist: {parent}")
    if isinstance(examples, bool) or not isinstance(examples, (int, np.integer)) or examples < 1:
        raise ValueError(f"examples must be an int >= 1, got {examples!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not math.isfinite(dpi) or dpi <= 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    if isinstance(analysis_or_model, FrontendAnalysis):
        if sample_rate is not None and _sample_rate(sample_rate) != analysis_or_model.sample_rate:
            raise ValueError(f"sample_rate={sample_rate!r} differs from the analysis's {analysis_or_model.sample_rate:g}")
        analysis = analysis_or_model
    else:
        analysis = analyze_frontend(analysis_or_model, sample_rate=sample_rate)
    try:
        # An optional dependency. No pyplot: no display, no global figure state.
        from matplotlib import patheffects
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('plot_frontend needs matplotlib: pip install matplotlib (or pip install "fastwave[figures]")') from exc

    count, khz = analysis.num_filters, analysis.freqs_hz / 1000
    fig = Figure(figsize=(12, 5), layout="constrained")
    outer = fig.add_gridspec(1, 2, width_ratios=(1.15, 1))

    ax = fig.add_subplot(outer[0])
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(analysis.magnitudes.T)  # (F, N): one column per filter
    db = np.clip(db, DB_FLOOR, 0.0)
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=DB_FLOOR, vmax=0.0,
                      extent=(-0.5, count - 0.5, khz[0], khz[-1]), interpolation="nearest")
    ranks = np.arange(count)
    outline = [patheffects.withStroke(linewidth=3, foreground="black")]  # visible on dark and bright images
    ax.plot(ranks, analysis.centre_hz / 1000, color="cyan", lw=1.5, path_effects=outline,
            label="centre frequency (peak)")
    ax.plot(ranks, analysis.fourier_hz / 1000, color="white", lw=1.2, ls="--", path_effects=outline,
            label="Fourier filterbank")
    ax.set_xlim(-0.5, count - 0.5)
    ax.set_ylim(khz[0], khz[-1])
    ax.set_xlabel("neuron, sorted by centre frequency")
    ax.set_ylabel("frequency (kHz)")
    ax.set_title(f"magnitude spectra; {100 * analysis.fraction_below_1khz:.0f}% below 1 kHz "
                 f"(Fourier: {100 * analysis.fourier_fraction_below_1khz:.0f}%)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.6)
    fig.colorbar(image, ax=ax, label="dB re each filter's peak", pad=0.01)

    picks = _example_ranks(count, int(examples))
    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    grid = outer[1].subgridspec(rows, cols)
    time_ms = np.arange(analysis.taps) / analysis.sample_rate * 1000
    for i, rank in enumerate(picks):
        sub = fig.add_subplot(grid[i // cols, i % cols])
        sub.plot(time_ms, analysis.filters[rank], lw=0.7, color="tab:blue")
        sub.set_title(f"#{rank}: {analysis.centre_hz[rank]:.0f} Hz", fontsize=7, pad=2)
        sub.set_yticks([])
        sub.tick_params(labelsize=6, length=2, pad=1)
        sub.set_xlim(time_ms[0], time_ms[-1])
        if i // cols != rows - 1 and i + cols < len(picks):
            sub.set_xticklabels([])
        else:
            sub.set_xlabel("ms", fontsize=7, labelpad=1)

    fig.suptitle(f"Front end: {count} filters of {analysis.taps} taps "
                 f"({1000 * analysis.taps / analysis.sample_rate:.1f} ms at {analysis.sample_rate:g} Hz), "
                 f"sorted by centre frequency; median {analysis.median_hz:.0f} Hz")
    write_atomically(out_path, lambda temporary: fig.savefig(temporary, format=fmt, dpi=dpi), name="out_path")
    return out_path
