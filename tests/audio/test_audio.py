"""Tests for fastwave.audio: file I/O, resampling, mu-law and spectral features."""
import math

import numpy as np
import pytest
import soundfile
import torch

from fastwave.audio import (
    hz_to_mel,
    load_audio,
    log_mel_spectrogram,
    log_spectrogram,
    mel_filterbank,
    mel_to_hz,
    mulaw_decode,
    mulaw_encode,
    mulaw_silence,
    resample,
    save_audio,
    stft_magnitude,
)


def sine(freq, rate, seconds=1.0, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio, rate):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.argmax(spectrum) * rate / len(audio)


@pytest.fixture
def stereo():
    return np.stack([sine(440, 16000, 0.25), sine(880, 16000, 0.25, amplitude=0.25)])


# --------------------------------------------------------------------------------------------------
# load / save
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, subtype, tolerance",
    [("a.wav", "PCM_16", 1 / 32768), ("a.wav", "FLOAT", 0.0), ("a.flac", None, 1 / 32768), ("a.flac", "PCM_24", 2**-23)],
)
def test_round_trip_stereo(tmp_path, stereo, name, subtype, tolerance):
    path = tmp_path / name
    save_audio(path, stereo, 16000, subtype=subtype)
    audio, rate = load_audio(path, mono=False)
    assert rate == 16000
    assert audio.shape == stereo.shape and audio.dtype == np.float32
    assert audio.flags.c_contiguous
    np.testing.assert_allclose(audio, stereo, atol=tolerance)


@pytest.mark.parametrize("name", ["a.wav", "a.flac"])
def test_round_trip_mono(tmp_path, name):
    mono = sine(440, 8000, 0.1)
    save_audio(tmp_path / name, torch.from_numpy(mono), 8000)  # torch input too
    audio, rate = load_audio(str(tmp_path / name), dtype=np.float64)
    assert rate == 8000 and audio.shape == mono.shape and audio.dtype == np.float64
    np.testing.assert_allclose(audio, mono, atol=1 / 32768)
    as_channels, _ = load_audio(tmp_path / name, mono=False)
    assert as_channels.shape == (1, len(mono))


def test_mono_mixdown_averages_channels(tmp_path, stereo):
    save_audio(tmp_path / "a.wav", stereo, 16000, subtype="FLOAT")
    audio, _ = load_audio(tmp_path / "a.wav")
    assert audio.shape == (stereo.shape[1],)
    np.testing.assert_allclose(audio, stereo.mean(axis=0), atol=1e-7)


def test_float_subtype_keeps_samples_outside_unit_range(tmp_path):
    loud = np.array([-2.0, 0.5, 3.0], dtype=np.float32)
    save_audio(tmp_path / "loud.wav", loud, 8000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "loud.wav")[0], loud)
    with pytest.raises(ValueError, match="outside"):
        save_audio(tmp_path / "loud16.wav", loud, 8000, subtype="PCM_16")


def test_save_does_not_modify_input(tmp_path, stereo):
    original = stereo.copy()
    tensor = torch.from_numpy(stereo.copy())
    save_audio(tmp_path / "a.wav", stereo, 16000)
    save_audio(tmp_path / "b.wav", tensor, 16000)
    np.testing.assert_array_equal(stereo, original)
    np.testing.assert_array_equal(tensor.numpy(), original)


def test_load_resamples_and_keeps_frequency(tmp_path):
    save_audio(tmp_path / "a.wav", sine(1000, 44100), 44100, subtype="FLOAT")
    audio, rate = load_audio(tmp_path / "a.wav", sample_rate=16000)
    assert rate == 16000 and audio.shape == (16000,) and audio.dtype == np.float32
    assert abs(peak_hz(audio, 16000) - 1000) <= 1.0
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.01)


