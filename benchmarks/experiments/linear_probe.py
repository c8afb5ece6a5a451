"""Experiment B: linear probe of code-LM features on `notes` (instrument family), against a random-
weights probe and the same network trained end to end, and the sweep over the number of codes
(Verma & Smith, 2020: 71.3% supervised, 60.1% code-LM probe, 55.6% SimCLR).

The pipeline is fastwave's own commands on the rendered notes corpus: fit-tokenizer on the training
notes, encode them, train-code-lm, probe (splits from labels.csv: test notes are GM programs no model
heard), probe --sweep-codes.

    python benchmarks/experiments/linear_probe.py             # CPU: about 6 minutes on 2 cores
    python benchmarks/experiments/linear_probe.py --scale 8 --device cuda

Results: benchmarks/results/experiment_b_linear_probe.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import add_run_flags, clip_corpus, run_record, write_results  # noqa: E402
from fastwave.cli import main as fastwave  # noqa: E402

PAPER = {"supervised end to end": 0.713, "code LM probe": 0.601}


def run(*argv: str) -> None:
    if fastwave(list(argv)) != 0:
        raise SystemExit(f"fastwave {' '.join(argv)} failed")


def run_pipeline(train_audio: list[str], data: str, labels: str, work: str, args, unlabelled: tuple[str, ...] = ()) -> str:
    """fit-tokenizer and encode on ``train_audio`` and the ``unlabelled`` audio (folders or files),
    train-code-lm on those codes (its metrics on held-out clips in <work>/lm.json), then probe every
    clip of ``data`` with the splits of ``labels`` -> the probe's JSON path."""
    os.makedirs(work, exist_ok=True)
    steps = str(max(20, round(1000 * args.scale)))
    common = ["--device", args.device, "--seed", str(args.seed), "--quiet"]
    tok, codes, lm = (os.path.join(work, name) for name in ("tok.safetensors", "codes.npz", "lm.safetensors"))
    audio = [*train_audio, *unlabelled]
    run("fit-tokenizer", *audio, "--out", tok, "--codes", "64", "--steps", steps, *common)
    run("encode", *audio, "--tokenizer", tok, "--out", codes, "--device", args.device, "--quiet")
    run("train-code-lm", codes, "--out", lm, "--steps", steps, "--context", "128", "--json",
        os.path.join(work, "lm.json"), *common)
    probe_json = os.path.join(work, "probe.json")
    run("probe", data, "--tokenizer", tok, "--lm", lm, "--labels", labels, "--json", probe_json,
        "--supervised-steps", str(max(20, round(500 * args.scale))), *common)
    return probe_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the notes corpus (default data/notes_<count>; rendered if missing)")
    parser.add_argument("--work", default="runs/experiment_b", help="tokenizer, codes and LM files")
    parser.add_argument("--sweep", default="16,64,256", help="dictionary sizes of the sweep")
    add_run_flags(parser)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    corpus = clip_corpus("notes", args)
    labels = os.path.join(args.data, "labels.csv")
    probe_json = run_pipeline([os.path.join(args.data, "train")], args.data, labels, args.work, args)
    sweep_json = os.path.join(args.work, "sweep.json")
    tok, lm = os.path.join(args.work, "tok.safetensors"), os.path.join(args.work, "lm.safetensors")
    run("probe", args.data, "--tokenizer", tok, "--lm", lm, "--labels", labels, "--json", sweep_json,
        "--sweep-codes", args.sweep, "--lm-steps", str(max(20, round(500 * args.scale))),
        "--device", args.device, "--seed", str(args.seed), "--quiet")
    with open(probe_json, encoding="utf-8") as f:
        probe = json.load(f)["rows"]
    with open(sweep_json, encoding="utf-8") as f:
        sweep = json.load(f)["rows"]

    record = {"experiment": "B: linear probe on notes (instrument family)", "scale": args.scale,
              "data": {k: corpus[k] for k in ("seed", "clips", "seconds", "programs")},
              "probe": probe, "sweep": sweep, **run_record(args.seed, args.device, time.perf_counter() - started)}
    lines = ["# Experiment B: linear probe on notes (GM instrument family, 16 classes)", "",
             f"Command: `{record['command']}`; {record['machine']}, torch {record['torch']}, "
             f"{record['wall_seconds']:.0f} s. Test notes are GM programs held out of training.", "",
             "| method | metric | val | test | paper |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['metric']} | {r['val']:.3f} | {r['test']:.3f} | "
              f"{PAPER.get(r['method'], float('nan')):.3f} |".replace("nan", "–") for r in probe]
    lines += ["", "| codes | perplexity | top-1 | probe val | probe test |", "|---|---|---|---|---|"]
    lines += [f"| {r['codes']} | {r['perplexity']:.2f} | {r['top1']:.3f} | {r['val']:.3f} | {r['test']:.3f} |"
              for r in sweep]
    write_results("experiment_b_linear_probe", record, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
