"""The General MIDI program families, and the pitch range each plays in.

GM numbers its 128 melodic programs in 16 families of 8 (0-7 piano, 8-15 chromatic percussion, ...,
120-127 sound effects). Labels use these names (no spaces or commas, so they sit in an FSD50K-style
label list unquoted).

A corpus may play several GM SoundFonts (``SoundFontRenderer([...])``): the same program in another
font is another instrument of the same family. Plans name an instrument by one int, the GM program
plus 128 x the font's place in the renderer's list (program 24 of the second font is 152), so
splits and folds over instruments are lists of ints whatever the number of fonts.
"""
from __future__ import annotations

import operator

FAMILIES = ("piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
            "reed", "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive",
            "sound_effects")
PROGRAMS = tuple(range(128))
MAX_SOUNDFONTS = 4  # instruments are ints in [0, 128 * MAX_SOUNDFONTS)

# MIDI pitches (inclusive) where each family sounds like itself: basses low, pipes and leads higher.
PITCH_RANGES = {
    "piano": (33, 96), "chromatic_percussion": (48, 96), "organ": (36, 84), "guitar": (40, 84),
    "bass": (28, 60), "strings": (36, 96), "ensemble": (40, 84), "brass": (40, 80), "reed": (45, 84),
    "pipe": (60, 96), "synth_lead": (48, 84), "synth_pad": (36, 84), "synth_effects": (36, 84),
    "ethnic": (48, 84), "percussive": (48, 84), "sound_effects": (48, 72),
}


def family(program: int) -> str:
    """The GM family name of an instrument: a program in [0, 128), or program + 128 x font (see the
    module docstring)."""
    return FAMILIES[family_index(program)]


def family_index(program: int) -> int:
    """The family's place in FAMILIES (0-15) of an instrument, as ``family``."""
    try:
        index = None if isinstance(program, bool) else operator.index(program)  # ints and numpy ints
    except TypeError:
        index = None
    if index is None or not 0 <= index < 128 * MAX_SOUNDFONTS:
        raise ValueError(f"program must be an int in [0, {128 * MAX_SOUNDFONTS}) (a GM program + 128 x its "
                         f"SoundFont's index), got {program!r}")
    return index % 128 // 8


def family_programs(name: str, soundfonts: int = 1) -> tuple[int, ...]:
    """The 8 programs of a family, in each of ``soundfonts`` fonts: 8 x soundfonts instruments, the
    first font's first."""
    if name not in FAMILIES:
        raise ValueError(f"unknown GM family {name!r}; families: {', '.join(FAMILIES)}")
    soundfonts = check_soundfonts(soundfonts)
    start = 8 * FAMILIES.index(name)
    return tuple(128 * font + program for font in range(soundfonts) for program in range(start, start + 8))


def check_soundfonts(soundfonts) -> int:
    """A count of SoundFonts: an int in [1, MAX_SOUNDFONTS], else a ValueError."""
    if isinstance(soundfonts, bool) or not isinstance(soundfonts, int) or not 1 <= soundfonts <= MAX_SOUNDFONTS:
        raise ValueError(f"soundfonts must be an int in [1, {MAX_SOUNDFONTS}], got {soundfonts!r}")
    return soundfonts
