"""Where the same seed stops giving the same tokens, on a trained model: the shipped piano WaveNet.

The sampling contract (DESIGN.md) lets engines part where a draw lands within float rounding of a
running-sum boundary. Two sources of such rounding: another engine (the torch engine's convolutions
add in another order than the C++ engine), and another thread count of the C++ engine (a team of
threads adds its partial sums in another order than one thread). The tests' small random models
rarely meet a boundary; a trained model's peaked distributions over a 4 s phrase do. Against the
C++ engine on one thread, for the torch engine and each other thread count:

- teacher forced over what one thread played: per position, the largest change of a logit relative
  to the largest logit (median and max);
- free running on the first held-out phrase's score: the first sample where it parts from one
  thread (null: never within the phrase).

    python benchmarks/rounding_divergence.py [--threads 2 4] [--json benchmarks/results/rounding_divergence.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "experiments"))
import fastwave  # noqa: E402
from _common import run_record  # noqa: E402
from fastwave.engines.wavenet_cpu import CpuWaveNetEngine  # noqa: E402
from fastwave.pretrained import PIANO_WAVENET  # noqa: E402
from piano_eval import held_out_phrases  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/piano", help="the rendered piano corpus (its first test phrase)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="counts compared with one thread")
    parser.add_argument("--samples", type=int, default=64000, help="played free running")
    parser.add_argument("--teacher-forced", type=int, default=12000, help="positions compared teacher forced")
    parser.add_argument("--json", default="benchmarks/results/rounding_divergence.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = fastwave.load_model(PIANO_WAVENET).eval()
    name, _, roll = held_out_phrases(args.data, 60.0, 1, args.samples, model.sample_rate, "test",
                                    model.config.local_channels)[0]
    cond = {"local_cond": roll}

    def play(engine, threads=None):
        kwargs = {"threads": threads} if engine == "cpu" else {}
        return fastwave.generate(model, args.samples, cond=cond, seed=args.seed, engine=engine, **kwargs)

    def logits(engine, threads, tokens):  # (1, classes, T) teacher forced
        if engine == "torch":  # the torch engine's teacher-forced logits are the model's forward (tests/engines)
            with torch.no_grad():
                return model(tokens, **model.prepare_cond(cond, 1, tokens.shape[1]))
        native = CpuWaveNetEngine(model, 1, model.prepare_cond(cond, 1, tokens.shape[1] + 1), threads=threads)
        return native.teacher_forced_logits(tokens)

    alone = play("cpu", 1)
    forced = alone[:, :args.teacher_forced]
    reference = logits("cpu", 1, forced)
    rows = []
    for engine, threads in [("cpu", t) for t in args.threads] + [("torch", None)]:
        tokens = play(engine, threads)
        parted = (tokens != alone).nonzero()
        relative = ((logits(engine, threads, forced) - reference).abs().amax(1) / reference.abs().amax(1)).flatten()
        rows.append({"engine": engine, "threads": threads,
                     "first_different_sample": int(parted[0, 1]) if len(parted) else None,
                     "logit_change_relative_median": float(relative.median()),
                     "logit_change_relative_max": float(relative.max())})
        print(json.dumps(rows[-1]))
    record = {"model": os.path.relpath(PIANO_WAVENET), "phrase": name, "samples": args.samples,
              "teacher_forced_positions": args.teacher_forced, "compared_with_cpu_one_thread": rows,
              **run_record(args.seed, "cpu", time.perf_counter() - started)}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
