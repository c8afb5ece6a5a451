"""What each corpus clip plays, decided from a seed before any audio is rendered.

A clip is a few sources mixed at gains; a source is one GM program playing notes. Plans are plain
data, so a corpus is reproducible from (kind, size, seed) and testable without a synthesizer.

Splits hold out whole programs: within every family, a seeded shuffle gives 6 programs to train,
1 to val and 1 to test, and a clip uses only programs of its split, so the test set is made of
instruments the models never heard. The piano corpus uses the four acoustic-sounding pianos
(programs 0-3): 0 and 3 train, 2 val, 1 test. (FluidR3_GM's program 1 plays program 0's samples,
louder: docs/corpora.md.)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .._checks import check_int_arg
from . import gm

SPLITS = ("train", "val", "test")
PIANO_SPLITS = {"train": (0, 3), "val": (2,), "test": (1,)}
NSYNTH_VELOCITIES = (25, 50, 75, 100, 127)


@dataclasses.dataclass(frozen=True)
class Note:
    pitch: int        # MIDI note number
    velocity: int     # 1..127
    start: float      # seconds from the clip's start
    duration: float   # seconds held before the note-off (the release rings on after it)


@dataclasses.dataclass(frozen=True)
class Source:
    program: int               # GM program 0..127, + 128 x the SoundFont's index when a renderer plays several
    notes: tuple[Note, ...]
    gain: float = 1.0          # linear, applied when mixing


@dataclasses.dataclass(frozen=True)
class Clip:
    name: str                  # file name without extension
    seconds: float
    sources: tuple[Source, ...]
    labels: tuple[str, ...]    # GM family names, sorted
    split: str


def program_splits(seed: int) -> dict[str, tuple[int, ...]]:
    """Programs of each split: per family 6 train, 1 val, 1 test, shuffled by ``seed``."""
    rng = np.random.default_rng([seed, 1])
    chosen = {split: [] for split in SPLITS}
    for name in gm.FAMILIES:
        programs = rng.permutation(gm.family_programs(name)).tolist()
        chosen["train"] += programs[:6]
        chosen["val"].append(programs[6])
        chosen["test"].append(programs[7])
    return {split: tuple(sorted(programs)) for split, programs in chosen.items()}



def program_folds(seed: int, folds: int | None = None, *, k: int = 8,
                  soundfonts: int = 1) -> list[dict[str, tuple[int, ...]]]:
    """k-fold cross-validation over programs: the first ``folds`` (default all ``k``) of ``k`` splits
    of the 128 programs (``k`` 2, 4 or 8), each holding out 8 / ``k`` programs per family for test
    and the next one for val, so that over the ``k`` folds every program is tested exactly once.
    Fold 0 of ``k`` = 8 is ``program_splits(seed)``: a corpus rendered with that split serves every
    fold, its clips re-assigned by program. With ``soundfonts`` > 1 each split holds its programs'
    renditions in every font (instruments program + 128 x font, ``gm``): the same folds, each
    instrument tested once, and a test program heard in no font (another font's rendition of a
    program is too close a relative to count as an unheard instrument)."""
    if isinstance(k, bool) or k not in (2, 4, 8):
        raise ValueError(f"k must be 2, 4 or 8 (it divides the 8 programs of a family), got {k!r}")
    soundfonts = gm.check_soundfonts(soundfonts)
    folds = k if folds is None else folds
    if isinstance(folds, bool) or not isinstance(folds, int) or not 1 <= folds <= k:
        raise ValueError(f"folds must be an int in [1, {k}] (the first folds of k = {k}), got {folds!r}")
    per_fold = 8 // k
    rng = np.random.default_rng([seed, 1])  # the permutations of program_splits
    order = {name: rng.permutation(gm.family_programs(name)).tolist() for name in gm.FAMILIES}
    result = []
    for fold in range(folds):
        chosen = {split: [] for split in SPLITS}
        for programs in order.values():
            test = [programs[(7 - per_fold * fold - j) % 8] for j in range(per_fold)]
            val = programs[(7 - per_fold * (fold + 1)) % 8]
            chosen["test"] += test
            chosen["val"].append(val)
            chosen["train"] += [p for p in programs if p not in test and p != val]
        result.append({split: tuple(sorted(p + 128 * font for p in programs for font in range(soundfonts)))
                       for split, programs in chosen.items()})
    return result

def _draw_split(rng: np.random.Generator, fractions=(0.7, 0.15, 0.15)) -> str:
    return SPLITS[int(rng.choice(3, p=fractions))]


def _pitch(rng: np.random.Generator, program: int) -> int:
    low, high = gm.PITCH_RANGES[gm.family(program)]
    return int(rng.integers(low, high + 1))


def plan_notes(count: int, seed: int = 0, seconds: float = 1.0, soundfonts: int = 1) -> list[Clip]:
    """NSynth-like single notes: ``count`` clips of ``seconds`` (1 or 2), one note held for three
    quarters of the clip, program uniform over the clip's split (so the 16 families about evenly),
    pitch uniform in the family's range, velocity one of NSynth's five. Label: the family. With
    ``soundfonts`` > 1 each note's program is played by one of that many fonts, uniformly
    (instrument = program + 128 x font): a program's renditions share its split, so a test program
    is heard in no font."""
    count = check_int_arg(count, "count")
    if isinstance(seconds, bool) or seconds not in (1.0, 2.0):
        raise ValueError(f"seconds must be 1 or 2 (NSynth-like notes), got {seconds!r}")
    soundfonts = gm.check_soundfonts(soundfonts)
    splits = program_splits(seed)
    rng = np.random.default_rng([seed, 2])
    clips = []
    for i in range(count):
        split = _draw_split(rng)
        program = int(rng.choice(splits[split]))
        if soundfonts > 1:  # one font draws nothing: its plans stay those of before fonts were added
            program += 128 * int(rng.integers(soundfonts))
        pitch = _pitch(rng, program)
        velocity = int(rng.choice(NSYNTH_VELOCITIES))
        note = Note(pitch, velocity, 0.0, 0.75 * seconds)
        clips.append(Clip(f"note_{i:06d}_p{program:03d}_m{pitch:03d}_v{velocity:03d}", seconds,
                          (Source(program, (note,)),), (gm.family(program),), split))
    return clips


def _phrase(rng: np.random.Generator, program: int, seconds: float) -> tuple[Note, ...]:
    """A short phrase for a mixture: 2-4 notes stepping through a scale, inside the clip."""
    count = int(rng.integers(2, 5))
    low, high = gm.PITCH_RANGES[gm.family(program)]
    pitch = int(rng.integers(low, high + 1))
    start, notes = float(rng.uniform(0.0, 0.3 * seconds)), []
    step = (seconds - start) / count
    for _ in range(count):
        notes.append(Note(pitch, int(rng.integers(50, 128)), round(start, 4), round(0.8 * step, 4)))
        pitch = int(np.clip(pitch + rng.choice([-4, -3, -2, -1, 1, 2, 3, 4]), low, high))
        start += step
    return tuple(notes)


def plan_mixtures(count: int, seed: int = 0, seconds: float = 1.0, splits: dict | None = None,
                  only: str | None = None) -> list[Clip]:
    """FSD50K-like multi-label clips: 1-3 sources from different families, each a single note or a
    short phrase, at gains from -12 to 0 dB. Labels: every family present. ``splits`` (default
    ``program_splits(seed)``): the programs of each split, e.g. a fold of ``program_folds``; every
    split must hold a program of every family. Clips fall in the splits at 70/15/15%, or every one in
    split ``only`` (e.g. "test": a larger test set of a fold's held-out programs)."""
    count = check_int_arg(count, "count")
    if only is not None and only not in SPLITS:
        raise ValueError(f"only must be one of {SPLITS} or None, got {only!r}")
    if isinstance(seconds, bool) or not (isinstance(seconds, (int, float)) and 0.25 <= seconds <= 10.0):
        raise ValueError(f"seconds must be in [0.25, 10], got {seconds!r}")
    if splits is None:
        splits = program_splits(seed)
    elif set(splits) != set(SPLITS) or any({gm.family_index(p) for p in splits[s]} != set(range(len(gm.FAMILIES)))
                                           for s in SPLITS):
        raise ValueError(f"splits must map each of {SPLITS} to programs covering all 16 families, got {splits!r}")
    rng = np.random.default_rng([seed, 3])
    clips = []
    for i in range(count):
        split = _draw_split(rng) if only is None else only
        families = rng.choice(len(gm.FAMILIES), size=int(rng.integers(1, 4)), replace=False)
        sources = []
        for f in sorted(families.tolist()):
            program = int(rng.choice([p for p in splits[split] if gm.family_index(p) == f]))
            if rng.random() < 0.5:
                onset = float(rng.uniform(0.0, 0.5 * seconds))
                duration = float(rng.uniform(0.3, 0.9)) * (seconds - onset)
                notes = (Note(_pitch(rng, program), int(rng.integers(50, 128)), round(onset, 4), round(duration, 4)),)
            else:
                notes = _phrase(rng, program, seconds)
            sources.append(Source(program, notes, round(float(10 ** (rng.uniform(-12.0, 0.0) / 20)), 4)))
        labels = tuple(sorted(gm.FAMILIES[f] for f in families.tolist()))
        clips.append(Clip(f"mix_{i:06d}", float(seconds), tuple(sources), labels, split))
    return clips


PHRASE_BEATS = (0.125, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0)  # seconds between onsets: short notes commoner


def plan_phrases(count: int, seed: int = 0, seconds: float = 5.0, programs=None) -> list[Clip]:
    """Solo phrases for unlabelled pretraining: ``count`` clips of ``seconds`` (1-30), each one GM
    program playing a melody that steps through its family's range (onsets 0.125-1 s apart, some
    rests, a chord now and then, each note held 50-100% of its gap, velocities 30-127), so that the
    next 40 ms of a clip is not a copy of the last. Program uniform over the clip's split, or over
    ``programs`` (every clip then in split "train": a pool that holds out the programs left out, as
    a cross-validation fold's pretraining needs). Label: the family."""
    count = check_int_arg(count, "count")
    if isinstance(seconds, bool) or not (isinstance(seconds, (int, float)) and 1.0 <= seconds <= 30.0):
        raise ValueError(f"seconds must be in [1, 30], got {seconds!r}")
    if programs is not None:
        programs = tuple(programs)
        limit = 128 * gm.MAX_SOUNDFONTS
        if not programs or any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < limit
                               for p in programs):
            raise ValueError(f"programs must be a non-empty list of instruments 0-{limit - 1} (GM programs + 128 x "
                             f"SoundFont), got {programs!r}")
    splits = program_splits(seed)
    rng = np.random.default_rng([seed, 4])
    clips = []
    for i in range(count):
        split = "train" if programs is not None else _draw_split(rng)
        program = int(rng.choice(programs if programs is not None else splits[split]))
        notes = _melody(rng, program, float(seconds))
        clips.append(Clip(f"phrase_{i:06d}_p{program:03d}_n{len(notes):03d}", float(seconds),
                          (Source(program, notes),), (gm.family(program),), split))
    return clips


def _melody(rng: np.random.Generator, program: int, seconds: float) -> tuple[Note, ...]:
    low, high = gm.PITCH_RANGES[gm.family(program)]
    pitch, start, notes = int(rng.integers(low, high + 1)), float(rng.uniform(0.0, 0.25)), []
    while start < seconds - 0.1:
        gap = float(rng.choice(PHRASE_BEATS))
        if rng.random() >= 0.1:  # else a rest
            velocity = int(rng.integers(30, 128))
            held = round(min(gap * float(rng.uniform(0.5, 1.0)), seconds - start), 4)  # ends in the clip
            chord = [0] + ([int(rng.choice([3, 4, 7, 12]))] if rng.random() < 0.15 else [])
            notes += [Note(int(min(pitch + interval, high)), velocity, round(start, 4), held) for interval in chord]
        pitch = int(np.clip(pitch + rng.choice([-7, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7]), low, high))
        start += gap
    return tuple(notes)
