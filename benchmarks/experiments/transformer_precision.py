"""What fp16 and int8 cost the sample Transformer's C++ engine, measured on held-out piano phrases.

fastwave ships no trained Transformer, so this trains the paper-sized default
(`fastwave.SampleTransformer()`: 3 layers, 4 heads, width 128, a 1,600-sample context) on the train
phrases of the piano corpus for --steps updates (or loads --checkpoint when it exists), then scores
the first --phrases test phrases (a piano preset it never heard; the phrases of piano_eval.py and
wavenet_precision.py) teacher-forced with the C++ engine at "fp32", "fp16" and "int8":

- bits per sample of the real next sample, and the loss against fp32 (paired, per phrase);
- KL(fp32 || precision), the mean over positions of the divergence of the predicted distributions.

Each gets a mean and a 95% t-interval over phrases.

    python benchmarks/experiments/transformer_precision.py [--steps 300 --phrases 6 --seconds 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import ensure_corpus, token_split  # noqa: E402
from fastwave.engines.transformer_cpu import CpuTransformerEngine  # noqa: E402
from fastwave.training.sample_models import train_sample_model  # noqa: E402
from wavenet_precision import PRECISIONS, add_scores, held_out_phrases, write_record  # noqa: E402


def teacher_forced(model, tokens, precision: str, threads):
    """log-probabilities (T - 1, classes) of each next sample, float64."""
    engine = CpuTransformerEngine(model, 1, {}, threads=threads, precision=precision)
    return torch.log_softmax(engine.teacher_forced_logits(tokens[:, :-1])[0].T.double(), dim=-1)


def trained_model(args):
    if os.path.isfile(args.checkpoint):
        return fastwave.load_model(args.checkpoint).eval(), None
    ensure_corpus("piano", args.data, args.seed, minutes=args.minutes)
    torch.manual_seed(args.seed)
    model = fastwave.SampleTransformer()
    began = time.perf_counter()
    history = train_sample_model(model, token_split(args.data, "train"), steps=args.steps, batch_size=4,
                                 segment=2048, lr=1e-3, warmup=max(1, args.steps // 10), seed=args.seed,
                                 progress=False)
    fastwave.save_checkpoint(model.eval(), args.checkpoint)
    return model, {"steps": args.steps, "batch_size": 4, "segment": 2048, "final_loss": history["loss"][-1],
                   "train_seconds": round(time.perf_counter() - began, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/piano_10min", help="the piano corpus to train on (rendered if missing)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--checkpoint", default="runs/transformer_precision.safetensors",
                        help="loaded if present, else trained and saved here")
    parser.add_argument("--phrases", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="of each phrase")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", default="benchmarks/results/transformer_precision_accuracy.json")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model, training = trained_model(args)
    rows = []
    # The phrases of the 60-minute plan, as piano_eval.py and wavenet_precision.py score them.
    for name, real, _ in held_out_phrases(args.phrases, args.seconds, model.sample_rate, 60.0):
        tokens = fastwave.mulaw_encode(torch.from_numpy(real))[None].long()
        logp = {p: teacher_forced(model, tokens, p, args.threads) for p in PRECISIONS}
        row = {"phrase": name, "samples": int(tokens.shape[1] - 1)}
        add_scores(row, logp, tokens[0, 1:])
        rows.append(row)
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    # the goals set for WaveNet's precisions (wavenet_precision.GOALS), held to the Transformer too
    write_record(args.record, rows, {"bits_per_sample": "bits", "kl_bits": "kl_bits"}, args, started,
                 model="fastwave.SampleTransformer() (defaults)", training=training)
    return 0


if __name__ == "__main__":
    sys.exit(main())
