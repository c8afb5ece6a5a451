"""fastwave.audio.measures: spectral flatness and chroma, the numbers that check generated audio."""
import numpy as np
import pytest

from fastwave.audio.measures import chroma, chroma_agreement, spectral_flatness

RATE = 16000


def tone(midi_pitch, seconds=1.0, harmonics=4):
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 440.0 * 2 ** ((midi_pitch - 69) / 12)
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, harmonics + 1)).astype(np.float32)


def test_flatness_tells_tones_from_noise():
    noise = np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    assert spectral_flatness(noise) == pytest.approx(np.exp(-np.euler_gamma), abs=0.03)
    assert spectral_flatness(tone(60)) < 1e-4
    assert spectral_flatness(tone(60) + 0.01 * noise) < 0.01 < spectral_flatness(tone(60) + 0.3 * noise)


@pytest.mark.parametrize("pitch", [48, 60, 69, 70, 83])
def test_chroma_peaks_at_the_pitch_class(pitch):
    frames = chroma(tone(pitch))
    assert frames.shape == (1 + (RATE - 2048) // 512, 12)
    assert np.allclose(np.linalg.norm(frames, axis=1), 1.0)
    assert (frames.argmax(1) == pitch % 12).all()


def test_chroma_agreement_is_high_for_the_same_notes_only():
    c_major = tone(60) + tone(64) + tone(67)
    assert chroma_agreement(c_major, c_major) == pytest.approx(1.0)
    assert chroma_agreement(tone(48) + tone(76) + tone(67), c_major) > 0.9  # same classes, other octaves
    assert chroma_agreement(tone(61) + tone(65) + tone(68), c_major) < 0.2  # a semitone up
    f_sharp_then_c = np.concatenate([tone(66), c_major])
    silent_then_c = np.concatenate([np.zeros(RATE, np.float32), c_major])  # silent frames do not count
    assert chroma_agreement(f_sharp_then_c, silent_then_c) > 0.95
    assert chroma_agreement(f_sharp_then_c, np.concatenate([c_major, c_major])) < 0.7


def test_measures_refuse_bad_audio():
    with pytest.raises(ValueError, match="one channel"):
        spectral_flatness(np.zeros((2, RATE), np.float32))
    with pytest.raises(ValueError, match="fewer than n_fft"):
        chroma(np.zeros(1000, np.float32))
