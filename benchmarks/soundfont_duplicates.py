"""Which GM programs of a SoundFont play the same samples: a corpus split that holds out one of them
has heard the other (docs/corpora.md).

For each SoundFont, one five-note phrase rendered by every program, each render scaled to unit
energy; a pair of programs of one family (8 programs) whose renders correlate above --threshold is
reported. Then the piano corpus's case: its first six test phrases (the 60-minute plan, seed 0)
rendered by program 1 (the test preset) and program 0 (a training preset): their correlation and
level difference. Last, experiment A's test piano: its first six test phrases
(``plan_piano_phrases``, instrument 128, seed 1) rendered by FluidR3_GM's pianos 1-3 and by TimGM6mb's
Acoustic Grand (instrument 128), each correlated with program 0's render: A's test piano should
share no samples with the training pianos (0 and 3). And the pianos ``piano_model.py
--extra-pianos`` may add to the piano model's training (other SoundFonts'; MuseScore General's where
installed), on the piano corpus's first test phrases, each correlated with the test preset's
(program 1) and the val preset's (program 2) renders: a training piano must share no samples with
either.

    python benchmarks/soundfont_duplicates.py [--json benchmarks/results/soundfont_duplicates.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

from fastwave.corpora.build import GAIN_DB
from fastwave.corpora.piano import plan_piano, plan_piano_phrases
from fastwave.corpora.plans import Clip, Note, Source
from fastwave.corpora.render import SoundFontRenderer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "experiments"))
from _common import run_record  # noqa: E402
from next_sample_curves import TEST_INSTRUMENT as A_TEST_INSTRUMENT, TEST_SEED as A_TEST_SEED  # noqa: E402

FONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")
# Candidate extra training pianos for the piano model: (Debian package, SoundFont, programs)
EXTRA_PIANOS = (("timgm6mb-soundfont", FONTS[1], (0, 1)),
                ("csound-soundfont", "/usr/share/sounds/sf2/sf_GMbank.sf2", (0, 1)),
                ("musescore-general-soundfont-lossless", "/usr/share/sounds/sf2/MuseScore_General_Full.sf2", (0, 1, 2)))
PHRASE = tuple(Note(pitch, 90, 0.4 * i, 0.35) for i, pitch in enumerate((60, 64, 67, 72, 55)))


def close_pairs(font: str, threshold: float) -> list[dict]:
    """Pairs of programs of one family whose unit-energy renders of PHRASE correlate above threshold."""
    renderer = SoundFontRenderer(font, 16000)
    unit = {}
    for program in range(128):
        audio = renderer.render(Clip("phrase", 2.4, (Source(program, PHRASE),), ("phrase",), "train"))
        unit[program] = audio / (np.linalg.norm(audio) + 1e-12)
    pairs = []
    for first in range(0, 128, 8):
        for a in range(first, first + 8):
            for b in range(a + 1, first + 8):
                correlation = float(np.dot(unit[a], unit[b]))
                if correlation > threshold:
                    pairs.append({"programs": [a, b], "correlation": round(correlation, 4)})
    return pairs


def played_by(renderer, clip: Clip, instrument: int) -> np.ndarray:
    """A one-source piano clip rendered with ``instrument`` in place of its own, at the corpus's gain."""
    source = dataclasses.replace(clip.sources[0], program=instrument)
    return renderer.render(dataclasses.replace(clip, sources=(source,)), gain_db=GAIN_DB["piano"])


def piano_test_preset(phrases: int) -> list[dict]:
    """The piano corpus's test phrases by program 1 against program 0 (FluidR3_GM, the corpus's font)."""
    clips = sorted((c for c in plan_piano(60.0, 0) if c.split == "test"), key=lambda c: c.name)
    if phrases > len(clips):
        raise SystemExit(f"--phrases must be at most the corpus's {len(clips)} test phrases, got {phrases}")
    clips = clips[:phrases]
    renderer = SoundFontRenderer(FONTS[0], 16000)
    rows = []
    for clip in clips:
        audio = {p: played_by(renderer, clip, p) for p in (0, 1)}
        rows.append({"phrase": clip.name, "correlation": round(float(np.corrcoef(audio[0], audio[1])[0, 1]), 4),
                     "program_1_louder_db": round(float(20 * np.log10(audio[1].std() / audio[0].std())), 2)})
    return rows


