"""Train the piano WaveNet that `fastwave generate` ships with (issue 10's shipped model).

Renders the piano corpus (``fastwave corpus piano``) if its folder is missing, mu-law encodes the
train and val phrases, trains a WaveNet by teacher forcing (fastwave.train.train_sample_model, with
checkpoints: an interrupted run resumes where it stopped), and writes the best model by validation
bits per sample plus a JSON record (command, seed, data size, machine, wall time, the evaluations).

    python benchmarks/experiments/piano_model.py --steps 2000            # the shipped model, CPU
    python benchmarks/experiments/piano_model.py --steps 20000 --minutes 240 --device cuda   # larger
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import ensure_corpus, parameters, run_record, token_split  # noqa: E402
from fastwave.train import train_sample_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/piano", help="the piano corpus folder (rendered if missing)")
    parser.add_argument("--minutes", type=float, default=60.0, help="corpus size when rendering it")
    parser.add_argument("--runs", default="runs/piano_wavenet", help="checkpoints (resumed if present)")
    parser.add_argument("--out", default="fastwave/assets/piano_wavenet.safetensors")
    parser.add_argument("--record", default="benchmarks/results/piano_model.json")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-phrases", type=int, default=8, help="val phrases scored at each evaluation")
    parser.add_argument("--init", default=None, help="start from this saved WaveNet's weights (e.g. an earlier "
                                                    "run's best.safetensors) instead of random ones")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    corpus = ensure_corpus("piano", args.data, args.seed, minutes=args.minutes)
    torch.manual_seed(args.seed)
    model = fastwave.WaveNet().to(args.device)  # 20 layers in 2 cycles, 64 / 128 / 128 channels
    if args.init:  # ignored when resuming: the checkpoint's weights win
        model.load_state_dict(fastwave.load_model(args.init).state_dict())
    train, val = token_split(args.data, "train"), token_split(args.data, "val", limit=args.eval_phrases)
    history = train_sample_model(model, train, steps=args.steps, batch_size=args.batch_size, segment=args.segment,
                                 lr=args.lr, warmup=min(200, args.steps // 10), seed=args.seed, eval_tokens=val,
                                 eval_every=args.eval_every, checkpoint_dir=args.runs, resume=True,
                                 checkpoint_every=100)
    best = fastwave.load_model(os.path.join(args.runs, "best.safetensors"))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    best.save(args.out)
    record = {"model": {"type": "wavenet", "parameters": parameters(best), "bytes": os.path.getsize(args.out),
                        "receptive_field": best.receptive_field},
              "data": {"folder": args.data, "corpus": {k: corpus[k] for k in ("seed", "clips", "seconds", "programs")},
                       "train_phrases": len(train), "train_samples": sum(len(s) for s in train),
                       "val_phrases_scored": len(val), "val_samples_scored": sum(len(s) for s in val)},
              "training": {"steps": args.steps, "batch_size": args.batch_size, "segment": args.segment, "lr": args.lr,
                           "init": args.init},
              "eval": history["eval"], "best": history.get("best"),
              **run_record(args.seed, args.device, time.perf_counter() - started)}
    with open(args.record, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(json.dumps({k: record[k] for k in ("model", "best")}))  # wall_seconds: this run (resumed runs add up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
