"""Experiment A with seeds and learning curves: next-sample prediction on held-out piano at an equal
wall-clock budget (Verma & Chafe, 2021, Table 1: WaveNets 74-76% top-5, Transformers 80-84%).

The five models of `next_sample.py` (about 0.33-0.42 M parameters each) train on the piano corpus's
train phrases for the same wall-clock budget: each run trains until its updates have taken the
budget, its learning-rate decay keyed to the seconds spent (``max_seconds`` of the training loop), so
every model ends its schedule at the budget whatever the machine's load does to its update rate; a
few timed updates first place its warm-up and its evaluations. Validation bits per sample
are measured on the val preset's phrases as training goes (log-spaced), against samples seen and
against training seconds (``step_seconds``: updates only); the curve is the evidence. The final model
is scored, teacher-forced, on the first second (x --scale) of each of 150 test phrases: the corpus's
phrase generator played by a piano no model heard, TimGM6mb's Acoustic Grand (``--test-font``: the
second SoundFont's program 0), rendered once from seed 1. Phrases, not seconds of one phrase, set the
precision: the first design's 46 phrases detected 0.013 of top-5 for the conditioning claim, where
0.01 is asked. The piano corpus's own test preset (FluidR3_GM's program 1) plays the samples of
training program 0 (docs/corpora.md), so its phrases are scored as well but only reported, as a
heard piano ("twin" in the records), not used for the verdicts.

Intervals: over seeds (t), and over the test phrases (bootstrap of each phrase's score averaged over
seeds). A paired difference has both: over seeds (the t-interval of the per-seed differences, seed s
of one model against seed s of the other) and over phrases; a claim is supported or contradicted
only where both exclude zero. Equal updates are read from the validation curves, at the largest
update count every model reached.

    python benchmarks/experiments/next_sample_curves.py --model transformer_3 --seed 0   # one run
    python benchmarks/experiments/next_sample_curves.py --all         # 5 models x 3 seeds: 75 min on 2 idle cores (timed)
    python benchmarks/experiments/next_sample_curves.py --summarise   # results and figure

Time the runs on a quiet machine: a budget in seconds is only equal when the load is.
Runs: <work>/<model>_seed<seed>.json (default benchmarks/results/run_records/experiment_a_curves, committed so
that runs add up across machines and sessions; a run there is skipped), and each run's final model in
<models>/<model>_seed<seed>.safetensors (default runs/experiment_a_curves, not committed), so that a
run can be scored again without training it again. Results: benchmarks/results/experiment_a_curves.{md,json,png}.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import (cell, ensure_corpus, json_interval, parameters, render_once, run_record, token_split,  # noqa: E402
                     write_results)
from next_sample import PAPER_TOP5, models  # noqa: E402
from fastwave.corpora import DEFAULT_SOUNDFONT, SoundFontRenderer, plan_piano_phrases  # noqa: E402
from fastwave.models.checkpoint import save_checkpoint  # noqa: E402
from fastwave.training.evaluation import evaluate_sample_model  # noqa: E402
from fastwave.training.intervals import paired_difference, t_interval  # noqa: E402
from fastwave.training.sample_models import train_sample_model  # noqa: E402

SEEDS = (0, 1, 2)
# How a run keeps its budget: "seconds" (the schedule decays over the clock and the clock stops the
# run). Runs of an older design (a step count fixed from the calibration, whose seconds strayed with
# the load: 139-264 s for a 180-s budget) are not pooled with these.
SCHEDULE = "seconds"
BATCH, SEGMENT = 8, 1024
VAL_SAMPLES = 32_768  # of the val phrases, per evaluation: 2 s of audio, so a curve costs little
EVALS = 10  # validation points per run, log-spaced from the 10th update to the last
TEST_SECONDS = 1.0  # scored of each test phrase (x --scale)
# The test set: TEST_PHRASES phrases on the second SoundFont's Acoustic Grand. Sized from the first
# design's spread: the conditioning claim's per-phrase differences (SD 0.032) detected 0.013 on 46
# phrases; on 150 the claims detect 0.002-0.005 (measured; 0.005 the conditioning one).
TEST_PHRASES, TEST_INSTRUMENT, TEST_SEED = 150, 128, 1
TEST_FONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"  # Debian: apt install timgm6mb-soundfont
# (better, worse): the paper's orderings.
CLAIMS = [("transformer_3", "wavenet_10"), ("transformer_3", "wavenet_30"), ("wavenet_30", "wavenet_10"),
          ("transformer_6", "transformer_3"), ("transformer_3_cond", "transformer_3")]


def calibrate(model, train, seed: int) -> float:
    """Seconds per update of ``model`` on this machine now: the median of 4 timed updates of a copy
    (after one untimed). It plans the run's warm-up and evaluations; the budget itself is kept by
    the clock."""
    history = train_sample_model(copy.deepcopy(model), train, steps=5, batch_size=BATCH, segment=SEGMENT, lr=1e-3,
                                 seed=seed, progress=False)
    return float(np.median(history["step_seconds"][1:]))


def val_tokens(folder: str) -> list[torch.Tensor]:
    """The val phrases cut to VAL_SAMPLES tokens in all (the first phrases first)."""
    streams, left = [], VAL_SAMPLES
    for stream in token_split(folder, "val"):
        if left <= 1:
            break
        streams.append(stream[:left])
        left -= len(streams[-1])
    return streams


def test_design(args) -> str:
    """What a run's test phrases are: runs are pooled only with runs of the same test set."""
    return (f"{args.test_phrases} phrases (seed {TEST_SEED}) on instrument {TEST_INSTRUMENT} of "
            f"{os.path.basename(DEFAULT_SOUNDFONT)} + {os.path.basename(args.test_font)}, first {TEST_SECONDS * args.scale:g} s")


