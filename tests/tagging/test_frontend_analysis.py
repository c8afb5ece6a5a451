import sys
import types

import numpy as np
import pytest
import torch

from fastwave.tagging.frontend_analysis import (FrontendAnalysis, analyze_frontend, centre_frequencies, filter_spectra,
                                        plot_frontend)
from fastwave.models.classifier import WaveletClassifier

SR, TAPS = 16000, 400
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sinusoids(freqs, rng, taps=TAPS, sr=SR):
    """Hann-windowed sinusoids (one per row) at the given frequencies, random phase and gain."""
    n = np.arange(taps)
    phase = rng.uniform(0, 2 * np.pi, size=(len(freqs), 1))
    gain = rng.uniform(0.1, 3.0, size=(len(freqs), 1))
    return gain * np.hanning(taps) * np.cos(2 * np.pi * np.asarray(freqs)[:, None] * n / sr + phase)


def mel(hz):
    return 2595 * np.log10(1 + np.asarray(hz) / 700)


def mel_to_hz(m):
    return 700 * (10 ** (np.asarray(m) / 2595) - 1)


class FakeModel:
    """The interface analyze_frontend relies on: frontend_filters() and config.sample_rate."""

    def __init__(self, filters, sample_rate=SR):
        self._filters = torch.as_tensor(filters, dtype=torch.float32)
        self.config = types.SimpleNamespace(sample_rate=sample_rate, patch_size=self._filters.shape[1])

    def frontend_filters(self):
        return self._filters.clone()


def test_centres_of_shuffled_sinusoids():
    rng = np.random.default_rng(0)
    truth = rng.uniform(100, 7900, size=40)  # random, hence in no particular order
    filters = sinusoids(truth, rng)
    mags, freqs = filter_spectra(filters, SR)
    assert mags.shape == (40, 1025) and freqs.shape == (1025,)  # n_fft: next power of two >= 1600
    bin_hz = freqs[1] - freqs[0]
    assert bin_hz == pytest.approx(SR / 2048)
    centres = centre_frequencies(mags, freqs)
    assert np.abs(centres - truth).max() <= bin_hz

    analysis = analyze_frontend(torch.from_numpy(filters).float(), sample_rate=SR)
    assert isinstance(analysis, FrontendAnalysis)
    np.testing.assert_array_equal(analysis.order, np.argsort(truth))
    assert np.all(np.diff(analysis.centre_hz) >= 0)
    np.testing.assert_allclose(analysis.centre_hz, np.sort(truth), atol=bin_hz)
    np.testing.assert_allclose(analysis.filters, filters[analysis.order], rtol=1e-6, atol=1e-6)  # float32 input
    np.testing.assert_allclose(analysis.magnitudes, mags[analysis.order], atol=1e-5)
    assert analysis.median_hz == pytest.approx(np.median(analysis.centre_hz))
    assert analysis.num_filters == 40 and analysis.taps == TAPS and analysis.nyquist_hz == SR / 2


def test_ties_and_zero_filter():
    mags = np.array([[0.0, 1.0, 1.0, 0.2], [0.0, 0.0, 0.0, 0.0]])
    freqs = np.array([0.0, 10.0, 20.0, 30.0])
    np.testing.assert_array_equal(centre_frequencies(mags, freqs), [10.0, 0.0])  # ties -> lowest
    with pytest.raises(ValueError, match="freqs_hz"):
        centre_frequencies(mags, freqs[:3])


def test_fourier_line_and_dft_like_bank():
    rng = np.random.default_rng(1)
    count = 40
    even = (np.arange(count) + 0.5) / count * (SR / 2)  # 100, 300, ..., 7900 Hz
    perm = rng.permutation(count)
    analysis = analyze_frontend(sinusoids(even[perm], rng), sample_rate=SR)
    np.testing.assert_allclose(analysis.fourier_hz, even)  # rank r -> (r + 0.5) / N * Nyquist
    np.testing.assert_array_equal(analysis.order, np.argsort(perm))
    bin_hz = analysis.freqs_hz[1]
    assert np.abs(analysis.deviation_from_fourier()).max() <= bin_hz  # on the straight line
    assert analysis.fraction_below_1khz == pytest.approx(analysis.fourier_fraction_below_1khz)
    assert analysis.fourier_fraction_below_1khz == pytest.approx(5 / 40)  # 100 .. 900 Hz
    assert analysis.median_hz == pytest.approx(SR / 4, abs=bin_hz + 100)
    assert "about as many" in analysis.summary()