def test_resample_keeps_kind_layout_and_frequency(stereo):
    tensor = torch.from_numpy(stereo)
    out = resample(tensor, 16000, 8000)
    assert isinstance(out, torch.Tensor) and out.shape == (2, stereo.shape[1] // 2) and out.dtype == torch.float32
    assert abs(peak_hz(out[0].numpy(), 8000) - 440) <= 4.0
    assert resample(stereo[0], 16000, 24000).shape == (stereo.shape[1] * 3 // 2,)
    with pytest.raises(ValueError, match="orig_sample_rate"):
        resample(stereo, 0, 8000)


def test_load_refuses_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match="no such file"):  # DESIGN.md: a missing file is a ValueError too
        load_audio(tmp_path / "nope.wav")


def test_load_refuses_text_file(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("this is not audio\n" * 10)
    with pytest.raises(ValueError, match="text.wav"):
        load_audio(path)


def test_load_refuses_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)  # save_audio itself refuses this
    with pytest.raises(ValueError, match="no samples"):
        load_audio(path)


def test_load_refuses_non_finite_samples(tmp_path):
    path = tmp_path / "nan.wav"
    soundfile.write(path, np.array([0.1, np.nan, 0.2], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        load_audio(path)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16000", True])
def test_load_refuses_bad_sample_rate(tmp_path, rate):
    save_audio(tmp_path / "a.wav", sine(440, 8000, 0.01), 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(tmp_path / "a.wav", sample_rate=rate)


@pytest.mark.parametrize(
    "audio, match",
    [
        (np.zeros((1, 2, 100), np.float32), "rank"),
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        (np.array([0.0, np.inf], np.float32), "NaN or infinite"),
        (np.zeros(10, np.int16), "floating"),
        (np.zeros((1000, 2), np.float32), "channels"),
    ],
)
def test_save_refuses_bad_audio(tmp_path, audio, match):
    with pytest.raises(ValueError, match=match) as error:
        save_audio(tmp_path / "a.wav", audio, 16000)
    assert "audio" in str(error.value)
    assert not (tmp_path / "a.wav").exists()


def test_save_refuses_bad_rate_extension_and_subtype(tmp_path):
    audio = sine(440, 8000, 0.01)
    with pytest.raises(ValueError, match="sample_rate"):
        save_audio(tmp_path / "a.wav", audio, -1)
    with pytest.raises(ValueError, match="extension"):
        save_audio(tmp_path / "a.xyz", audio, 8000)
    with pytest.raises(ValueError, match="subtype"):
        save_audio(tmp_path / "a.wav", audio, 8000, subtype="VORBIS")


# --------------------------------------------------------------------------------------------------
# mu-law
# --------------------------------------------------------------------------------------------------


def compand(x, classes):
    mu = classes - 1
    return np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)


@pytest.mark.parametrize("classes", [16, 256, 1024])
def test_mulaw_round_trip_within_quantisation_step(classes):
    x = np.random.default_rng(0).uniform(-1, 1, 20000).astype(np.float32)
    tokens = mulaw_encode(x, classes)
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < classes
    decoded = mulaw_decode(tokens, classes)
    assert decoded.dtype == np.float32
    # Rounding in the companded domain is off by at most half a step, 1 / mu ...
    step = 1.0 / (classes - 1)
    assert np.abs(compand(decoded, classes) - compand(x, classes)).max() <= step + 1e-6
    # ... which in the linear domain is at most one gap between neighbouring levels.
    levels = mulaw_decode(np.arange(classes), classes)
    gaps = np.diff(levels, prepend=levels[0], append=levels[-1])
    allowed = np.maximum(gaps[tokens], gaps[tokens + 1])
    assert (np.abs(decoded - x) <= allowed + 1e-6).all()


@pytest.mark.parametrize("classes", [2, 3, 16, 256, 1024, 65536])
def test_mulaw_token_round_trip_is_exact(classes):
    tokens = np.arange(classes)
    levels = mulaw_decode(tokens, classes)
    np.testing.assert_array_equal(mulaw_encode(levels, classes), tokens)
    assert levels[0] == -1.0 and levels[-1] == 1.0
    assert (np.diff(levels) > 0).all()  # strictly increasing


def test_mulaw_numpy_and_torch_agree():
    x = np.random.default_rng(1).uniform(-1.2, 1.2, 5000).astype(np.float32)  # clipping included
    from_numpy = mulaw_encode(x)
    from_torch = mulaw_encode(torch.from_numpy(x))
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.int64
    np.testing.assert_array_equal(from_numpy, from_torch.numpy())
    decoded = mulaw_decode(from_torch)
    assert isinstance(decoded, torch.Tensor) and decoded.dtype == torch.float32
    np.testing.assert_array_equal(mulaw_decode(from_numpy), decoded.numpy())


def test_mulaw_encode_is_monotonic_and_clips():
    x = np.linspace(-1.5, 1.5, 10001)
    tokens = mulaw_encode(x)
    assert (np.diff(tokens) >= 0).all()
    assert tokens[0] == 0 and tokens[-1] == 255


@pytest.mark.parametrize("classes", [2, 3, 16, 255, 256, 1024])
def test_mulaw_silence(classes):
    assert mulaw_silence(classes) == classes // 2 == int(mulaw_encode(0.0, classes))
    levels = mulaw_decode(np.arange(classes), classes)
    # The quietest non-negative level: exactly 0 for odd class counts, the first step above 0 for even.
    assert levels[mulaw_silence(classes)] == levels[levels >= 0].min()
    if classes % 2:
        assert levels[mulaw_silence(classes)] == 0.0


def test_mulaw_keeps_shape_and_input():
    x = torch.linspace(-1, 1, 24).reshape(2, 3, 4)
    original = x.clone()
    tokens = mulaw_encode(x)
    assert tokens.shape == x.shape
    assert torch.equal(x, original)
    tokens_before = tokens.clone()
    mulaw_decode(tokens)
    assert torch.equal(tokens, tokens_before)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: mulaw_encode(np.array([0.0, np.nan])), "audio"),
        (lambda: mulaw_encode(np.zeros(3), classes=1), "classes"),
        (lambda: mulaw_encode(np.zeros(3, np.int16)), "audio"),
        (lambda: mulaw_decode(np.array([0, 256])), "tokens"),
        (lambda: mulaw_decode(np.array([-1, 3])), "tokens"),
        (lambda: mulaw_decode(torch.tensor([0, 16]), classes=16), "tokens"),
        (lambda: mulaw_decode(np.array([0, 1]), classes=2.5), "classes"),
        (lambda: mulaw_silence(0), "classes"),
    ],
)
def test_mulaw_refuses_bad_input(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_mulaw_decode_refuses_float_tokens_and_takes_wide_unsigned_ones():
    with pytest.raises(TypeError, match="tokens must hold integer"):
        mulaw_decode(np.array([0.0, 1.0]))
    expected = mulaw_decode(np.array([0, 300, 65535]), classes=65536)
    for dtype in (np.uint16, np.uint32, np.uint64, ">i4"):
        np.testing.assert_array_equal(mulaw_decode(np.array([0, 300, 65535], dtype), classes=65536), expected)
    torch.testing.assert_close(mulaw_decode(torch.tensor([0, 300, 65535], dtype=torch.uint16), classes=65536),
                               torch.from_numpy(expected))
    assert mulaw_decode(np.zeros(0, np.int64)).shape == (0,)


# --------------------------------------------------------------------------------------------------
# STFT and log-mel
# --------------------------------------------------------------------------------------------------


def test_stft_of_sine_peaks_at_its_bin():
    rate, n_fft = 16000, 512
    audio = sine(1000, rate)  # 1000 Hz is bin 1000 * 512 / 16000 = 32
    magnitude = stft_magnitude(audio, n_fft=n_fft, hop_length=160)
    assert magnitude.shape == (n_fft // 2 + 1, 1 + len(audio) // 160)
    interior = magnitude[:, 5:-5]
    assert (interior.argmax(dim=0) == 32).all()
    power = stft_magnitude(audio, power=2.0)
    torch.testing.assert_close(power, magnitude**2)


def test_stft_handles_batches_and_dtypes():
    batch = torch.from_numpy(np.stack([sine(500, 16000, 0.1), sine(2000, 16000, 0.1)])).reshape(1, 2, -1)
    magnitude = stft_magnitude(batch)
    assert magnitude.shape == (1, 2, 257, 11)
    torch.testing.assert_close(magnitude[0, 1], stft_magnitude(batch[0, 1]))
    assert stft_magnitude(batch.double()).dtype == torch.float64
    assert stft_magnitude(batch.half()).dtype == torch.float32
    no_centre = stft_magnitude(batch, n_fft=400, win_length=320, window="hamming", center=False)
    assert no_centre.shape == (1, 2, 201, 1 + (1600 - 400) // 160)


def test_log_spectrogram_is_log_of_magnitude():
    audio = sine(440, 16000, 0.1)
    expected = torch.log(stft_magnitude(audio, n_fft=256, hop_length=64) + 1e-3)
    torch.testing.assert_close(log_spectrogram(audio, n_fft=256, hop_length=64, eps=1e-3), expected)
    assert torch.isfinite(log_spectrogram(np.zeros(1000, np.float32))).all()  # silence stays finite


def test_log_mel_shape_and_values():
    audio = np.stack([sine(440, 16000, 0.5), np.zeros(8000, np.float32)])
    original = audio.copy()
    features = log_mel_spectrogram(audio, 16000)
    assert features.shape == (2, 80, 1 + 8000 // 160) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    assert torch.allclose(features[1], torch.tensor(math.log(1e-5)))  # silence is log(eps)
    # 440 Hz lands in the mel channel whose filter peaks nearest to it.
    centres = mel_to_hz(np.linspace(0, hz_to_mel(8000), 82))[1:-1]
    assert features[0, :, 10:-10].argmax(dim=0).float().median() == pytest.approx(np.argmin(abs(centres - 440)), abs=1)
    np.testing.assert_array_equal(audio, original)
    features = log_mel_spectrogram(torch.from_numpy(audio), 22050, n_fft=1024, hop_length=256, n_mels=64, f_max=8000.0)
    assert features.shape == (2, 64, 1 + 8000 // 256)


def test_hz_mel_scales():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # Slaney: 200/3 Hz per mel below 1 kHz
    assert hz_to_mel(440.0) == pytest.approx(6.6)
    assert hz_to_mel(1000.0 * 6.4) == pytest.approx(15.0 + 27.0)  # 27 mels per factor 6.4 above 1 kHz
    assert hz_to_mel(1000.0, htk=True) == pytest.approx(1000.0, abs=0.02)
    freqs = np.array([0.0, 20.0, 500.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0])
    for htk in (False, True):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs, htk=htk), htk=htk), freqs, rtol=1e-10, atol=1e-9)
        assert (np.diff(hz_to_mel(freqs, htk=htk)) > 0).all()
    with pytest.raises(ValueError, match="frequencies"):
        hz_to_mel(-1.0)


@pytest.mark.parametrize("htk", [False, True])
def test_mel_filterbank_properties(htk):
    rate, n_fft, n_mels, f_min, f_max = 16000, 4096, 40, 50.0, 7000.0
    filters = mel_filterbank(rate, n_fft, n_mels, f_min, f_max, htk=htk).numpy()
    assert filters.shape == (n_mels, n_fft // 2 + 1) and filters.dtype == np.float32
    assert (filters >= 0).all()
    bin_hz = rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min, htk), hz_to_mel(f_max, htk), n_mels + 2), htk)
    for m, row in enumerate(filters):
        support = np.flatnonzero(row)
        peak = np.argmax(row)
        # A triangle: one contiguous run, rising to the peak and falling after it, ...
        assert (np.diff(support) == 1).all()
        assert (np.diff(row[support[0] : peak + 1]) >= 0).all() and (np.diff(row[peak : support[-1] + 1]) <= 0).all()
        # ... inside its two neighbours' centres, peaking at its own mel-spaced centre, ...
        assert edges[m] < support[0] * bin_hz and support[-1] * bin_hz < edges[m + 2]
        assert abs(peak * bin_hz - edges[m + 1]) <= bin_hz
        # ... with area 1 (Slaney normalisation: height 2 / width).
        assert row.sum() * bin_hz == pytest.approx(1.0, rel=0.02)
        assert row.max() == pytest.approx(2 / (edges[m + 2] - edges[m]), rel=0.05)
    assert filters[:, : int(f_min / bin_hz)].sum() == 0 and filters[:, int(f_max / bin_hz) + 1 :].sum() == 0


