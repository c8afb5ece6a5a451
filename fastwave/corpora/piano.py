"""Piano phrases for the sample models: a melody over chords in a random key, tempo and dynamics.

Each phrase is 2-4 bars of 4/4 at 72-132 bpm: the left hand plays a common chord progression (block
chords or broken into eighths), the right hand a stepwise melody that lands on chord tones on the
beat, all under one dynamic shape (crescendo, decrescendo or an arch) with small accents, then a
final chord that rings out. Programs and splits: plans.PIANO_SPLITS.
"""
from __future__ import annotations

import numpy as np

from .._checks import check_int_arg
from . import gm
from .plans import PIANO_SPLITS, SPLITS, Clip, Note, Source, _draw_split

MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 4, 5, 3), (0, 3, 4, 0), (1, 4, 0, 0), (5, 3, 0, 4), (0, 5, 3, 4))  # scale degrees
TAIL_SECONDS = 0.5  # after the last chord's note-off: its release (more would be digital silence)


def _scale_pitch(root: int, scale, degree: int, octave_base: int) -> int:
    """MIDI pitch of a scale degree (any integer, wrapping into octaves) above octave_base + root."""
    return octave_base + root + 12 * (degree // 7) + scale[degree % 7]


def _dynamics(rng: np.random.Generator, beats: int) -> np.ndarray:
    """A velocity per beat: one shape over the phrase, between about 40 and 110."""
    low, high = sorted(rng.uniform(40, 110, size=2))
    x = np.linspace(0.0, 1.0, beats)
    shape = rng.integers(3)
    curve = x if shape == 0 else 1.0 - x if shape == 1 else 1.0 - np.abs(2.0 * x - 1.0)
    return low + (high - low) * curve


def plan_phrase(rng: np.random.Generator) -> tuple[tuple[Note, ...], float]:
    """One phrase -> (its notes, its length in seconds including the final ring)."""
    root, scale = int(rng.integers(12)), MAJOR if rng.random() < 0.6 else MINOR
    beat = 60.0 / float(rng.uniform(72, 132))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    bars = int(rng.integers(2, 5))
    chords = [progression[b % 4] for b in range(bars)] + [0]  # end on the tonic
    velocity = _dynamics(rng, 4 * bars + 1)
    broken = rng.random() < 0.5
    notes = []

    def add(pitch, beat_at, beats_long, loud):
        accent = rng.normal(0.0, 4.0)
        notes.append(Note(int(pitch), int(np.clip(velocity[min(int(beat_at), len(velocity) - 1)] + loud + accent, 1, 127)),
                          round(beat_at * beat, 4), round(beats_long * beat, 4)))

    for b, degree in enumerate(chords):  # left hand, around C3
        triad = [_scale_pitch(root, scale, degree + k, 48) for k in (0, 2, 4)]
        last = b == bars
        if broken and not last:
            for e, k in enumerate((0, 1, 2, 1, 0, 1, 2, 1)):
                add(triad[k], 4 * b + e / 2, 0.5, -12)
        else:
            for pitch in triad:
                add(pitch, 4 * b, 4.0 if not last else 2.0, -10)
    degree, position = int(rng.integers(7, 12)), 0.0  # right hand, around C5
    while position < 4 * bars:
        length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        length = min(length, 4 * bars - position)
        if position == int(position):  # on the beat: a tone of the bar's chord
            chord = chords[int(position) // 4]
            options = [chord + k + 7 * o for k in (0, 2, 4) for o in (0, 1, 2)]
            degree = min(options, key=lambda d: abs(d - degree))
        add(_scale_pitch(root, scale, degree, 48), position, length, 8)
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 1, 1, 2]), 7, 18))
        position += length
    final = _scale_pitch(root, scale, chords[-1] + 7, 48)
    add(final + 12, 4 * bars, 2.0, 4)
    return tuple(sorted(notes, key=lambda n: (n.start, n.pitch))), 4 * bars * beat + 2 * beat + TAIL_SECONDS


def phrase_stream(seed: int):
    """Piano phrases of ``seed``, one after another, without end -> (notes, seconds) each: the
    random scores of ``score.random_score`` and the phrases of ``plan_piano_phrases`` (not the
    piano corpus's, which draws its own)."""
    rng = np.random.default_rng([seed, 5])
    while True:
        yield plan_phrase(rng)


def plan_piano(minutes: float, seed: int = 0) -> list[Clip]:
    """Phrases until their total reaches ``minutes``; each in a split drawn 70/15/15 and played by
    one of that split's pianos (PIANO_SPLITS)."""
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes <= 6000:
        raise ValueError(f"minutes must be a number in (0, 6000], got {minutes!r}")
    rng = np.random.default_rng([seed, 4])
    clips, total = [], 0.0
    while total < 60.0 * minutes:
        split = _draw_split(rng)
        programs = PIANO_SPLITS[split]
        program = int(programs[int(rng.integers(len(programs)))])
        notes, seconds = plan_phrase(rng)
        clips.append(Clip(f"piano_{len(clips):05d}", round(seconds, 4), (Source(program, notes),), ("piano",), split))
        total += seconds
    return clips


def plan_piano_phrases(count: int, instrument: int, seed: int = 0, split: str = "test") -> list[Clip]:
    """``count`` phrases of the piano corpus's generator, every one played by ``instrument``
    (program + 128 x font: e.g. 128 is the second SoundFont's Acoustic Grand) and filed in
    ``split``: a test set of a chosen piano, larger than the corpus's own. The phrases are
    ``phrase_stream(seed)``'s, the random scores ``fastwave generate`` plays for that seed, not the
    piano corpus's."""
    count = check_int_arg(count, "count")
    instrument = check_int_arg(instrument, "instrument", minimum=0)
    if instrument >= 128 * gm.MAX_SOUNDFONTS or gm.family(instrument % 128) != "piano":
        raise ValueError(f"instrument must be a piano-family program (0-7) + 128 x font (font < {gm.MAX_SOUNDFONTS}), "
                         f"got {instrument}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    clips = []
    for index, (notes, seconds) in zip(range(count), phrase_stream(seed)):
        clips.append(Clip(f"piano_{index:05d}", round(seconds, 4), (Source(instrument, notes),), ("piano",), split))
    return clips
