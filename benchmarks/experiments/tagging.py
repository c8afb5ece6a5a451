"""Experiment C: multi-label tagging on `mixtures` (Verma & Berger, 2021, Table 1): a log-mel CNN with
several times the parameters against the wavelet Audio Transformer on raw audio with `none`, `avg`
and `wavelet` pooling between its layers. mAP per clip on the test split, whose notes come from GM
programs no model heard. Paper, FSD50K: CNNs 0.373-0.434, Transformers 0.469 (none) -> 0.537.

Every model trains through `fastwave train-classifier` on the same clips, epochs, batch size and
learning rate; the best epoch by validation mAP is scored on the test split.

    python benchmarks/experiments/tagging.py                  # CPU: 8 minutes on 2 cores
    python benchmarks/experiments/tagging.py --scale 8 --device cuda

--scale multiplies the clips and the epochs. Results: benchmarks/results/experiment_c_tagging.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import add_run_flags, clip_corpus, parameters, run_record, write_results  # noqa: E402
from fastwave.cli import main as fastwave_cli  # noqa: E402

# The Transformers: a 256-unit front end, 4 layers of width 64 (about 0.32 M parameters); the CNN:
# 4 blocks of two 3x3 convs, 32 -> 256 channels (about 1.18 M, 3.7 times as many).
TRANSFORMER = ["--arch", "transformer", "--frontend", "256", "--layers", "4", "--width", "64", "--heads", "4"]
MODELS = {"cnn": ["--arch", "cnn", "--channels", "32,64,128,256"],
          **{f"transformer_{p}": [*TRANSFORMER, "--pooling", p] for p in ("none", "avg", "wavelet")}}
CHANCE_DRAWS = 20


def chance_map(folder: str, seed: int) -> float:
    """The test split's mAP under uniformly random scores, averaged over CHANCE_DRAWS draws (about
    each class's prevalence): the floor every model's test mAP should be read against."""
    import numpy as np

    from fastwave.training.data import clips_from_csv
    from fastwave.training.metrics import multilabel_metrics

    clips = clips_from_csv(os.path.join(folder, "labels.csv"), folder)
    test = clips.subset(np.flatnonzero(np.asarray(clips.splits) == "test"))
    rng = np.random.default_rng(seed)
    targets = test.targets()
    return float(np.mean([multilabel_metrics(rng.random(targets.shape), targets).mAP for _ in range(CHANCE_DRAWS)]))


PAPER = {"cnn": "0.373-0.434", "transformer_none": "0.469", "transformer_avg": "-", "transformer_wavelet": "0.537"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the mixtures corpus (default data/mixtures_<count>)")
    parser.add_argument("--work", default="runs/experiment_c", help="one checkpoint folder per model")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--lr", type=float, default=1e-3, help="every model's peak learning rate")
    parser.add_argument("--epochs", type=int, default=None, help="default 20 x scale")
    add_run_flags(parser)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    corpus = clip_corpus("mixtures", args)
    epochs = args.epochs or max(2, round(20 * args.scale))
    rows = []
    for name in args.models.split(","):
        out = os.path.join(args.work, name)
        began = time.perf_counter()
        code = fastwave_cli(["train-classifier", args.data, "--labels", os.path.join(args.data, "labels.csv"),
                             "--out-dir", out, "--epochs", str(epochs), "--batch-size", "64", "--lr", str(args.lr),
                             "--device", args.device, "--seed", str(args.seed), "--quiet", *MODELS[name]])
        if code != 0:
            raise SystemExit(f"training {name} failed")
        seconds = time.perf_counter() - began
        with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
            report = json.load(f)
        test = report["test"]["metrics"]
        rows.append({"model": name, "parameters": parameters(fastwave.load_model(os.path.join(out, "best.safetensors"))),
                     "train_seconds": round(seconds, 1), "best_step": report["best"]["step"],
                     "val_mAP": report["best"]["mAP"], "test_mAP": test["mAP"], "test_d_prime": test["d_prime"],
                     "test_clips": report["test"]["clips"], "paper_mAP": PAPER[name]})
        print(f"{name}: {rows[-1]['parameters']:,} params, test mAP {test['mAP']:.3f} (val {report['best']['mAP']:.3f}, "
              f"step {report['best']['step']}, {seconds:.0f} s)", flush=True)

    chance = chance_map(args.data, args.seed)
    record = {"experiment": "C: multi-label tagging on mixtures", "scale": args.scale, "chance_test_mAP": chance,
              "budget": {"epochs": epochs, "batch_size": 64, "lr": args.lr},
              "data": {k: corpus[k] for k in ("seed", "clips", "seconds", "programs")},
              "rows": rows, **run_record(args.seed, args.device, time.perf_counter() - started)}
    lines = ["# Experiment C: multi-label tagging on mixtures (16 GM families)", "",
             f"Command: `{record['command']}`; {record['machine']}, torch {record['torch']}, "
             f"{record['wall_seconds']:.0f} s. {sum(corpus['clips'].values())} one-second clips "
             f"({', '.join(f'{k} {v}' for k, v in corpus['clips'].items())}); test notes come from held-out GM "
             f"programs. Each model: {epochs} epochs of batches of 64 at lr {args.lr:g}, best epoch by val mAP.", "",
             "| model | parameters | val mAP | test mAP | test d' | paper mAP (FSD50K) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['parameters']:,} | {r['val_mAP']:.3f} | {r['test_mAP']:.3f} | "
              f"{r['test_d_prime']:.2f} | {r['paper_mAP']} |" for r in rows]
    lines.append(f"| chance (random scores) | 0 | – | {chance:.3f} | 0.00 | – |")
    write_results("experiment_c_tagging", record, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
