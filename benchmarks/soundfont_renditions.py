"""Is a program's rendition in another GM SoundFont a close relative, or just another instrument of
its family? The folds over programs (``fastwave.corpora.program_folds``) hold out a program's
renditions in every font together, on the view that one font's violin heard in training makes
another font's violin easy; this measures that view.

Every program of each font plays one five-note phrase in its family's register (the middle of
``gm.PITCH_RANGES``); each render becomes the features B's baseline reads (mean and std over time of
64 log-mel bins), standardised over all renders. For each program in the first font, its family's 8
programs in the second font are ranked by cosine similarity: if renditions were close relatives, the
program's own rendition would rank first far more often than chance (1 in 8) and its mean rank
would sit well under chance's 4.5; if they were just other instruments, both would be at chance.

    python benchmarks/soundfont_renditions.py [--json benchmarks/results/soundfont_renditions.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from fastwave.audio import log_mel_spectrogram
from fastwave.corpora import gm
from fastwave.corpora.plans import Clip, Note, Source
from fastwave.corpora.render import SoundFontRenderer
from fastwave.training.intervals import cluster_bootstrap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "experiments"))
from _common import run_record  # noqa: E402

FONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")
STEPS = (0, 4, 7, 12, -5)  # semitones above the family's middle key: a major arpeggio and a fourth below


def phrase(program: int) -> tuple[Note, ...]:
    low, high = gm.PITCH_RANGES[gm.family(program)]
    middle = (low + high) // 2
    return tuple(Note(int(np.clip(middle + step, low, high)), 90, 0.4 * i, 0.35) for i, step in enumerate(STEPS))


def features(font: str) -> np.ndarray:
    """(128, 128): per program, the mean and std over time of 64 log-mel bins of its phrase."""
    renderer = SoundFontRenderer(font, 16000)
    rows = []
    for program in range(128):
        audio = renderer.render(Clip("phrase", 2.4, (Source(program, phrase(program)),), ("phrase",), "train"))
        mel = log_mel_spectrogram(torch.as_tensor(audio), 16000, n_mels=64)  # (64, frames)
        rows.append(torch.cat([mel.mean(dim=1), mel.std(dim=1)]).numpy())
    return np.stack(rows)


def rendition_ranks(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(128,): for each program of the first font, the rank (1 = most similar) of its own rendition
    among its family's 8 programs in the second font, by cosine similarity of standardised features."""
    both = np.concatenate([first, second])
    both = (both - both.mean(axis=0)) / (both.std(axis=0) + 1e-8)
    both /= np.linalg.norm(both, axis=1, keepdims=True)
    a, b = both[:128], both[128:]
    ranks = np.empty(128, dtype=int)
    for program in range(128):
        family = np.arange(program // 8 * 8, program // 8 * 8 + 8)
        similarity = b[family] @ a[program]
        ranks[program] = 1 + int(np.sum(similarity > similarity[program % 8]))
    return ranks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="write the record here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    ranks = rendition_ranks(features(FONTS[0]), features(FONTS[1]))
    families = {name: ranks[8 * i:8 * i + 8].tolist() for i, name in enumerate(gm.FAMILIES)}
    # 95% intervals: a bootstrap over the 128 programs
    first = [round(float(v), 4) for v in cluster_bootstrap((ranks == 1).astype(float), np.arange(128))]
    mean_rank = [round(float(v), 3) for v in cluster_bootstrap(ranks.astype(float), np.arange(128))]
    record = {"fonts": [os.path.basename(font) for font in FONTS], "steps": list(STEPS),
              "own_rendition_first": first, "chance_first": 1 / 8, "mean_rank": mean_rank, "chance_mean_rank": 4.5,
              "ranks_by_family": families, **run_record(0, "cpu", time.perf_counter() - started)}
    print(f"own rendition ranked first among its family's 8 in the other font: {first[0]:.3f} [{first[1]:.3f}, "
          f"{first[2]:.3f}] (chance 0.125); mean rank {mean_rank[0]:.2f} [{mean_rank[1]:.2f}, {mean_rank[2]:.2f}] "
          "(chance 4.5)")
    for name, family_ranks in families.items():
        print(f"  {name:22s} {family_ranks}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
