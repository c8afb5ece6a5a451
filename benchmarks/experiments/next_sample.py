"""Experiment A: next-sample prediction on held-out piano audio (Verma & Chafe, 2021, Table 1).

Five sample models of comparable size (about 0.33-0.42 M parameters) train on the piano corpus's
train phrases with the same budget (updates x crops x crop length) and are scored, teacher-forced,
on its test phrases (the corpus's test preset, which plays a training piano's samples louder: the
first single runs; next_sample_curves.py tests on a piano no model heard): top-1 / top-5 accuracy and
bits per sample.

    python benchmarks/experiments/next_sample.py              # CPU: 45 minutes on 2 cores
    python benchmarks/experiments/next_sample.py --scale 8 --device cuda

--scale multiplies the updates, the corpus and the test audio scored. Results:
benchmarks/results/experiment_a_next_sample.{md,json}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import add_run_flags, ensure_corpus, parameters, run_record, token_split, write_results  # noqa: E402
from fastwave.training.evaluation import evaluate_sample_model  # noqa: E402
from fastwave.training.sample_models import train_sample_model  # noqa: E402

CONTEXT = 512  # the Transformers' attention window at this scale (the paper: 1,600)
PAPER_TOP5 = {"wavenet_10": 0.74, "wavenet_30": 0.76, "transformer_3": 0.80, "transformer_3_cond": 0.82,
              "transformer_6": 0.84}


def models() -> dict:
    """The five models, built on demand (each from the same seed)."""
    return {
        "wavenet_10": lambda: fastwave.WaveNet(layers=10, cycles=1, residual_channels=64, gate_channels=128,
                                               skip_channels=128),
        "wavenet_30": lambda: fastwave.WaveNet(layers=30, cycles=3, residual_channels=40, gate_channels=80,
                                               skip_channels=80),
        "transformer_3": lambda: fastwave.SampleTransformer(layers=3, heads=4, width=96, context=CONTEXT),
        "transformer_3_cond": lambda: fastwave.SampleTransformer.conditioned(
            cond_window=2000, layers=3, heads=4, width=96, context=CONTEXT, cond_channels=48),
        "transformer_6": lambda: fastwave.SampleTransformer(layers=6, heads=4, width=64, context=CONTEXT),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the piano corpus (default data/piano_<minutes>min)")
    parser.add_argument("--models", default=",".join(models()), help="comma-separated subset")
    add_run_flags(parser)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    minutes = max(10.0, 60.0 * args.scale)
    args.data = args.data or f"data/piano_{minutes:g}min"
    corpus = ensure_corpus("piano", args.data, args.seed, minutes=minutes)
    train = token_split(args.data, "train")
    test = token_split(args.data, "test", limit=max(2, round(4 * args.scale)))
    steps, batch_size, segment = max(10, round(300 * args.scale)), 8, 1024
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(args.seed)
        model = models()[name]().to(args.device)
        began = time.perf_counter()
        history = train_sample_model(model, train, steps=steps, batch_size=batch_size, segment=segment, lr=1e-3,
                                     warmup=max(1, steps // 10), seed=args.seed, progress=False)
        trained = time.perf_counter() - began
        scores = evaluate_sample_model(model, test, segment=4096, burn_in=1024)
        rows.append({"model": name, "parameters": parameters(model), "train_seconds": round(trained, 1),
                     "final_loss": history["loss"][-1], **scores, "paper_top5": PAPER_TOP5[name]})
        print(f"{name}: {rows[-1]['parameters']:,} params, top-1 {scores['top1']:.3f}, top-5 {scores['top5']:.3f}, "
              f"{scores['bits_per_sample']:.3f} bits/sample ({trained:.0f} s)", flush=True)

    record = {"experiment": "A: next-sample prediction on held-out piano", "scale": args.scale,
              "budget": {"steps": steps, "batch_size": batch_size, "segment": segment,
                         "samples_seen": steps * batch_size * segment},
              "data": {"train_phrases": len(train), "train_samples": sum(len(s) for s in train),
                       "test_phrases": len(test), "test_samples": sum(len(s) for s in test),
                       "corpus": {k: corpus[k] for k in ("seed", "clips", "seconds", "programs")}},
              "rows": rows, **run_record(args.seed, args.device, time.perf_counter() - started)}
    lines = ["# Experiment A: next-sample prediction on held-out piano", "",
             f"Command: `{record['command']}`; {record['machine']}, torch {record['torch']}, "
             f"{record['wall_seconds']:.0f} s. Budget per model: {steps} updates of {batch_size} crops of "
             f"{segment} samples. Test: {len(test)} phrases of a held-out piano preset.", "",
             "| model | parameters | top-1 | top-5 | bits / sample | paper top-5 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['parameters']:,} | {r['top1']:.3f} | {r['top5']:.3f} | "
              f"{r['bits_per_sample']:.3f} | {r['paper_top5']:.2f} |" for r in rows]
    write_results("experiment_a_next_sample", record, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