def test_tokens(args) -> list[torch.Tensor]:
    """The test phrases (rendered once into <data root>/piano_test...), each cut to the seconds scored."""
    if not os.path.isfile(args.test_font):
        raise SystemExit(f"--test-font {args.test_font}: no such file (Debian: apt install timgm6mb-soundfont)")
    font = os.path.splitext(os.path.basename(args.test_font))[0]
    folder = os.path.join(os.path.dirname(os.path.abspath(args.data)), f"piano_test{args.test_phrases}_{font}_seed{TEST_SEED}")
    render_once(folder, lambda: plan_piano_phrases(args.test_phrases, TEST_INSTRUMENT, seed=TEST_SEED),
                lambda: SoundFontRenderer([DEFAULT_SOUNDFONT, args.test_font]), kind="piano", seed=TEST_SEED,
                command=f"plan_piano_phrases({args.test_phrases}, {TEST_INSTRUMENT}, seed={TEST_SEED})")
    return scored(token_split(folder, "test"), args)


def scored(phrases: list[torch.Tensor], args) -> list[torch.Tensor]:
    return [phrase[:round(16000 * TEST_SECONDS * args.scale) + 1] for phrase in phrases]


def score_phrases(model, phrases: list[torch.Tensor]) -> list[dict]:
    """Each phrase's metrics. Windows of 8,192 overlapping by 1,024 (the Transformers' attention window
    and more, the 10-layer WaveNet's receptive field): a 1-s phrase costs 18,000 positions where windows
    of 4,096 took 21,500 (measured: 0.45-0.68 s a phrase for the Transformers here)."""
    return [evaluate_sample_model(model, [phrase], segment=8192, burn_in=1024) for phrase in phrases]


def weighted(phrases: list[dict], key: str) -> float:
    """The run's score over the phrases: their mean weighted by positions scored."""
    return float(np.average([p[key] for p in phrases], weights=[p["positions"] for p in phrases]))


