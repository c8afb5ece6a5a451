"""The plot of the three experiments (docs/experiments.md) against the papers' numbers: one panel
per experiment, read from benchmarks/results/experiment_{a,b,c}_*.json (a missing result leaves its
panel empty).

    python benchmarks/experiments/plot_results.py     # -> benchmarks/results/experiments.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(__file__), "..", "results")
PANELS = (
    ("experiment_a_next_sample", "A: next-sample top-5, held-out piano"),
    ("experiment_b_linear_probe", "B: instrument family, held-out presets"),
    ("experiment_c_tagging", "C: tagging mAP on mixtures"),
)
# The papers' numbers the panels set ours against (B: Verma & Smith 2020; C: Verma & Berger 2021,
# the CNN bar at the best of its CNNs).
PAPER_B = {"supervised end to end": 0.713, "code LM probe": 0.601}
PAPER_C = {"cnn": 0.434, "transformer_none": 0.469, "transformer_wavelet": 0.537}


def bars(record: dict, stem: str) -> tuple[list[str], list[float], list[float | None]]:
    """(labels, ours, paper or None) of one experiment's record."""
    if stem.startswith("experiment_a"):
        rows = record["rows"]
        return [r["model"] for r in rows], [r["top5"] for r in rows], [r["paper_top5"] for r in rows]
    if stem.startswith("experiment_b"):
        rows = [r for r in record["probe"] if r["metric"] == "accuracy"] or record["probe"]
        return [r["method"] for r in rows], [r["test"] for r in rows], [PAPER_B.get(r["method"]) for r in rows]
    rows = record["rows"]
    return [r["model"] for r in rows], [r["test_mAP"] for r in rows], [PAPER_C.get(r["model"]) for r in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(RESULTS, "experiments.png"))
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.2))
    for ax, (stem, title) in zip(axes, PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
        path = os.path.join(RESULTS, stem + ".json")
        if not os.path.isfile(path):
            ax.text(0.5, 0.5, "not run yet", ha="center", transform=ax.transAxes)
            continue
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        labels, ours, paper = bars(record, stem)
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], ours, 0.4, label="fastwave (this corpus)", color="tab:blue")
        ax.bar([i + 0.2 for i in x], [p or 0 for p in paper], 0.4, label="paper", color="tab:gray")
        for i, value in enumerate(ours):
            ax.text(i - 0.2, value + 0.01, f"{value:.2f}", ha="center", fontsize=7)
        if "chance_test_mAP" in record:
            ax.axhline(record["chance_test_mAP"], color="tab:red", linestyle="--", linewidth=1)
            ax.text(len(labels) - 0.5, record["chance_test_mAP"] + 0.01, "chance", ha="right", fontsize=7,
                    color="tab:red")
        ax.set_xticks(list(x), [label.replace("_", "\n", 1).replace(" ", "\n", 1) for label in labels], fontsize=7)
        ax.text(0.01, 0.97, f"scale {record.get('scale', 1):g}, {record['wall_seconds'] / 60:.0f} min on {record['device']}",
                transform=ax.transAxes, va="top", fontsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