def test_mel_filterbank_default_covers_all_bins_and_is_a_copy():
    filters = mel_filterbank(16000, 512)
    assert filters.shape == (80, 257) and (filters.sum(dim=1) > 0).all()
    filters.zero_()  # must not corrupt the cached bank
    assert mel_filterbank(16000, 512).sum() > 0


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: stft_magnitude(np.zeros((0,), np.float32)), "audio"),
        (lambda: stft_magnitude(np.float32(0.5)), "audio"),
        (lambda: stft_magnitude(np.array([0.0, np.nan])), "audio"),
        (lambda: stft_magnitude(np.zeros(100), n_fft=0), "n_fft"),
        (lambda: stft_magnitude(np.zeros(100), hop_length=-1), "hop_length"),
        (lambda: stft_magnitude(np.zeros(100), win_length=1024), "win_length"),
        (lambda: stft_magnitude(np.zeros(100), window="triangle"), "window"),
        (lambda: stft_magnitude(np.zeros(100), center=False), "n_fft"),
        (lambda: log_spectrogram(np.zeros(100), eps=0.0), "eps"),
        (lambda: mel_filterbank(16000, 512, f_max=9000.0), "f_max"),
        (lambda: mel_filterbank(16000, 512, f_min=8000.0), "f_min"),
        (lambda: mel_filterbank(0, 512), "sample_rate"),
        (lambda: mel_filterbank(16000, 512, n_mels=0), "n_mels"),
        (lambda: log_mel_spectrogram(np.zeros(100), 16000.5), "sample_rate"),
        (lambda: log_mel_spectrogram(np.zeros((2, 0)), 16000), "audio"),
    ],
)
def test_features_refuse_bad_input(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_mel_filterbank_warns_about_empty_filters():
    with pytest.warns(UserWarning, match="empty"):
        mel_filterbank(16000, 64, n_mels=128)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_features_and_mulaw_on_cuda():
    audio = torch.from_numpy(sine(1000, 16000, 0.2)).cuda()
    features = log_mel_spectrogram(audio, 16000)
    assert features.device == audio.device
    torch.testing.assert_close(features.cpu(), log_mel_spectrogram(audio.cpu(), 16000), rtol=1e-4, atol=1e-4)
    tokens = mulaw_encode(audio)
    assert tokens.device == audio.device
    assert torch.equal(tokens.cpu(), mulaw_encode(audio.cpu()))
    assert mulaw_decode(tokens).device == audio.device


def test_save_accepts_half_precision_and_lower_case_subtypes(tmp_path):
    audio = sine(440, 8000, 0.01)
    save_audio(tmp_path / "half.wav", audio.astype(np.float16), 8000)
    save_audio(tmp_path / "bf16.wav", torch.from_numpy(audio).to(torch.bfloat16), 8000, subtype="float")
    loaded, _ = load_audio(tmp_path / "half.wav")
    np.testing.assert_allclose(loaded, audio, atol=2e-3)
    assert load_audio(tmp_path / "bf16.wav")[0].shape == audio.shape
