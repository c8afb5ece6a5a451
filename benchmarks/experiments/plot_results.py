"""The plot of the three experiments (docs/experiments.md): one panel per experiment, our numbers
only, read from benchmarks/results/experiment_{a,b,c}_*.json (a missing result leaves its panel
empty). A bar carries its 95% interval where the experiment measured one. A single run says so
instead: it has no interval to draw. The papers' numbers come from other data sets, so they are in
docs/experiments.md's table, not beside our bars.

    python benchmarks/experiments/plot_results.py     # -> benchmarks/results/experiments.png
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap

RESULTS = os.path.join(os.path.dirname(__file__), "..", "results")
# Per panel, the results files in order of preference: the designs with seeds and intervals first.
PANELS = (
    (("experiment_a_curves", "experiment_a_next_sample"), "A: next-sample top-5, held-out piano"),
    (("experiment_b_folds", "experiment_b_linear_probe"), "B: instrument family accuracy, held-out programs"),
    (("experiment_c_scaling", "experiment_c_tagging"), "C: tagging mAP on mixtures"),
)


def interval(v: list) -> tuple[float, float] | None:
    """[mean, low, high] (low/high None for one seed) -> (low, high) or None."""
    return None if None in v else (v[1], v[2])


def short_method(method: str) -> str:
    """B's method names, short enough to sit under a bar."""
    for long, short in ((", layer and pooling chosen on val", ", best layer"), (" probe", ""),
                        ("supervised end to end", "supervised"), (", 2,000 steps", ", 2k steps"),
                        ("the codes' centroids", "centroids"), ("on the ", "on ")):
        method = method.replace(long, short)
    return re.sub(r"(\d+)-stage residual codes", r"\1 residual codes", method)


def bars(record: dict, stem: str) -> tuple[list[str], list[float], list[tuple[float, float] | None], float | None]:
    """(labels, ours, 95% interval or None per bar, chance or None) of one experiment's record."""
    if stem == "experiment_b_folds":
        methods = {m: v for m, v in record["methods"].items() if not m.startswith("chance")}
        chance = next((v["programs"][0] for m, v in record["methods"].items() if m.startswith("chance")), None)
        labels = [short_method(m) for m in methods]
        return (labels, [v["programs"][0] for v in methods.values()],
                [tuple(v["programs"][1:]) for v in methods.values()], chance)
    if stem == "experiment_a_curves":  # intervals over seeds
        models = record["models"]
        return list(models), [v["top5"][0] for v in models.values()], [interval(v["top5"]) for v in models.values()], None
    if stem == "experiment_c_scaling":  # each arm at the most clips it trained on, intervals over seeds
        cells = {}
        for key, v in record["cells"].items():
            arm, size = key.rsplit(" n", 1)
            if int(size) >= cells.get(arm, (0, None))[0]:
                cells[arm] = (int(size), v)
        labels = [f"{arm} ({size})" for arm, (size, _) in cells.items()]
        return (labels, [v["over_seeds"][0] for _, v in cells.values()],
                [interval(v["over_seeds"]) for _, v in cells.values()], record.get("chance_test_mAP"))
    if stem.startswith("experiment_a"):
        rows = record["rows"]
        return [r["model"] for r in rows], [r["top5"] for r in rows], [None] * len(rows), None
    if stem.startswith("experiment_b"):
        rows = [r for r in record["probe"] if r["metric"] == "accuracy" and not r["method"].startswith("chance")]
        chance = next((r["test"] for r in record["probe"] if r["method"].startswith("chance")), None)
        return [r["method"] for r in rows], [r["test"] for r in rows], [None] * len(rows), chance
    rows = record["rows"]
    return ([r["model"] for r in rows], [r["test_mAP"] for r in rows], [None] * len(rows),
            record.get("chance_test_mAP"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(RESULTS, "experiments.png"))
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(22, 4.6), gridspec_kw={"width_ratios": [1, 3.4, 1]})  # B: 15 bars
    for ax, (stems, title) in zip(axes, PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
        stem = next((s for s in stems if os.path.isfile(os.path.join(RESULTS, s + ".json"))), None)
        if stem is None:
            ax.text(0.5, 0.5, "not run yet", ha="center", transform=ax.transAxes)
            continue
        with open(os.path.join(RESULTS, stem + ".json"), encoding="utf-8") as f:
            record = json.load(f)
        labels, ours, intervals, chance = bars(record, stem)
        x = list(range(len(labels)))
        errors = None
        if all(intervals):
            errors = [[v - low for v, (low, _) in zip(ours, intervals)], [high - v for v, (_, high) in zip(ours, intervals)]]
        ax.bar(x, ours, 0.6, yerr=errors, capsize=3, color="tab:blue")
        highest = max(interval[1] if interval else value for value, interval in zip(ours, intervals))
        ax.set_ylim(0, max(0.5, 1.2 * highest))  # our numbers are far below 1: room for them, not for empty axes
        for i, (value, interval) in enumerate(zip(ours, intervals)):
            top = interval[1] if interval else value
            ax.text(i, top + 0.015, f"{value:.2f}", ha="center", fontsize=7)
        if chance is not None:
            ax.axhline(chance, color="tab:red", linestyle="--", linewidth=1)
            ax.text(-0.45, chance + 0.01, "chance", ha="left", fontsize=7, color="tab:red")
        ax.set_xticks(x, ["\n".join(textwrap.wrap(label.replace("_", " "), 12, break_long_words=False)) for label in labels], fontsize=7)
        if stem == "experiment_b_folds":
            note = (f"{len(record['seeds'])} seed(s), {record['test_programs']} test programs; "
                    "bars: 95% interval over programs, within their family")
        elif stem == "experiment_a_curves":
            note = f"{record['budget_seconds']:.0f} s of training each; bars: 95% interval over seeds"
        elif stem == "experiment_c_scaling":
            note = f"{record['runs']} runs, clips in brackets; bars: 95% interval over seeds"
        else:
            note = (f"one run (no interval), scale {record.get('scale', 1):g}, "
                    f"{record['wall_seconds'] / 60:.0f} min on {record['device']}")
        ax.text(0.01, 0.97, note, transform=ax.transAxes, va="top", fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