A_COMPARED = (1, 2, 3, A_TEST_INSTRUMENT)  # FluidR3's test, val and training pianos; A's test piano


def a_test_piano(phrases: int) -> dict:
    """{instrument: [correlation with program 0's render, per phrase]} on A's first test phrases."""
    clips = plan_piano_phrases(phrases, A_TEST_INSTRUMENT, seed=A_TEST_SEED)
    renderer = SoundFontRenderer(list(FONTS), 16000)
    rows = {str(i): [] for i in A_COMPARED}
    for clip in clips:
        render = {i: played_by(renderer, clip, i) for i in (0, *A_COMPARED)}
        for i in A_COMPARED:
            rows[str(i)].append(round(float(np.corrcoef(render[0], render[i])[0, 1]), 4))
    return rows


def extra_pianos(phrases: int) -> list[dict]:
    """Each installed candidate of EXTRA_PIANOS against the piano corpus's test and val presets, on
    its first test phrases -> [{font, program, test: [correlations], val: [...], louder_db: [...]}]."""
    clips = sorted((c for c in plan_piano(60.0, 0) if c.split == "test"), key=lambda c: c.name)[:phrases]
    installed = [(package, font, programs) for package, font, programs in EXTRA_PIANOS if os.path.isfile(font)]
    missing = [package for package, font, _ in EXTRA_PIANOS if not os.path.isfile(font)]
    if missing:
        print(f"extra pianos: not installed, skipped: {', '.join(missing)} (Debian packages)", file=sys.stderr)
    renderer = SoundFontRenderer([FONTS[0]] + [font for _, font, _ in installed], 16000)
    references = [{split: played_by(renderer, clip, p) for split, p in (("test", 1), ("val", 2))} for clip in clips]
    rows = []
    for index, (_, font, programs) in enumerate(installed, start=1):
        for program in programs:
            row = {"font": os.path.basename(font), "program": program, "test": [], "val": [], "louder_db": []}
            for clip, reference in zip(clips, references):
                render = played_by(renderer, clip, 128 * index + program)
                for split in ("test", "val"):
                    row[split].append(round(float(np.corrcoef(render, reference[split])[0, 1]), 4))
                row["louder_db"].append(round(float(20 * np.log10(render.std() / reference["test"].std())), 2))
            rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--phrases", type=int, default=6)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold <= 1.0:
        parser.error(f"--threshold must be in (0, 1] (a correlation of unit-energy renders), got {args.threshold}")
    if args.phrases < 1:
        parser.error(f"--phrases must be at least 1, got {args.phrases}")
    started = time.perf_counter()
    record = {"threshold": args.threshold, "phrase": [dataclasses.asdict(n) for n in PHRASE],
              "close_pairs": {os.path.basename(font): close_pairs(font, args.threshold) for font in FONTS},
              "piano_test_preset_vs_program_0": piano_test_preset(args.phrases),
              "a_test_phrases_vs_program_0": {"instruments": "program + 128 x font (FluidR3_GM, TimGM6mb)",
                                              "correlations": a_test_piano(args.phrases)},
              "extra_pianos_vs_test_and_val_presets": extra_pianos(args.phrases),
              **run_record(0, "cpu", time.perf_counter() - started)}
    print(json.dumps({k: record[k] for k in ("close_pairs", "piano_test_preset_vs_program_0",
                                              "a_test_phrases_vs_program_0", "extra_pianos_vs_test_and_val_presets")},
                     indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
