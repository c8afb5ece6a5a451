"""Experiment B's residual codes: how much of the bottleneck does each number of stages keep, on
the training notes it was fitted on and on the test notes of unheard programs?

For each fold's run (``linear_probe_folds.py``'s tokenizer and splits, one training seed), the
residual dictionaries of ``residual_run`` (stage 1 the tokenizer's, the others k-means on the
training notes' bottleneck vectors, seeded as there) quantise every note's bottleneck vectors; the
error is the fraction of the vectors' variance left unexplained, sum |z - q|^2 / sum |z - mean|^2
(the mean of the training vectors), per split; the test notes exclude those of a program whose twin
preset (the same samples) the fold trained on (``linear_probe_folds.leaked_clips``). If the deep
stages' error on the test notes stays far above the training notes', more stages fit the training
programs rather than describe new ones.

    python benchmarks/experiments/residual_error.py              # seed 0's 4 folds: ~1 min in all
Results: benchmarks/results/experiment_b_residual_error.{md,json}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import write_results  # noqa: E402
from linear_probe_folds import DEFAULT_RECORDS, design, record_paths, residual_codebooks, run_leaked_clips, run_models  # noqa: E402

STAGES = (1, 2, 4, 8)


def unexplained(latents, quantised, mean) -> float:
    """The fraction of the vectors' variance about ``mean`` that the quantised vectors leave out."""
    return float(((latents - quantised) ** 2).sum() / ((latents - mean) ** 2).sum())


def unheard(paths: list[str], indices, leaked: frozenset) -> list[int]:
    """``indices`` less those whose clip's file name is in ``leaked``."""
    return [i for i in indices if os.path.basename(paths[i]) not in leaked]


def fold_errors(args) -> dict:
    """One run's tokenizer and splits -> {split: [unexplained variance for each of STAGES],
    "left_out": the leaked test notes' count}."""
    import torch

    from fastwave.codes.residual import residual_quantise

    work = os.path.join(args.work, design(args), f"fold{args.fold}_seed{args.seed}")
    run_path = record_paths(args)[0]
    missing = [path for path in (run_path, os.path.join(work, "tok.safetensors")) if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f"fold {args.fold} seed {args.seed}: no run of linear_probe_folds.py here ({', '.join(missing)} "
                         "missing); make it first, with the same --work, --records, --k, --pretrain-clips and --scale")
    tokenizer, _, clips, splits = run_models(work, args, run_path)
    leaked = run_leaked_clips(run_path)
    latents, books = residual_codebooks(tokenizer, clips, splits, max(STAGES), args.seed)
    mean = torch.cat([latents[i] for i in splits["train"]]).mean(dim=0)
    scored = {"train": splits["train"], "test": unheard(clips.paths, splits["test"], leaked)}
    errors = {"left_out": len(splits["test"]) - len(scored["test"])}
    for split, indices in scored.items():
        vectors = torch.cat([latents[i] for i in indices])
        errors[split] = [unexplained(vectors, residual_quantise(vectors, books[:stages])[1], mean) for stages in STAGES]
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/experiment_b_folds", help="linear_probe_folds.py's --work")
    parser.add_argument("--records", default=DEFAULT_RECORDS)
    parser.add_argument("--data", default="data/notes_2000", help="the notes corpus the runs used")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the runs' training seed")
    parser.add_argument("--pretrain-clips", type=int, default=2400)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    folds = {}
    for fold in range(args.k):
        folds[fold] = fold_errors(argparse.Namespace(**{**vars(args), "fold": fold}))
        print(f"fold {fold}: {folds[fold]}", flush=True)
    mean = {split: np.mean([folds[f][split] for f in folds], axis=0).tolist() for split in ("train", "test")}
    record = {"experiment": "B: variance of the bottleneck left unexplained by residual codes", "design": design(args),
              "seed": args.seed, "stages": list(STAGES), "folds": folds, "mean": mean,
              "wall_seconds": time.perf_counter() - started}
    left_out = sum(folds[f]["left_out"] for f in folds)
    lines = ["# Experiment B: what residual codes keep of the bottleneck", "",
             f"Design {design(args)}, training seed {args.seed}, folds 0-{args.k - 1}: the fraction of the bottleneck "
             "vectors' variance that Q stages of 64 codes leave unexplained (stage 1 the tokenizer's codes, the "
             f"others fitted on the training notes), mean over the folds. {left_out} test notes left out: their "
             "program's twin preset (the same samples) was among the fold's training programs.", "",
             "| notes | " + " | ".join(f"{q} stage{'s' if q > 1 else ''}" for q in STAGES) + " |",
             "|---|" + "---|" * len(STAGES)]
    lines += [f"| {split} | " + " | ".join(f"{v:.3f}" for v in mean[split]) + " |" for split in ("train", "test")]
    write_results("experiment_b_residual_error", record, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
