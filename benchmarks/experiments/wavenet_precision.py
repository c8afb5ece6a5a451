"""What fp16 and int8 weights cost the shipped piano WaveNet, measured on the phrases of piano_eval.py.

For each held-out phrase (test split: a piano preset the model never heard; the first --phrases of
`plan_piano`, rendered here exactly as `fastwave corpus piano` writes them), the C++ engine runs
teacher-forced at every precision ("fp32", "fp16", "int8"):

- bits per sample: the mean cross-entropy of the real next sample, in bits;
- KL(fp32 || precision): the mean over positions of the divergence of the predicted distribution
  from fp32's, in bits;

and the per-phrase differences from fp32 get a 95% t-interval over phrases (paired: same phrases).
Then it plays each phrase's score from the same seed at every precision and measures the audio as
piano_eval.py does (spectral flatness, chroma agreement with the real phrase, RMS).

    python benchmarks/experiments/wavenet_precision.py [--phrases 6 --seconds 4]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import run_record  # noqa: E402
from fastwave.audio.measures import chroma_agreement, spectral_flatness  # noqa: E402
from fastwave.corpora.build import GAIN_DB  # noqa: E402
from fastwave.corpora.piano import plan_piano  # noqa: E402
from fastwave.corpora.render import SoundFontRenderer  # noqa: E402
from fastwave.corpora.score import piano_roll, score_features  # noqa: E402
from fastwave.engines.wavenet_cpu import CpuWaveNetEngine  # noqa: E402
from fastwave.pretrained import PIANO_WAVENET  # noqa: E402
from fastwave.training.intervals import t_interval  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")


# The seed the piano corpus is rendered with (`fastwave corpus piano`'s default): its plan gives
# piano_eval.py's phrases, whatever seed the sampling uses.
CORPUS_SEED = 0


def held_out_phrases(count: int, seconds: float, rate: int, minutes: float):
    """(name, real audio float32, notes) of piano_eval.py's phrases, rendered to 16-bit WAV and read
    back as the corpus would be."""
    clips = sorted((c for c in plan_piano(minutes, CORPUS_SEED) if c.split == "test"), key=lambda c: c.name)[:count]
    renderer = SoundFontRenderer(sample_rate=rate)
    phrases = []
    with tempfile.TemporaryDirectory() as folder:
        for clip in clips:
            path = os.path.join(folder, clip.name + ".wav")
            fastwave.save_audio(path, renderer.render(clip, gain_db=GAIN_DB["piano"]), rate, subtype="PCM_16")
            real, _ = fastwave.load_audio(path, sample_rate=rate)
            phrases.append((clip.name, np.asarray(real).reshape(-1)[:round(seconds * rate)], clip.sources[0].notes))
    return phrases


def teacher_forced(model, tokens, cond, precision: str, threads):
    """log-probabilities (T - 1, classes) of each next sample, float64."""
    engine = CpuWaveNetEngine(model, 1, model.prepare_cond(cond, 1, tokens.shape[1]), threads=threads,
                              precision=precision)
    logits = engine.teacher_forced_logits(tokens[:, :-1])[0].T.double()
    return torch.log_softmax(logits, dim=-1)


def interval(values) -> list[float]:
    """Mean and 95% t-interval of per-phrase values."""
    return list(t_interval(values))


GOALS = {"fp16": 0.01, "int8": 0.03}  # the most bits/sample each may lose against fp32


def summarise(rows, measures: dict) -> tuple[dict, dict]:
    """Per precision: the bits lost against fp32 (paired per phrase) and each measure (name -> row key
    prefix) as a mean and 95% interval over phrases; and whether the bits lost meet GOALS."""
    summary = {p: {"bits_lost": interval([r[f"bits_{p}"] - r["bits_fp32"] for r in rows]),
                   **{name: interval([r[f"{key}_{p}"] for r in rows]) for name, key in measures.items()}}
               for p in PRECISIONS}
    verdict = {p: {"goal_bits_lost": goal, "upper_95": summary[p]["bits_lost"][2],
                   "meets_goal": summary[p]["bits_lost"][2] <= goal} for p, goal in GOALS.items()}
    return summary, verdict


def add_scores(row: dict, logp: dict, target) -> None:
    """row["bits_<p>"] (of the real next samples, target (T,)) and row["kl_bits_<p>"] (from fp32) for
    each precision p, from its log-probabilities logp[p] (T, classes)."""
    for p in PRECISIONS:
        row[f"bits_{p}"] = float(-logp[p].gather(1, target[:, None]).mean() / math.log(2))
        kl = (logp["fp32"].exp() * (logp["fp32"] - logp[p])).sum(dim=1)
        row[f"kl_bits_{p}"] = float(kl.mean() / math.log(2))


def write_record(path: str, rows, measures: dict, args, started: float, **head) -> None:
    """The per-phrase rows, their summary (``summarise``) and the run, as JSON at path; the summary
    printed."""
    summary, verdict = summarise(rows, measures)
    record = {**head, "phrases": rows, "summary": {"values": "[mean, 95% CI low, high] over phrases", **summary},
              "goals": verdict, "seconds_per_phrase": args.seconds,
              **run_record(args.seed, "cpu", time.perf_counter() - started)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(json.dumps({"summary": summary, "goals": verdict}, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=PIANO_WAVENET)
    parser.add_argument("--minutes", type=float, default=60.0, help="the piano corpus's size (its plan)")
    parser.add_argument("--phrases", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="of each phrase")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", default="benchmarks/results/wavenet_precision_accuracy.json")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = fastwave.load_model(args.model).eval()
    rate = model.sample_rate
    rows = []
    for name, real, notes in held_out_phrases(args.phrases, args.seconds, rate, args.minutes):
        tokens = fastwave.mulaw_encode(torch.from_numpy(real))[None].long()
        cond = {"local_cond": torch.from_numpy(score_features(piano_roll(notes, len(real), rate),
                                                            model.config.local_channels))[None]}
        logp = {p: teacher_forced(model, tokens, cond, p, args.threads) for p in PRECISIONS}
        target = tokens[0, 1:]
        row = {"phrase": name, "samples": int(target.numel())}
        add_scores(row, logp, target)
        for p in PRECISIONS:
            audio = fastwave.mulaw_decode(fastwave.generate(model, len(real), cond=cond, seed=args.seed, engine="cpu",
                                                            precision=p, threads=args.threads)[0]).numpy()
            row[f"flatness_{p}"] = spectral_flatness(audio)
            row[f"chroma_{p}"] = chroma_agreement(audio, real)
            row[f"rms_{p}"] = float(audio.std())
        row["flatness_real"] = spectral_flatness(real)
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    write_record(args.record, rows, {"bits_per_sample": "bits", "kl_bits": "kl_bits", "flatness": "flatness",
                                     "chroma_agreement": "chroma", "rms": "rms"}, args, started,
                 model=os.path.relpath(args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
