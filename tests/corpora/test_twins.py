"""Twin presets (the same samples under two GM programs): the table matches what was measured, and a
fold that tests one twin while training on the other is found; and the ranking that says whether a
program's rendition in another font is a close relative (benchmarks/soundfont_renditions.py)."""
import json
import pathlib

import numpy as np
import pytest

from fastwave.corpora import program_folds
from fastwave.corpora.twins import TWINS, heard_twins, twin_instruments

MEASURED = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "soundfont_duplicates.json"


def test_the_table_is_the_measured_one():
    measured = json.loads(MEASURED.read_text())
    assert {font: tuple(tuple(pair["programs"]) for pair in pairs)
            for font, pairs in measured["close_pairs"].items()} == TWINS


def test_twins_are_instruments_of_one_font():
    twins = twin_instruments(["/usr/share/sounds/sf2/FluidR3_GM.sf2", "TimGM6mb.sf2", "Unmeasured.sf2"])
    assert twins == {0: {1}, 1: {0}, 128: {129}, 129: {128}, 176: {177}, 177: {176}}
    assert twin_instruments(["TimGM6mb.sf2"])[48] == {49}  # its place in the list sets the offset
    assert twin_instruments([]) == {} and twin_instruments(["Unmeasured.sf2"]) == {}


def test_heard_twins_are_test_instruments_whose_twin_trains():
    fonts = ["FluidR3_GM.sf2"]
    assert heard_twins({"train": [1, 5], "val": [], "test": [0, 9]}, fonts) == {0}
    assert heard_twins({"train": [5], "val": [1], "test": [0]}, fonts) == set()  # its twin validates only
    assert heard_twins({"train": [5], "val": [], "test": [0, 1]}, fonts) == set()  # both held out
    with pytest.raises(ValueError, match="'train' and 'test'"):
        heard_twins({"test": [0]}, fonts)
    # The folds the experiments ran: B and C's k = 4 over FluidR3_GM, C's k = 8 over two fonts.
    assert [set(heard_twins(f, fonts)) for f in program_folds(0, k=4)] == [set(), {0}, set(), {1}]
    two = ["FluidR3_GM.sf2", "TimGM6mb.sf2"]
    heard = [set(heard_twins(f, two)) for f in program_folds(0, k=8, soundfonts=2)]
    assert heard == [set(), {177}, set(), {0, 128}, {176}, set(), set(), {1, 129}]


def test_rendition_ranks_tell_close_relatives_from_strangers():
    import sys

    sys.path.insert(0, str(MEASURED.parents[1]))
    from soundfont_renditions import rendition_ranks

    rng = np.random.default_rng(0)
    first = rng.normal(size=(128, 16))
    assert (rendition_ranks(first, first + 0.01 * rng.normal(size=first.shape)) == 1).all()  # near copies
    strangers = rendition_ranks(first, rng.normal(size=(128, 16)))
    assert 3.5 < strangers.mean() < 5.5 and set(strangers) <= set(range(1, 9))  # chance: 4.5
