"""Labelled sounds generated in the tests: tones of different timbres at random pitches."""
import numpy as np

TIMBRES = ("sine", "square", "saw")


def tone(timbre: str, frequency: float, seconds: float, rate: int = 16000, rng=None) -> np.ndarray:
    """A note with a decaying envelope; the timbre sets the harmonics: sine (the fundamental), square
    (odd harmonics at 1/n), saw (all harmonics at 1/n), band-limited below rate / 2."""
    rng = rng or np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    harmonics = {"sine": [1], "square": range(1, 40, 2), "saw": range(1, 40)}[timbre]
    wave = sum(np.sin(2 * np.pi * n * frequency * t + rng.uniform(0, 2 * np.pi)) / n
               for n in harmonics if n * frequency < rate / 2)
    envelope = np.exp(-t * rng.uniform(1, 4))
    noise = 0.005 * rng.standard_normal(len(t))
    return (0.5 * wave / np.abs(wave).max() * envelope + noise).astype(np.float32)


def timbre_clips(per_class: int, seconds: float = 0.5, seed: int = 0, rate: int = 16000):
    """-> (clips: list of (T,) float32 arrays, labels: (N,) int64 timbre ids), classes interleaved,
    pitches drawn from 110-880 Hz on a log scale."""
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    for _ in range(per_class):
        for label, timbre in enumerate(TIMBRES):
            clips.append(tone(timbre, 110 * 2 ** rng.uniform(0, 3), seconds, rate, rng))
            labels.append(label)
    return clips, np.array(labels)
