"""Twin presets: pairs of GM programs that a SoundFont plays with (nearly) the same samples.

A split that tests one twin and trains on the other has heard its test instrument: FluidR3_GM's
program 1 (Bright Acoustic) is program 0's samples 6.3 dB louder, so a fold that tests program 0
while training on program 1 scores a piano it knows. The folds over programs (``plans.program_folds``)
test every program once, so some fold always separates a pair; the experiments' summaries leave out
the test units whose instrument has a twin in that fold's training split (``heard_twins``) rather
than re-plan corpora that committed runs were trained on.

``TWINS`` is measured, not guessed: ``benchmarks/soundfont_duplicates.py`` renders one phrase with
every program of a family and reports the pairs whose unit-energy renders correlate above 0.9
(``benchmarks/results/soundfont_duplicates.json``, which a test keeps equal to this table). A font
not listed has no known twins: measure it with that script before trusting a fold that holds out
one of a pair.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

# SoundFont file name -> pairs of programs it plays alike (correlation of the renders).
TWINS: dict[str, tuple[tuple[int, int], ...]] = {
    "FluidR3_GM.sf2": ((0, 1),),             # 0.997: the same samples, program 1 louder
    "TimGM6mb.sf2": ((0, 1), (48, 49)),      # 0.944 and 0.935
}


def twin_instruments(soundfonts: Sequence[str]) -> dict[int, frozenset[int]]:
    """Instrument -> its twins, for a renderer playing ``soundfonts`` (paths or file names) in that
    order: instruments are program + 128 x the font's place (``gm``), and twins are within one font."""
    twins: dict[int, set[int]] = {}
    for place, font in enumerate(soundfonts):
        for a, b in TWINS.get(os.path.basename(font), ()):
            twins.setdefault(128 * place + a, set()).add(128 * place + b)
            twins.setdefault(128 * place + b, set()).add(128 * place + a)
    return {instrument: frozenset(others) for instrument, others in twins.items()}


def heard_twins(splits: Mapping[str, Sequence[int]], soundfonts: Sequence[str]) -> frozenset[int]:
    """The test instruments of ``splits`` (a fold: {"train": ..., "test": ...} of instruments) whose
    twin is in its training split: scoring them would score an instrument the model has heard."""
    if not isinstance(splits, Mapping) or not {"train", "test"} <= set(splits):
        raise ValueError(f"splits must map 'train' and 'test' to instruments (a fold of program_folds), got {splits!r}")
    train = set(splits["train"])
    twins = twin_instruments(soundfonts)
    return frozenset(instrument for instrument in splits["test"] if twins.get(instrument, frozenset()) & train)
