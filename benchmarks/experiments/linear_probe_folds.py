"""Experiment B on eight folds over the GM programs, with seeds and intervals: the design that
`linear_probe_power.py` showed can separate methods (B's own split cannot).

Each run is one fold and one training seed. It runs B's pipeline (fit-tokenizer and encode on the
fold's training notes, train-code-lm, probe) with the fold's split, then the baselines that explain
the probe (``fastwave.codes.baselines``: bag-of-codes, the autoencoder bottleneck before k-means,
and the trained and random LMs with layer and pooling chosen on validation), and keeps each test
note's prediction. Over 8 folds every program is tested once. The summary pools the runs there are:
- per method, the accuracy of each seed (all its folds pooled), with a t-interval over seeds;
- a bootstrap interval over test programs of the per-note correctness averaged over seeds;
- for each of the paper's claims, the paired difference with its intervals over programs and over
  seeds (the t-interval of each seed's difference) and a verdict: supported or contradicted only
  where both exclude zero, else not resolved.

    python benchmarks/experiments/linear_probe_folds.py --fold 0 --seed 0   # one run: ~10 min on 2 cores
    for s in 0 1 2; do for f in 0 1 2 3 4 5 6 7; do
        python benchmarks/experiments/linear_probe_folds.py --fold $f --seed $s; done; done
    python benchmarks/experiments/linear_probe_folds.py --summarise

Runs: the tokenizer, codes and LM in <work>/fold<F>_seed<S>/; each run's records (per-note
predictions of every method, command, machine) in <records>/fold<F>_seed<S>.json and
fold<F>_seed<S>_baselines.json, committed so that runs add up across machines and sessions. A part
with its record is skipped (rerunning a run made before the baselines existed adds them; where its
model files are gone, the pipeline reruns first). Results: benchmarks/results/experiment_b_folds.{md,json}.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import cell, clip_corpus, json_interval, run_record, write_results  # noqa: E402
from linear_probe import PAPER, run_pipeline  # noqa: E402
from fastwave.corpora import program_folds  # noqa: E402
from fastwave.training.intervals import cluster_bootstrap, paired_difference, t_interval  # noqa: E402

# The paper's claims B can test: (better method, worse method), each a paired difference.
CHOSEN_LM, CHOSEN_RANDOM = ("code LM probe, layer and pooling chosen on val",
                           "random-weights probe, layer and pooling chosen on val")
CLAIMS = [("supervised end to end", "code LM probe"),  # 71.3% against 60.1%
          ("code LM probe", "random-weights probe"),   # the LM learned more than its architecture gives
          ("code LM probe", "log-mel mean+std probe"),  # ... and more than plain spectrogram statistics
          # The same claims with the LM's best layer and pooling, and what explains the probe:
          ("supervised end to end", CHOSEN_LM),
          (CHOSEN_LM, CHOSEN_RANDOM),
          (CHOSEN_LM, "bag-of-codes probe"),  # the LM reads more than which codes occur
          ("autoencoder bottleneck probe", "bag-of-codes probe")]  # k-means throws information away
BASELINE = "log-mel mean+std probe"
PROGRAM = re.compile(r"_p(\d{3})_")


def program_of(path: str) -> int:
    match = PROGRAM.search(os.path.basename(path))
    if match is None:
        raise SystemExit(f"{path}: not a notes-corpus clip (its name carries no _pNNN_ program)")
    return int(match.group(1))


def fold_labels(data: str, fold: dict, out: str) -> list[str]:
    """labels.csv of ``data`` with each clip's split set by its program's place in ``fold``, written
    to ``out`` -> the training clips' paths."""
    split_of = {program: split for split, programs in fold.items() for program in programs}
    with open(os.path.join(data, "labels.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    train = []
    with open(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["fname", "labels", "split"])
        writer.writeheader()
        for row in rows:
            split = split_of[program_of(row["fname"])]
            writer.writerow({"fname": row["fname"], "labels": row["labels"], "split": split})
            if split == "train":
                train.append(os.path.join(data, row["fname"]))
    return train


def record_paths(args) -> tuple[str, str]:
    """This run's records: (the pipeline's, the baselines')."""
    stem = os.path.join(args.records, f"fold{args.fold}_seed{args.seed}")
    return stem + ".json", stem + "_baselines.json"


def one_run(args) -> int:
    work = os.path.join(args.work, f"fold{args.fold}_seed{args.seed}")
    training_seed, args.seed = args.seed, args.corpus_seed  # the corpus is the same for every run
    corpus = clip_corpus("notes", args)
    args.seed = training_seed
    run_path, baselines_path = record_paths(args)
    os.makedirs(args.records, exist_ok=True)
    if os.path.isfile(run_path) and os.path.isfile(baselines_path):
        print(f"{run_path} and its baselines exist: skipped")
        return 0
    if os.path.isfile(run_path) and os.path.isfile(os.path.join(work, "lm.safetensors")):
        print(f"{run_path} exists: pipeline skipped")
    else:  # the baselines read the pipeline's tokenizer and LM
        pipeline_run(work, corpus, args, run_path)
    baselines_run(work, args, run_path, baselines_path)
    return 0


def pipeline_run(work: str, corpus: dict, args, out: str) -> None:
    started = time.perf_counter()
    os.makedirs(work, exist_ok=True)
    fold = program_folds(args.corpus_seed)[args.fold]
    labels = os.path.join(work, "labels.csv")
    train_audio = fold_labels(args.data, fold, labels)
    with open(run_pipeline(train_audio, args.data, labels, work, args), encoding="utf-8") as f:
        probe = json.load(f)
    record = {"fold": args.fold, "programs": fold, "corpus": {k: corpus[k] for k in ("seed", "clips")},
              "scale": args.scale, "rows": probe["rows"], "test_clips": probe["test_clips"],
              "test_targets": probe["test_targets"],
              **run_record(args.seed, args.device, time.perf_counter() - started)}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f)
    print({row["method"]: round(row["test"], 4) for row in probe["rows"]})


def baselines_run(work: str, args, run_path: str, out: str) -> None:
    """The run's tokenizer and LM through ``probe_baselines`` on the run's splits -> ``out`` (rows in
    the order of the run record's test clips, and the layer/pooling sweep)."""
    from fastwave.codes import CodeTokenizer
    from fastwave.codes.baselines import probe_baselines
    from fastwave.models import load_model
    from fastwave.training.data import clip_splits, clips_from_csv

    started = time.perf_counter()
    with open(run_path, encoding="utf-8") as f:
        test_clips = json.load(f)["test_clips"]
    tokenizer = CodeTokenizer.load(os.path.join(work, "tok.safetensors"), map_location=args.device)
    lm = load_model(os.path.join(work, "lm.safetensors"), map_location=args.device)
    clips = clips_from_csv(os.path.join(work, "labels.csv"), args.data)
    splits = clip_splits(clips, seed=args.seed)  # the probe's call: the splits come from labels.csv
    if [clips.paths[i] for i in splits["test"]] != test_clips:
        raise SystemExit(f"{work}: the test clips differ from {run_path}'s (was --data another corpus?)")
    rows, sweep = probe_baselines(tokenizer, lm, clips.paths, clips.targets(), splits, seed=args.seed)
    record = {"fold": args.fold, "seed": args.seed, "rows": rows, "sweep": sweep,
              **run_record(args.seed, args.device, time.perf_counter() - started)}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f)
    print({row["method"]: round(row["test"], 4) for row in rows})


