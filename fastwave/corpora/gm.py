"""The General MIDI program families, and the pitch range each plays in.

GM numbers its 128 melodic programs in 16 families of 8 (0-7 piano, 8-15 chromatic percussion, ...,
120-127 sound effects). Labels use these names (no spaces or commas, so they sit in an FSD50K-style
label list unquoted).
"""
from __future__ import annotations

FAMILIES = ("piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
            "reed", "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive",
            "sound_effects")
PROGRAMS = tuple(range(128))

# MIDI pitches (inclusive) where each family sounds like itself: basses low, pipes and leads higher.
PITCH_RANGES = {
    "piano": (33, 96), "chromatic_percussion": (48, 96), "organ": (36, 84), "guitar": (40, 84),
    "bass": (28, 60), "strings": (36, 96), "ensemble": (40, 84), "brass": (40, 80), "reed": (45, 84),
    "pipe": (60, 96), "synth_lead": (48, 84), "synth_pad": (36, 84), "synth_effects": (36, 84),
    "ethnic": (48, 84), "percussive": (48, 84), "sound_effects": (48, 72),
}


def family(program: int) -> str:
    """The GM family name of a program in [0, 128)."""
    if isinstance(program, bool) or not isinstance(program, int) or not 0 <= program < 128:
        raise ValueError(f"program must be an int in [0, 128), got {program!r}")
    return FAMILIES[program // 8]


def family_programs(name: str) -> tuple[int, ...]:
    """The 8 programs of a family."""
    if name not in FAMILIES:
        raise ValueError(f"unknown GM family {name!r}; families: {', '.join(FAMILIES)}")
    start = 8 * FAMILIES.index(name)
    return tuple(range(start, start + 8))