def one_run(args, name: str, seed: int) -> None:
    path = os.path.join(args.work, f"{name}_seed{seed}.json")
    if os.path.isfile(path):
        print(f"{path}: done, skipped")
        return
    started = time.perf_counter()
    train, val = token_split(args.data, "train"), val_tokens(args.data)
    test, twin = test_tokens(args), scored(token_split(args.data, "test"), args)
    torch.manual_seed(seed)
    model = models()[name]().to(args.device)
    per_update = calibrate(model, train, seed)
    planned = max(10, round(args.budget / per_update))
    # steps: a bound far past the plan; the budget stops the run
    history = train_sample_model(model, train, steps=100 * planned, max_seconds=args.budget, batch_size=BATCH,
                                 segment=SEGMENT, lr=1e-3, warmup=max(1, planned // 10), seed=seed,
                                 eval_tokens=val, eval_at=eval_steps(planned), eval_segment=4096, progress=False)
    steps = len(history["loss"])
    seconds = np.cumsum(history["step_seconds"])
    curve = [{"step": e["step"], "samples": e["step"] * BATCH * SEGMENT, "train_seconds": float(seconds[e["step"] - 1]),
              "bits_per_sample": e["bits_per_sample"], "top5": e["top5"]} for e in history["eval"]]
    os.makedirs(args.models, exist_ok=True)
    save_checkpoint(model, os.path.join(args.models, f"{name}_seed{seed}.safetensors"))
    phrases, twin_phrases = score_phrases(model, test), score_phrases(model, twin)
    keys = ("top1", "top5", "bits_per_sample", "positions")
    record = {"model": name, "parameters": parameters(model), "budget_seconds": args.budget,
              "schedule": SCHEDULE, "calibrated_seconds_per_update": per_update, "planned_steps": planned,
              "steps": steps, "train_seconds": float(seconds[-1]),
              "samples_seen": steps * BATCH * SEGMENT, "curve": curve, "test_set": test_design(args),
              "test_phrases": [{k: p[k] for k in keys} for p in phrases],
              **{k: weighted(phrases, k) for k in ("top1", "top5", "bits_per_sample")},
              "twin_test_phrases": [{k: p[k] for k in keys} for p in twin_phrases],
              **{f"twin_{k}": weighted(twin_phrases, k) for k in ("top1", "top5", "bits_per_sample")},
              **run_record(seed, args.device, time.perf_counter() - started)}
    os.makedirs(args.work, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    print(f"{name} seed {seed}: {steps} updates in {record['train_seconds']:.0f} s, test top-5 {record['top5']:.3f}, "
          f"{record['bits_per_sample']:.3f} bits/sample", flush=True)


def eval_steps(steps: int) -> list[int]:
    """Where a run planned at ``steps`` updates is evaluated (and after its last): log-spaced, so that
    a fast model's curve (many updates) has points down at a slow model's update count, where equal
    updates are read, and the figure's log axis is evenly covered."""
    return sorted({int(round(s)) for s in np.geomspace(min(10, steps), steps, EVALS)})


def at_updates(curve: list[dict], step: float) -> float:
    """Validation bits per sample at ``step`` updates, linear in log(updates) between the curve's
    points; NaN outside them (a curve is not extrapolated)."""
    steps = [p["step"] for p in curve]
    if not steps[0] <= step <= steps[-1]:
        return float("nan")
    return float(np.interp(np.log(step), np.log(steps), [p["bits_per_sample"] for p in curve]))


def pool_runs(runs: list[dict], prefix: str = "") -> tuple[dict, list[dict], int]:
    """Run records -> ({model: means and intervals}, the paired claims, the common update count), on
    the test phrases (``prefix`` "twin_": on the corpus's own test phrases, a heard piano's)."""
    by_model = {}
    for run in runs:
        by_model.setdefault(run["model"], []).append(run)
    common = min(min(run["steps"] for run in group) for group in by_model.values())
    table = {}
    for name, group in by_model.items():
        table[name] = {"seeds": sorted(r["seed"] for r in group), "parameters": group[0]["parameters"],
                       "steps": [r["steps"] for r in group], "train_seconds": [r["train_seconds"] for r in group],
                       "top5": interval_of([r[prefix + "top5"] for r in group]),
                       "bits_per_sample": interval_of([r[prefix + "bits_per_sample"] for r in group]),
                       # None where a curve has no point that early (a budget of a few updates)
                       "val_bits_at_common_updates": interval_of([at_updates(r["curve"], common) for r in group],
                                                                 missing_ok=True),
                       # per test phrase, averaged over seeds: the unit of the bootstrap
                       "phrase_top5": np.mean([[p["top5"] for p in r[prefix + "test_phrases"]] for r in group],
                                              axis=0).tolist()}
    claims = []
    for better, worse in CLAIMS:
        if better not in table or worse not in table:
            continue
        diff = np.array(table[better]["phrase_top5"]) - np.array(table[worse]["phrase_top5"])
        seeds = sorted(set(table[better]["seeds"]) & set(table[worse]["seeds"]))
        top5 = {(r["model"], r["seed"]): r[prefix + "top5"] for r in runs}
        claims.append({"claim": f"{better} > {worse} (test top-5)", "paper": PAPER_TOP5[better] - PAPER_TOP5[worse],
                       **paired_difference(diff, np.arange(len(diff)),
                                           [top5[(better, s)] - top5[(worse, s)] for s in seeds])})
    return table, claims, common


def interval_of(values, missing_ok: bool = False) -> list:
    if missing_ok and not np.all(np.isfinite(values)):
        return [None, None, None]
    return json_interval(t_interval(values))


def summarise(args) -> int:
    runs = []
    for path in sorted(glob.glob(os.path.join(args.work, "*_seed*.json"))):
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    if not runs:
        raise SystemExit(f"no runs under {args.work}: run --model M --seed S (or --all) first")
    stale = [f"{r['model']} seed {r['seed']}" for r in runs if r.get("schedule") != SCHEDULE]
    if stale:
        raise SystemExit(f"runs under {args.work} of another design (not keyed to seconds): {', '.join(stale)}; "
                         "move them away and rerun")
    designs = sorted({r.get("test_set", "the corpus's own test phrases") for r in runs})
    if designs != [test_design(args)]:
        raise SystemExit(f"runs under {args.work} were scored on {designs}, not on {test_design(args)}: move "
                         "the others away and rerun")
    table, claims, common = pool_runs(runs)
    twin_table, twin_claims, _ = pool_runs(runs, "twin_")
    record = {"experiment": "A: next-sample prediction, equal wall-clock budgets", "budget_seconds": args.budget,
              "batch": BATCH, "segment": SEGMENT, "test_set": test_design(args), "common_updates": common,
              "models": table, "claims": claims,
              "twin_test": {"test_set": "the piano corpus's test phrases (FluidR3_GM program 1: training program 0's "
                                        "samples)", "top5": {name: v["top5"] for name, v in twin_table.items()},
                            "claims": twin_claims},
              "runs": [{k: r[k] for k in ("model", "seed", "steps", "train_seconds", "command", "machine")} for r in runs]}
    seconds = [r["train_seconds"] for r in runs]
    lines = ["# Experiment A: next-sample prediction at equal wall-clock budgets", "",
             f"{len(runs)} runs; each model trains for {args.budget:.0f} s of updates ({BATCH} crops of {SEGMENT} "
             f"each; the learning rate decays over the seconds, and the clock stops the run: "
             f"{min(seconds):.0f}-{max(seconds):.0f} s taken), then is scored on the test set: {test_design(args)} "
             f"(a piano no model heard). 95% intervals "
             f"over seeds (t). Equal updates: validation bits/sample at {common} updates, the most every model "
             "reached.", "",
             "| model | parameters | seeds | updates | train seconds | test top-5 | test bits/sample "
             "| val bits at equal updates | paper top-5 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, v in table.items():
        lines.append(f"| {name} | {v['parameters']:,} | {len(v['seeds'])} | {min(v['steps'])}-{max(v['steps'])} | "
                     f"{min(v['train_seconds']):.0f}-{max(v['train_seconds']):.0f} | {cell(v['top5'])} | "
                     f"{cell(v['bits_per_sample'])} | {cell(v['val_bits_at_common_updates'])} | {PAPER_TOP5[name]:.2f} |")
    lines += ["", "Paired differences in test top-5: over the test phrases (each phrase's score averaged over seeds) "
              "and over seeds (seed s against seed s); a verdict needs both intervals on one side of zero.",
              "", "| claim | difference, over phrases | over seeds | detectable over phrases | paper | verdict |",
              "|---|---|---|---|---|---|"]
    lines += [claim_row(c) for c in claims]
    lines += ["", "The same models on the piano corpus's own test phrases (FluidR3_GM's program 1, which plays training "
              "program 0's samples: a heard piano), reported only:", "",
              "| claim | difference, over phrases | over seeds | detectable over phrases | paper | verdict |",
              "|---|---|---|---|---|---|"]
    lines += [claim_row(c) for c in twin_claims]
    write_results("experiment_a_curves", record, "\n".join(lines) + "\n")
    plot(runs)
    print("\n".join(lines))
    return 0


def claim_row(c: dict) -> str:
    return (f"| {c['claim']} | {cell(c['difference'])} | {cell(c['difference_over_seeds'])} | {c['detectable']:.3f} | "
            f"{c['paper']:+.2f} | {c['verdict']} |")


def plot(runs: list[dict]) -> None:
    """Validation bits/sample against samples seen and against training seconds, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = {}
    for run in sorted(runs, key=lambda r: (r["model"], r["seed"])):
        colour = colours.setdefault(run["model"], f"C{len(colours)}")
        label = run["model"] if run["seed"] == min(r["seed"] for r in runs if r["model"] == run["model"]) else None
        for ax, key in zip(axes, ("samples", "train_seconds")):
            ax.plot([p[key] for p in run["curve"]], [p["bits_per_sample"] for p in run["curve"]], color=colour,
                    alpha=0.8, marker=".", label=label)
    axes[0].set_xlabel("samples seen")
    axes[1].set_xlabel("training seconds (updates only)")
    axes[0].set_ylabel("validation bits / sample")
    for ax in axes:
        ax.set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("Experiment A: learning curves, one line per seed")
    fig.tight_layout()
    fig.savefig(os.path.join(os.path.dirname(__file__), "..", "results", "experiment_a_curves.png"), dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the piano corpus (default data/piano_<minutes>min)")
    parser.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "..", "results", "run_records",
                                                     "experiment_a_curves"), help="one JSON per run")
    parser.add_argument("--models", default=os.path.join("runs", "experiment_a_curves"),
                        help="where each run's final model is saved")
    parser.add_argument("--test-phrases", type=int, default=TEST_PHRASES, help="test phrases to render and score")
    parser.add_argument("--test-font", default=TEST_FONT,
                        help="the SoundFont whose program 0 (an Acoustic Grand) plays the test phrases")
    parser.add_argument("--model", choices=list(models()), help="one run: the model")
    parser.add_argument("--all", action="store_true", help="every missing run: all models, seeds 0-2")
    parser.add_argument("--summarise", action="store_true", help="pool the runs under --work into the results")
    parser.add_argument("--scale", type=float, default=1.0, help="grows the corpus and the budget")
    parser.add_argument("--budget", type=float, default=None, help="training seconds per run (default 180 x scale)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="one run: the training seed")
    args = parser.parse_args(argv)
    if sum([args.model is not None, args.all, args.summarise]) != 1:
        parser.error("give --model M [--seed S] (one run), --all or --summarise")
    if args.test_phrases < 10:
        parser.error(f"--test-phrases must be at least 10, got {args.test_phrases}")
    if os.path.realpath(args.test_font) == os.path.realpath(DEFAULT_SOUNDFONT):
        parser.error(f"--test-font {args.test_font} is the corpus's font: its program 0 is a training piano")
    args.budget = args.budget or 180.0 * args.scale
    minutes = max(10.0, 60.0 * args.scale)
    args.data = args.data or f"data/piano_{minutes:g}min"
    ensure_corpus("piano", args.data, 0, minutes=minutes)
    if args.summarise:
        return summarise(args)
    for seed in ([args.seed] if args.model else SEEDS):  # a whole seed first: an interrupted --all keeps whole curves
        for name in ([args.model] if args.model else models()):
            one_run(args, name, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