def baseline_hits(data: str, corpus_seed: int, count: int, folds: list[int]) -> dict[str, float]:
    """The log-mel statistics probe (linear_probe_power.py's pilot) on each of ``folds`` -> {clip
    file name: 0/1 correct} over their test notes. It has no training seed: L-BFGS is deterministic."""
    import torch

    from linear_probe_power import fold_correct, note_features
    from fastwave.corpora import FAMILIES, plan_corpus

    clips = plan_corpus("notes", seed=corpus_seed, count=count)
    programs = np.array([clip.sources[0].program for clip in clips])
    families = torch.tensor([FAMILIES.index(clip.labels[0]) for clip in clips])
    features = note_features(data, clips)
    hits = {}
    for fold in folds:
        correct, test = fold_correct(features, families, programs, program_folds(corpus_seed)[fold])
        hits.update({clips[i].name + ".wav": value for i, value in zip(test, correct["log-mel mean+std"])})
    return hits


def pooled(runs: list[dict], baseline: dict[str, float]) -> tuple[list[int], list[str], dict[str, np.ndarray], list[int]]:
    """The runs' test notes that every seed scored -> (seeds, clips, per method a (seeds, clips)
    0/1 correctness array, the clips' programs). ``baseline`` joins every seed's methods."""
    seeds = sorted({run["seed"] for run in runs})
    everywhere = set.intersection(*({row["method"] for row in run["rows"]} for run in runs))
    missing = sorted({row["method"] for run in runs for row in run["rows"]} - everywhere)
    if missing:  # e.g. baselines not yet run everywhere: left out rather than shrinking every method's notes
        print(f"left out (not in every run): {', '.join(missing)}")
    correct = {(BASELINE, seed): baseline for seed in seeds}  # (method, seed) -> {clip: 0/1}
    for run in runs:
        for row in run["rows"]:
            if row["method"] not in everywhere:
                continue
            hits = correct.setdefault((row["method"], run["seed"]), {})
            for clip, predicted, target in zip(run["test_clips"], row["test_predictions"], run["test_targets"]):
                hits[os.path.basename(clip)] = float(predicted == target)
    methods = sorted({method for method, _ in correct})
    clips = sorted(set.intersection(*(set(hits) for hits in correct.values())))
    arrays = {m: np.array([[correct[(m, s)][c] for c in clips] for s in seeds]) for m in methods}
    return seeds, clips, arrays, [program_of(c) for c in clips]


