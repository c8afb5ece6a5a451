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


SOUNDS = ("low_tone", "high_tone", "noise_burst")


def sound_event(kind: str, samples: int, rate: int, rng) -> np.ndarray:
    """One event somewhere in ``samples``: a low (150-400 Hz) or high (2-5 kHz) sine of 0.2-0.6 s, or
    a white-noise burst of 50-200 ms; silence elsewhere."""
    out = np.zeros(samples, np.float32)
    seconds = rng.uniform(0.05, 0.2) if kind == "noise_burst" else rng.uniform(0.2, 0.6)
    length = min(samples, int(seconds * rate))
    start = int(rng.integers(0, samples - length + 1))
    if kind == "noise_burst":
        event = rng.standard_normal(length)
    else:
        low, high = (150, 400) if kind == "low_tone" else (2000, 5000)
        event = np.sin(2 * np.pi * rng.uniform(low, high) * np.arange(length) / rate + rng.uniform(0, 2 * np.pi))
    out[start:start + length] = event / np.abs(event).max()
    return out


def tagged_mixtures(n: int, seconds=(1.0, 1.0), seed: int = 0, rate: int = 16000):
    """Multi-label clips: each mixes a random non-empty subset of SOUNDS at random gains (0.2-0.6),
    plus faint noise -> (clips: list of (T,) float32 arrays, multi-hot (N, 3) float32). ``seconds``:
    the range the clip lengths are drawn from."""
    rng = np.random.default_rng(seed)
    clips, targets = [], np.zeros((n, len(SOUNDS)), np.float32)
    for i in range(n):
        samples = int(rng.uniform(*seconds) * rate)
        present = rng.random(len(SOUNDS)) < 0.5
        present[rng.integers(len(SOUNDS))] = True
        clip = 0.002 * rng.standard_normal(samples).astype(np.float32)
        for k in np.flatnonzero(present):
            clip += rng.uniform(0.2, 0.6) * sound_event(SOUNDS[k], samples, rate, rng)
        clips.append(clip / max(1.0, float(np.abs(clip).max()) / 0.95))  # overlapping events stay in [-1, 1]
        targets[i, present] = 1.0
    return clips, targets
