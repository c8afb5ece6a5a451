"""Experiment B's power, measured before B is rerun: how small a difference in test accuracy can its
test set detect, with the split it has and with cross-validation over programs?

The pilot is the strong simple baseline the probe must beat: the mean and standard deviation of
each log-mel bin over the note (128 numbers) and a linear probe (``fastwave.codes.fit_linear_probe``),
trained to name the note's GM family (16 classes). Its second method, for a paired difference, is
the same probe on the means alone. Test notes are clustered by program (a method that suits an
instrument suits all its notes), so every interval and detectable difference here is over programs
(``fastwave.training.intervals``).

Two designs on the same rendered notes:
- **split**: the corpus's own split, one test program per family (16 programs), as B ran;
- **8-fold**: ``fastwave.corpora.program_folds``: eight splits of the programs, each testing one
  program per family, so that every program (128) is tested once; the folds' test predictions
  are pooled. A test note whose instrument has a twin preset in the fold's training programs
  (``fastwave.corpora.twins``: FluidR3_GM's programs 0 and 1 play the same samples) is left out.

The question B asks is the paper's gap between the code-LM probe (60.1%) and supervised training
(71.3%): 11.2 points. A design is powered for it when it detects half of that (5.6 points) at 95%
with 80% power.

    python benchmarks/experiments/linear_probe_power.py             # 2,000 notes: about 1 min on 2 cores
    python benchmarks/experiments/linear_probe_power.py --scale 4   # 8,000 notes (more per program)
    python benchmarks/experiments/linear_probe_power.py --soundfonts /usr/share/sounds/sf2/FluidR3_GM.sf2 \
        /usr/share/sounds/sf2/TimGM6mb.sf2   # 4,000 notes, each program in two fonts (more instruments)

With several ``--soundfonts`` every program plays in each of them (``plan_notes(soundfonts=)``: the
notes per instrument stay those of one font, so the count grows with the fonts), and a program's
renditions share its fold, so a test program is heard in no font (twin presets aside, left out as
above): the folds train on twice the
instruments of every family without making the test easier. A row for the first font's test notes
alone compares with the one-font design on the same kind of notes.

Results: benchmarks/results/experiment_b_power_<notes>_notes[_<font>+<font>].{md,json}.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import add_run_flags, clip_corpus, render_once, run_record, write_results  # noqa: E402
from fastwave.audio import load_audio, log_mel_spectrogram  # noqa: E402
from fastwave.codes import fit_linear_probe  # noqa: E402
from fastwave.corpora import DEFAULT_SOUNDFONT, FAMILIES, plan_corpus, program_folds  # noqa: E402
from fastwave.corpora.twins import heard_twins  # noqa: E402
from fastwave.corpora.gm import MAX_SOUNDFONTS  # noqa: E402
from fastwave.training.intervals import cluster_bootstrap, detectable_difference  # noqa: E402

PAPER_GAP = 0.713 - 0.601  # supervised end to end vs code-LM probe, Verma & Smith (2020)


def note_features(folder: str, clips) -> torch.Tensor:
    """(N, 128): per clip, the mean and std over time of 64 log-mel bins."""
    rows = []
    for clip in clips:
        audio, _ = load_audio(os.path.join(folder, clip.split, clip.name + ".wav"), sample_rate=16000)
        mel = log_mel_spectrogram(torch.as_tensor(audio), 16000, n_mels=64)  # (64, frames)
        rows.append(torch.cat([mel.mean(dim=1), mel.std(dim=1)]))
    return torch.stack(rows)


def font_corpus(args, fonts: list[str]) -> tuple[dict, list, str]:
    """The notes corpus with every program in each of ``fonts`` (2,000 x scale notes per font),
    rendered once into ``args.data`` (default data/notes_<count>_<font>+<font>) -> (its corpus.json,
    its clips, the fonts' tag)."""
    import json

    from fastwave.corpora import SoundFontRenderer
    from fastwave.corpora.plans import plan_notes

    tag = "+".join(os.path.splitext(os.path.basename(path))[0] for path in fonts)
    count = max(200, round(2000 * args.scale)) * len(fonts)
    args.data = args.data or f"data/notes_{count}_{tag}"
    clips = plan_notes(count, args.seed, soundfonts=len(fonts))
    render_once(args.data, lambda: clips, lambda: SoundFontRenderer(fonts), kind="notes", seed=args.seed,
                command=f"plan_notes({count}, {args.seed}, soundfonts={len(fonts)}) with {tag}")
    with open(os.path.join(args.data, "corpus.json"), encoding="utf-8") as f:
        return json.load(f), clips, tag


def fold_correct(features, families, programs, fold: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train on the fold's train programs, choose L2 on its val programs -> (per method, 0/1
    correctness of each test note; the test notes' indices). Chance is the fold's most frequent
    training family."""
    # programs: GM programs 0-127 (a program's renditions in several fonts share its fold, and stay
    # out of training when it is tested)
    index = {split: np.flatnonzero(np.isin(programs, fold[split])) for split in ("train", "val", "test")}
    correct = {}
    for method, columns in (("log-mel mean+std", slice(None)), ("log-mel mean", slice(0, 64))):
        x = features[:, columns]
        probe = fit_linear_probe(x[index["train"]], families[index["train"]], x[index["val"]],
                                 families[index["val"]], num_classes=len(FAMILIES))
        predicted = probe.scores(x[index["test"]]).argmax(dim=1)
        correct[method] = (predicted == families[index["test"]]).numpy().astype(float)
    majority = int(torch.bincount(families[index["train"]], minlength=len(FAMILIES)).argmax())
    correct["chance"] = (families[index["test"]] == majority).numpy().astype(float)
    return correct, index["test"]


def design_summary(correct: dict, programs: np.ndarray) -> dict:
    """Intervals over test programs for each method, and what the design can detect."""
    first, second = correct["log-mel mean+std"], correct["log-mel mean"]
    summary = {"notes": int(first.size), "programs": int(np.unique(programs).size)}
    for name in ("log-mel mean+std", "log-mel mean", "chance"):
        summary[name] = list(cluster_bootstrap(correct[name], programs))
    summary["paired difference (mean+std - mean)"] = list(cluster_bootstrap(first - second, programs))
    summary["detectable, paired pilot"] = detectable_difference(first - second, programs)
    summary["detectable, independent methods"] = math.sqrt(2) * detectable_difference(first, programs)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the notes corpus (default data/notes_<count>; rendered if missing)")
    parser.add_argument("--soundfonts", nargs="+", default=None, metavar="SF2",
                        help="GM SoundFonts every program plays in (default: FluidR3_GM alone, the `fastwave corpus` "
                             "notes); more fonts, more instruments per family")
    add_run_flags(parser)
    args = parser.parse_args(argv)
    fonts = args.soundfonts or []
    if len({os.path.realpath(path) for path in fonts}) != len(fonts) or len(fonts) > MAX_SOUNDFONTS:
        parser.error(f"--soundfonts takes 1 to {MAX_SOUNDFONTS} different files")

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    if len(fonts) > 1:
        corpus, clips, tag = font_corpus(args, fonts)
    else:
        corpus, tag = clip_corpus("notes", args), ""
        clips = plan_corpus("notes", seed=args.seed, count=sum(corpus["clips"].values()))
    # A program's renditions in several fonts are one cluster: what suits one suits the other.
    programs = np.array([clip.sources[0].program for clip in clips]) % 128
    first_font = np.array([clip.sources[0].program < 128 for clip in clips])
    families = torch.tensor([FAMILIES.index(clip.labels[0]) for clip in clips])
    features = note_features(args.data, clips)

    folds = program_folds(args.seed)
    # A test note whose instrument's twin preset (the same samples) trains in its fold is left out.
    instruments = np.array([clip.sources[0].program for clip in clips])
    heard = [heard_twins(fold, fonts or [DEFAULT_SOUNDFONT])
             for fold in program_folds(args.seed, soundfonts=max(1, len(fonts)))]
    runs = []
    for fold, leaked in zip(folds, heard):
        correct, test = fold_correct(features, families, programs, fold)
        kept = ~np.isin(instruments[test], list(leaked))
        runs.append(({method: hits[kept] for method, hits in correct.items()}, test[kept]))
    designs = {"split (1 test program per family)": design_summary(runs[0][0], programs[runs[0][1]])}
    pooled = {method: np.concatenate([correct[method] for correct, _ in runs]) for method in runs[0][0]}
    test = np.concatenate([test for _, test in runs])
    designs["8-fold over programs (every program tested once, less the twin presets' leaked notes)"] = design_summary(pooled, programs[test])
    if tag:  # the first font's test notes alone: the one-font design's kind of test note
        first = first_font[test]
        designs["8-fold, the first font's test notes"] = design_summary(
            {method: hits[first] for method, hits in pooled.items()}, programs[test][first])

    record = {"experiment": "B, power: what the notes test set can detect", "paper_gap": PAPER_GAP,
              "wanted": PAPER_GAP / 2, "data": {k: corpus[k] for k in ("seed", "clips", "seconds")},
              "designs": designs, **run_record(args.seed, args.device, time.perf_counter() - started)}
    cell = lambda v: f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"  # noqa: E731
    lines = ["# Experiment B, power: what the test set can detect", "",
             f"Command: `{record['command']}`; {record['machine']}, torch {record['torch']}, "
             f"{record['wall_seconds']:.0f} s. {sum(corpus['clips'].values())} notes of 1 s, the 16 GM families"
             + (f", every program in {len(fonts)} SoundFonts ({tag.replace('+', ', ')}: {128 * len(fonts)} "
                "instruments; a program's renditions share its fold)" if tag else "") + ". "
             "Intervals: 95% bootstrap over test programs (10,000 resamples). Detectable: the smallest true "
             "difference in accuracy a two-sided test at 95% finds with 80% power.", "",
             "| design | test notes | test programs | log-mel mean+std | log-mel mean | chance | "
             "detectable (paired pilot) | detectable (independent methods) |", "|---|---|---|---|---|---|---|---|"]
    for name, s in designs.items():
        lines.append(f"| {name} | {s['notes']} | {s['programs']} | {cell(s['log-mel mean+std'])} | "
                     f"{cell(s['log-mel mean'])} | {cell(s['chance'])} | {s['detectable, paired pilot']:.3f} | "
                     f"{s['detectable, independent methods']:.3f} |")
    lines += ["", f"B's question is the paper's gap of {PAPER_GAP:.3f} (supervised 0.713 against the code-LM "
              f"probe 0.601): a design is powered for it when it detects {PAPER_GAP / 2:.3f}."]
    write_results(f"experiment_b_power_{len(clips)}_notes" + (f"_{tag}" if tag else ""), record, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
