"""Experiment C as a data-scaling curve: does the gap between the log-mel CNN and the wavelet Audio
Transformer (Verma & Berger, 2021) close as the training data grows, and how fast?

Every arm trains on the first N training clips of one `mixtures` corpus (N = 250, 500, 1000, 2000 x
--scale: nested subsets, 2 x apart) for the same budget of updates, with the same augmentation
(shift, gain, polarity, on-the-fly mixing), learning rate and schedule, and is scored on the same
test clips (GM programs no model heard) at its best validation mAP. The arms, parameters matched to
within 1% (about 0.32 M):
- **cnn**: the log-mel CNN, channels 16, 32, 64, 136;
- **transformer_none / _avg / _wavelet**: the Transformer on raw 25 ms patches (front end 256,
  4 layers of width 64), with each pooling between layers;
- **transformer_logmel**: the same Transformer (pooling none) reading each patch's log-mel frame
  (front end 922 to match the parameters): against transformer_none it measures the learned
  filterbank, against the CNN the architecture.

Intervals: over seeds (t, on each arm's mean test mAP) and over test programs. Each of the 16
classes (GM families) has one test program, so a class's AP is that program's: the bootstrap
resamples classes (their APs averaged over seeds), for each arm and for each paired difference. A
paired difference also has its interval over seeds (seed s of one arm against seed s of the other);
a claim is supported or contradicted only where both intervals exclude zero.

    python benchmarks/experiments/tagging_scaling.py --arm cnn --size 250 --seed 0   # one run
    python benchmarks/experiments/tagging_scaling.py --all        # every missing run (3 seeds): see the budget
    python benchmarks/experiments/tagging_scaling.py --summarise  # results and figure from the runs there are

Runs: train-classifier's files in <work>/<arm>_n<size>_seed<seed>/, and each run's record (test
scores, per-class AP, command, machine) in <records>/<arm>_n<size>_seed<seed>.json, committed so that
runs add up across machines and sessions; a run with a record is skipped. Results:
benchmarks/results/experiment_c_scaling.{md,json,png}.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import cell, clip_corpus, json_interval, parameters, run_record, write_results  # noqa: E402
from fastwave.training.intervals import cluster_bootstrap, paired_difference, t_interval  # noqa: E402

TRANSFORMER = ["--arch", "transformer", "--frontend", "256", "--layers", "4", "--width", "64", "--heads", "4"]
ARMS = {"cnn": ["--arch", "cnn", "--channels", "16,32,64,136"],
        **{f"transformer_{p}": [*TRANSFORMER, "--pooling", p] for p in ("none", "avg", "wavelet")},
        "transformer_logmel": ["--arch", "transformer", "--frontend", "922", "--layers", "4", "--width", "64",
                               "--heads", "4", "--pooling", "none", "--inputs", "logmel"]}
AUGMENT = ["--shift-ms", "10", "--gain-db", "6", "--polarity", "--mix", "0.5"]
SIZES = (250, 500, 1000, 2000)
SEEDS = (0, 1, 2)
RECORDS = os.path.join(os.path.dirname(__file__), "..", "results", "run_records", "experiment_c_scaling")
CORPUS_CLIPS = 3000  # about 2,100 training clips: the largest size fits
# The differences the curve is read by: (better, worse, what it measures).
COMPARISONS = [("cnn", "transformer_none", "CNN over the raw Transformer"),
               ("cnn", "transformer_wavelet", "CNN over the raw Transformer with wavelet pooling"),
               ("transformer_wavelet", "transformer_none", "wavelet pooling over none (the paper's claim)"),
               ("transformer_logmel", "transformer_none", "a log-mel front end over the learned one"),
               ("cnn", "transformer_logmel", "the CNN over the Transformer, both on log-mel")]


def arm_model(arm: str, classes: int = 16):
    """The model ``train-classifier`` builds for ``arm`` (untrained), for its parameter count."""
    from fastwave.cli.entry_point import build_parser
    from fastwave.cli.tagging import _new_classifier

    args = build_parser().parse_args(["train-classifier", "data", "--out-dir", "out", *ARMS[arm]])
    return _new_classifier(args, num_classes=classes, multi_label=True)


def budget(args) -> dict:
    steps = max(20, round(300 * args.scale))
    return {"steps": steps, "eval_every": max(1, steps // 10), "warmup": max(1, steps // 10), "batch_size": 64,
            "lr": 1e-3}


def sizes(args) -> list[int]:
    return [max(64, round(n * args.scale)) for n in SIZES]


def size_labels(data: str, size: int, out: str) -> None:
    """labels.csv of ``data`` keeping the first ``size`` training clips of a fixed shuffle (so every
    size holds the smaller ones) and every val and test clip."""
    with open(os.path.join(data, "labels.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [i for i, row in enumerate(rows) if row["split"] == "train"]
    if size > len(train):
        raise SystemExit(f"{data} has {len(train)} training clips, fewer than --size {size}")
    kept = set(np.random.default_rng(0).permutation(train)[:size].tolist())
    with open(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["fname", "labels", "split"])
        writer.writeheader()
        for i, row in enumerate(rows):
            if row["split"] != "train" or i in kept:
                writer.writerow({k: row[k] for k in ("fname", "labels", "split")})


def test_scores(run: str, data: str, labels: str | None = None) -> dict:
    """The best checkpoint on the test clips of ``labels`` (a labels.csv of ``data``; default the
    run's own) -> per-class test AP and the mAP."""
    import fastwave
    from fastwave.tagging.classify import clip_probabilities
    from fastwave.training.clip_windows import WindowedClips
    from fastwave.training.data import clips_from_csv
    from fastwave.training.metrics import average_precision, multilabel_metrics

    model = fastwave.load_model(os.path.join(run, "best.safetensors"))
    clips = clips_from_csv(labels or os.path.join(run, "labels.csv"), data, vocabulary=list(model.config.labels))
    test = clips.subset(np.flatnonzero(np.asarray(clips.splits) == "test"))
    windows = WindowedClips.from_clips(test, sample_rate=model.config.sample_rate, min_samples=model.config.patch_size,
                                       progress=False)
    scores = clip_probabilities(model, windows).numpy()
    targets = test.targets()
    per_class = [average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])]
    return {"classes": list(model.config.labels), "class_ap": per_class,
            "mAP": multilabel_metrics(scores, targets).mAP, "test_clips": len(test), "parameters": parameters(model)}