def summarise(args) -> int:
    runs = []
    for path in sorted(glob.glob(os.path.join(args.records, "fold*_seed*.json"))):
        if path.endswith("_baselines.json"):
            continue
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        extra = path[:-len(".json")] + "_baselines.json"
        if os.path.isfile(extra):  # same test clips, same order (checked when it was made)
            with open(extra, encoding="utf-8") as f:
                run["rows"] = run["rows"] + json.load(f)["rows"]
        runs.append(run)
    if not runs:
        raise SystemExit(f"no runs under {args.records}: run --fold F --seed S first")
    folds = sorted({run["fold"] for run in runs})
    corpus = runs[0]["corpus"]
    data = args.data or f"data/notes_{sum(corpus['clips'].values())}"
    baseline = baseline_hits(data, corpus["seed"], sum(corpus["clips"].values()), folds)
    seeds, clips, correct, programs = pooled(runs, baseline)
    methods = {}
    for method, hits in correct.items():
        per_seed = hits.mean(axis=1)
        seeds_interval = json_interval(t_interval(per_seed))  # one seed: no interval (JSON null)
        methods[method] = {"per_seed": per_seed.tolist(), "seeds": seeds_interval,
                           "programs": list(cluster_bootstrap(hits.mean(axis=0), programs, seed=0))}
    claims = []
    for better, worse in [(b, w) for b, w in CLAIMS if b in correct and w in correct]:
        difference = correct[better] - correct[worse]  # (seeds, notes)
        claims.append({"claim": f"{better} > {worse}",
                       **paired_difference(difference.mean(axis=0), programs, difference.mean(axis=1)),
                       "paper": PAPER[better] - PAPER[worse] if better in PAPER and worse in PAPER else None})
    record = {"experiment": "B on 8 folds over programs", "folds": folds, "seeds": seeds, "test_notes": len(clips),
              "test_programs": len(set(programs)), "methods": methods, "claims": claims,
              "runs": [{k: run[k] for k in ("fold", "seed", "command", "machine", "wall_seconds")} for run in runs]}
    lines = ["# Experiment B on folds over programs", "",
             f"{len(runs)} runs: folds {folds}, seeds {seeds}; {len(clips)} test notes of {len(set(programs))} "
             "programs, each scored by every seed. Intervals 95%: over seeds (t), and over test programs "
             "(bootstrap of each note's correctness averaged over seeds).", "",
             "| method | accuracy, over seeds | accuracy, over programs | paper |", "|---|---|---|---|"]
    lines += [f"| {m} | {cell(v['seeds'])} | {cell(v['programs'])} | {PAPER.get(m, float('nan')):.3f} |"
              .replace("nan", "–") for m, v in methods.items()]
    lines += ["", "A verdict needs the difference's intervals over programs and over seeds on one side of zero "
              "(one seed resolves nothing).", "",
              "| claim | difference, over programs | over seeds | detectable over programs | verdict |",
              "|---|---|---|---|---|"]
    lines += [f"| {c['claim']} | {cell(c['difference'])} | {cell(c['difference_over_seeds'])} | "
              f"{c['detectable']:.3f} | {c['verdict']} |" for c in claims]
    write_results("experiment_b_folds", record, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the notes corpus (default data/notes_<count>; rendered if missing)")
    parser.add_argument("--work", default="runs/experiment_b_folds", help="one folder of model files per run")
    parser.add_argument("--records", default=os.path.join(os.path.dirname(__file__), "..", "results", "run_records",
                                                        "experiment_b_folds"),
                        help="the runs' JSON records (committed; summarised from here)")
    parser.add_argument("--fold", type=int, choices=range(8), help="the fold to run (0-7)")
    parser.add_argument("--summarise", action="store_true", help="pool the records into the results")
    parser.add_argument("--corpus-seed", type=int, default=0, help="the corpus and its folds (default 0)")
    parser.add_argument("--scale", type=float, default=1.0, help="grows the data and the training")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="the training seed of a run")
    args = parser.parse_args(argv)
    if args.summarise == (args.fold is not None):
        parser.error("give --fold F (one run) or --summarise")
    return summarise(args) if args.summarise else one_run(args)


if __name__ == "__main__":
    sys.exit(main())