def test_mel_bank_is_curved():
    rng = np.random.default_rng(2)
    count = 40
    mel_spaced = mel_to_hz(np.linspace(mel(100), mel(7900), count))
    analysis = analyze_frontend(FakeModel(sinusoids(rng.permutation(mel_spaced), rng)))
    assert analysis.sample_rate == SR
    np.testing.assert_allclose(analysis.centre_hz, mel_spaced, atol=analysis.freqs_hz[1])
    # The property the figure shows: far more filters below 1 kHz than the Fourier line has, the
    # curve under the line everywhere inside, and a median far below Nyquist / 2.
    assert analysis.fourier_fraction_below_1khz == pytest.approx(5 / 40)
    assert analysis.fraction_below_1khz == pytest.approx(np.mean(mel_spaced < 1000))
    assert analysis.fraction_below_1khz > 2.4 * analysis.fourier_fraction_below_1khz
    assert np.all(analysis.deviation_from_fourier()[1:-1] < 0)
    assert analysis.median_hz < 0.6 * analysis.fourier_hz[count // 2]
    text = analysis.summary()
    assert "40 filters of 400 taps" in text and "mel-like" in text and "below 1 kHz" in text


def test_normalisation_and_zero_filter():
    rng = np.random.default_rng(3)
    filters = np.concatenate([sinusoids([300.0, 2000.0, 5000.0], rng), np.zeros((1, TAPS))])
    original = filters.copy()
    mags, freqs = filter_spectra(filters, SR, n_fft=512)
    np.testing.assert_array_equal(filters, original)  # input untouched
    assert mags.dtype == np.float64 and mags.shape == (4, 257) and freqs[-1] == SR / 2
    np.testing.assert_allclose(mags[:3].max(axis=1), 1.0)
    assert np.all(mags >= 0) and not np.any(mags[3])
    # Scale does not matter once normalised.
    np.testing.assert_allclose(filter_spectra(1e-3 * filters, SR, n_fft=512)[0], mags, atol=1e-12)
    # n_fft = taps is allowed (no padding).
    assert filter_spectra(filters, SR, n_fft=TAPS)[0].shape == (4, TAPS // 2 + 1)
    assert filter_spectra(filters[:, :3], SR)[0].shape == (4, 9)  # default n_fft = 16 for 3 taps


def test_validation_errors():
    filters = np.random.default_rng(4).normal(size=(4, 32))
    with pytest.raises(ValueError, match="n_fft"):
        filter_spectra(filters, SR, n_fft=31)
    with pytest.raises(ValueError, match="n_fft"):
        filter_spectra(filters, SR, n_fft=64.0)
    with pytest.raises(ValueError, match=r"\(N, taps\)"):
        filter_spectra(filters[0], SR)
    with pytest.raises(ValueError, match=r"\(N, taps\)"):
        filter_spectra(filters[None], SR)
    with pytest.raises(ValueError, match=r"\(N, taps\)"):
        filter_spectra(np.zeros((0, 32)), SR)
    bad = filters.copy()
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        filter_spectra(bad, SR)
    bad[2, 5] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        analyze_frontend(torch.from_numpy(bad), sample_rate=SR)
    for rate in (0, -16000, float("nan"), True, "16000"):
        with pytest.raises(ValueError, match="sample_rate"):
            filter_spectra(filters, rate)
    with pytest.raises(TypeError):
        filter_spectra(filters.tolist(), SR)
    with pytest.raises(TypeError, match="real"):
        filter_spectra(filters.astype(np.complex64), SR)
    with pytest.raises(ValueError, match="sample_rate is required"):
        analyze_frontend(filters)
    model = FakeModel(filters)
    with pytest.raises(ValueError, match="differs"):
        analyze_frontend(model, sample_rate=22050)
    assert analyze_frontend(model, sample_rate=16000.0).sample_rate == SR  # same rate: fine


def test_plot_from_filters_and_formats(tmp_path):
    rng = np.random.default_rng(5)
    filters = sinusoids(rng.uniform(100, 7900, size=24), rng)
    out = tmp_path / "bank.png"
    assert plot_frontend(filters, out, sample_rate=SR, dpi=50) == str(out)
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    svg = plot_frontend(analyze_frontend(filters, sample_rate=SR), str(tmp_path / "bank.svg"), examples=5, dpi=50)
    assert open(svg, "rb").read(200).lstrip().startswith(b"<?xml")
    with pytest.raises(ValueError, match="folder does not exist"):
        plot_frontend(filters, tmp_path / "missing" / "bank.png", sample_rate=SR)
    with pytest.raises(ValueError, match=r"\.png"):
        plot_frontend(filters, tmp_path / "bank.jpg", sample_rate=SR)
    with pytest.raises(ValueError, match="examples"):
        plot_frontend(filters, out, sample_rate=SR, examples=0)


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` fail
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    filters = np.random.default_rng(6).normal(size=(4, 32))
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_frontend(filters, tmp_path / "bank.png", sample_rate=SR)


def test_real_model(tmp_path):
    torch.manual_seed(0)
    model = WaveletClassifier(num_classes=3, frontend=(32,), width=32, heads=2, layers=1)
    filters = model.frontend_filters()
    assert filters.shape == (32, model.config.patch_size)
    analysis = analyze_frontend(model)
    assert analysis.sample_rate == model.config.sample_rate and analysis.num_filters == 32
    assert sorted(analysis.order.tolist()) == list(range(32))
    assert np.all(np.diff(analysis.centre_hz) >= 0)
    np.testing.assert_allclose(analysis.filters, filters.double().numpy()[analysis.order])
    out = plot_frontend(model, tmp_path / "model.png", dpi=50)
    assert open(out, "rb").read(8) == PNG_MAGIC