def one_run(args, arm: str, size: int, seed: int) -> None:
    from fastwave.cli import main as fastwave_cli

    name = f"{arm}_n{size}_seed{seed}"
    run, path = os.path.join(args.work, name), os.path.join(args.records, name + ".json")
    if os.path.isfile(path):
        print(f"{path}: done, skipped")
        return
    started = time.perf_counter()
    shutil.rmtree(run, ignore_errors=True)  # a run cut off before its record starts again
    os.makedirs(run)
    size_labels(args.data, size, os.path.join(run, "labels.csv"))
    b = budget(args)
    code = fastwave_cli(["train-classifier", args.data, "--labels", os.path.join(run, "labels.csv"), "--out-dir", run,
                         "--steps", str(b["steps"]), "--eval-every", str(b["eval_every"]), "--warmup", str(b["warmup"]),
                         "--batch-size", str(b["batch_size"]), "--lr", str(b["lr"]), "--device", args.device,
                         "--seed", str(seed), "--quiet", *AUGMENT, *ARMS[arm]])
    if code != 0:
        raise SystemExit(f"training {arm} on {size} clips (seed {seed}) failed")
    record = {"arm": arm, "size": size, "budget": b, **test_scores(run, args.data),
              **run_record(seed, args.device, time.perf_counter() - started)}
    os.makedirs(args.records, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    print(f"{arm}, {size} clips, seed {seed}: test mAP {record['mAP']:.3f} ({record['wall_seconds']:.0f} s)", flush=True)


def pool_runs(runs: list[dict]) -> tuple[dict, list[dict]]:
    """Run records -> ({(arm, size): mean and intervals}, the paired comparisons)."""
    cells = {}  # (arm, size) -> list of runs
    for run in runs:
        cells.setdefault((run["arm"], run["size"]), []).append(run)
    table = {}
    for (arm, size), group in cells.items():
        maps = np.array([run["mAP"] for run in group])
        class_ap = np.mean([run["class_ap"] for run in group], axis=0)  # per class, over seeds
        seeds = json_interval(t_interval(maps))  # one seed: no interval (JSON null)
        table[(arm, size)] = {"seeds": sorted(run["seed"] for run in group), "per_seed": maps.tolist(),
                              "over_seeds": seeds, "class_ap": class_ap.tolist(),
                              "over_programs": list(cluster_bootstrap(class_ap, np.arange(len(class_ap)), seed=0)),
                              "parameters": group[0]["parameters"], "wall_seconds": [run["wall_seconds"] for run in group]}
    comparisons = []
    for better, worse, meaning in COMPARISONS:
        for size in sorted({size for _, size in table}):
            if (better, size) not in table or (worse, size) not in table:
                continue
            diff = np.array(table[(better, size)]["class_ap"]) - np.array(table[(worse, size)]["class_ap"])
            seeds = sorted(set(table[(better, size)]["seeds"]) & set(table[(worse, size)]["seeds"]))
            maps = {(run["arm"], run["seed"]): run["mAP"] for run in cells[(better, size)] + cells[(worse, size)]}
            comparisons.append({"claim": f"{better} > {worse}", "meaning": meaning, "size": size,
                                **paired_difference(diff, np.arange(len(diff)),
                                                    [maps[(better, s)] - maps[(worse, s)] for s in seeds])})
    return table, comparisons


def summarise(args) -> int:
    runs = []
    for path in sorted(glob.glob(os.path.join(args.records, "*_n*_seed*.json"))):
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    if not runs:
        raise SystemExit(f"no runs under {args.records}: run --arm A --size N --seed S (or --all) first")
    table, comparisons = pool_runs(runs)
    arms = [a for a in ARMS if any(a == arm for arm, _ in table)]
    trained = sorted({size for _, size in table})
    from tagging import chance_map

    chance = chance_map(args.data, 0)
    record = {"experiment": "C: data-scaling curve on mixtures", "budget": budget(args), "augment": AUGMENT,
              "arms": {arm: ARMS[arm] for arm in arms}, "sizes": trained, "chance_test_mAP": chance,
              "cells": {f"{arm} n{size}": value for (arm, size), value in sorted(table.items())},
              "comparisons": comparisons, "runs": len(runs)}
    b = budget(args)
    lines = ["# Experiment C: data-scaling curve (mixtures, 16 GM families)", "",
             f"{len(runs)} runs. Every arm: {b['steps']} updates of {b['batch_size']} at lr {b['lr']:g}, augmentation "
             f"`{' '.join(AUGMENT)}`, best of {b['steps'] // b['eval_every']} validation checks. Test mAP with 95% "
             f"intervals over seeds (t) and over the 16 test programs (bootstrap of per-class AP). Chance (random "
             f"scores): {chance:.3f}.", "",
             "| arm | parameters | " + " | ".join(f"{n} clips" for n in trained) + " |",
             "|---|---|" + "---|" * len(trained)]
    for arm in arms:
        present = [table.get((arm, n)) for n in trained]
        params = next(v["parameters"] for v in present if v)
        lines.append(f"| {arm} | {params:,} | " + " | ".join(cell(v["over_seeds"]) if v else "–" for v in present) + " |")
    lines += ["", "Paired differences in test mAP, over the 16 test programs and over seeds (seed s against seed s); "
              "a verdict needs both intervals on one side of zero:", "",
              "| claim | clips | difference, over programs | over seeds | detectable over programs | verdict |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {c['claim']} ({c['meaning']}) | {c['size']} | {cell(c['difference'])} | "
              f"{cell(c['difference_over_seeds'])} | {c['detectable']:.3f} | {c['verdict']} |" for c in comparisons]
    write_results("experiment_c_scaling", record, "\n".join(lines) + "\n")
    plot(table, arms, trained, chance)
    print("\n".join(lines))
    return 0


def plot(table: dict, arms: list[str], trained: list[int], chance: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.2, 4.2))
    for i, arm in enumerate(arms):
        present = [(n, table[(arm, n)]) for n in trained if (arm, n) in table]
        x = np.array([n for n, _ in present]) * (1 + 0.03 * (i - len(arms) / 2))  # a nudge keeps the bars apart
        mean = np.array([v["over_seeds"][0] for _, v in present])
        low = np.array([v["over_seeds"][1] if v["over_seeds"][1] is not None else v["over_seeds"][0] for _, v in present])
        high = np.array([v["over_seeds"][2] if v["over_seeds"][2] is not None else v["over_seeds"][0] for _, v in present])
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label=arm)
    ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(trained, [str(n) for n in trained])
    ax.set_xlabel("training clips")
    ax.set_ylabel("test mAP (95% interval over seeds)")
    ax.set_title("Experiment C: does the gap close with data?")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: no point hidden
    fig.tight_layout()
    fig.savefig(os.path.join(os.path.dirname(__file__), "..", "results", "experiment_c_scaling.png"), dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the mixtures corpus (default data/mixtures_<count>; rendered if missing)")
    parser.add_argument("--work", default="runs/experiment_c_scaling", help="one folder of model files per run")
    parser.add_argument("--records", default=RECORDS, help="one JSON per run (committed; summarised from here)")
    parser.add_argument("--arm", choices=ARMS, help="one run: the arm")
    parser.add_argument("--size", type=int, help="one run: training clips (one of the sizes)")
    parser.add_argument("--all", action="store_true", help="every missing run: all arms, sizes and seeds 0-2")
    parser.add_argument("--summarise", action="store_true", help="pool the records into the results")
    parser.add_argument("--scale", type=float, default=1.0, help="grows the corpus, the sizes and the updates")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="one run: the training seed")
    args = parser.parse_args(argv)
    one = args.arm is not None or args.size is not None
    if sum([one, args.all, args.summarise]) != 1:
        parser.error("give --arm A --size N [--seed S] (one run), --all or --summarise")
    corpus_args = argparse.Namespace(data=args.data, seed=0, scale=args.scale)
    clip_corpus("mixtures", corpus_args, clips=CORPUS_CLIPS)  # the same corpus for every run
    args.data = corpus_args.data
    if args.summarise:
        return summarise(args)
    if one:
        if args.arm is None or args.size not in sizes(args):
            parser.error(f"one run needs --arm and --size in {sizes(args)}")
        one_run(args, args.arm, args.size, args.seed)
        return 0
    for seed in SEEDS:  # a whole seed first: an interrupted --all still leaves complete curves
        for size in sizes(args):
            for arm in ARMS:
                one_run(args, arm, size, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
