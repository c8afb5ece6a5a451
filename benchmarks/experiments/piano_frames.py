"""Where a piano model loses chroma agreement, frame by frame (issue 28).

For held-out phrases (piano_eval.py's: the test preset's first phrases, cut to --seconds), each model
plays the phrase's score (C++ engine, sampling seed --seed) and every analysis frame of
fastwave.audio.measures (128 ms every 32 ms) is compared with the real recording's: the frame's
energy (dB), the cosine of the two chroma vectors (what chroma_agreement averages), and the top
three pitch classes of each. The score's notes are listed beside them, so a missed onset (the real
energy jumps, the model's does not, and its pitch classes stay those of the notes before) reads off
the table.

    python benchmarks/experiments/piano_frames.py --models fastwave/assets/piano_wavenet.safetensors,runs/x/last.safetensors \
        --phrases 0,3 [--record benchmarks/results/piano_frames.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import run_record  # noqa: E402
from fastwave.audio.measures import HOP, chroma, chroma_agreement, power_frames  # noqa: E402
from fastwave.corpora.score import ONSET_DECAY  # noqa: E402
from piano_eval import held_out_clips, held_out_phrases, seed_list  # noqa: E402
from piano_model import onset_seconds  # noqa: E402

PITCH_CLASSES = "C C# D D# E F F# G G# A A# B".split()


def top_classes(frame: np.ndarray, count: int = 3) -> str:
    """One frame's chroma (12,) -> its ``count`` largest pitch classes and their shares, "F .81 C .40 A .39"."""
    return " ".join(f"{PITCH_CLASSES[k]} {frame[k]:.2f}".replace("0.", ".").replace("1.00", "1") for k in np.argsort(-frame)[:count])


def frames(real: np.ndarray, played: np.ndarray, rate: int) -> list[dict]:
    """Per analysis frame: its start (s), the energy (dB) of each, their chroma cosine and top classes."""
    real_power, played_power = power_frames(real).sum(1), power_frames(played).sum(1)
    real_chroma, played_chroma = chroma(real, rate), chroma(played, rate)
    return [{"second": round(f * HOP / rate, 3), "db_real": round(float(10 * np.log10(real_power[f] + 1e-12)), 1),
             "db_played": round(float(10 * np.log10(played_power[f] + 1e-12)), 1),
             "cosine": round(float(real_chroma[f] @ played_chroma[f]), 3),
             "real": top_classes(real_chroma[f]), "played": top_classes(played_chroma[f])}
            for f in range(len(real_chroma))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="comma-separated saved piano-score WaveNets")
    parser.add_argument("--data", default="data/piano", help="the rendered piano corpus")
    parser.add_argument("--minutes", type=float, default=60.0, help="the corpus's size (to rebuild its plan)")
    parser.add_argument("--phrases", type=seed_list, default=[0], help="indices of the test phrases (piano_eval's order)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, default=None, help="of the C++ engine")
    parser.add_argument("--onset-decay", type=onset_seconds, default=ONSET_DECAY,
                        help="the onset envelope's time constant for models that read it (piano_eval.py's)")
    parser.add_argument("--record", default="benchmarks/results/piano_frames.json")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    count = max(args.phrases) + 1
    clips = held_out_clips(args.data, args.minutes, count)
    out = []
    for path in args.models.split(","):
        model = fastwave.load_model(path).eval()
        rate, samples = model.sample_rate, round(args.seconds * model.sample_rate)
        phrases = held_out_phrases(args.data, args.minutes, count, samples, rate, "test", model.config.local_channels,
                                   args.onset_decay)
        for index in args.phrases:
            name, real, score = phrases[index]
            tokens = fastwave.generate(model, len(real), cond={"local_cond": score}, seed=args.seed, engine="cpu",
                                       threads=args.threads)
            played = model.tokens_to_audio(tokens[0]).numpy()
            notes = [{"pitch": n.pitch, "class": PITCH_CLASSES[n.pitch % 12], "velocity": n.velocity,
                      "start": n.start, "duration": n.duration}
                     for n in clips[index].sources[0].notes if n.start < args.seconds]
            out.append({"model": os.path.relpath(path), "phrase": name, "notes": notes,
                        "chroma_agreement": chroma_agreement(played, real), "frames": frames(real, played, rate)})
            print(f"{os.path.relpath(path)} {name}: chroma agreement {out[-1]['chroma_agreement']:.3f}")
            for row in out[-1]["frames"][::6]:
                print(f"  {row['second']:5.2f} s  {row['db_real']:5.1f} / {row['db_played']:5.1f} dB  cos "
                      f"{row['cosine']:.2f}  real {row['real']:<18} played {row['played']}")
    with open(args.record, "w", encoding="utf-8") as f:
        json.dump({"seconds": args.seconds, "sampling_seed": args.seed, "rows": out,
                   **run_record(args.seed, "cpu", time.perf_counter() - started)}, f)  # one line: ~40 KB a phrase
    return 0


if __name__ == "__main__":
    sys.exit(main())
