"""The piano WaveNet's training curves: validation bits per sample and top-5 against updates, one line
per training record of `piano_model.py` (a run that starts from another's weights, ``--init``, is
drawn after it: the x axis counts every update the weights have had; a record's
``training.init_updates`` says how many its starting weights had, else they are the run before's;
``training.updates``, where a run stopped before its planned ``steps``, how many it made).

A record whose evaluations also scored the moving average of the weights (``--ema-decay``) gets a
dashed line for it beside its own. Bits per sample are in each run's own token domain: a run with ``--pre-emphasis`` predicts mu-law of
the pre-emphasised audio, whose bits are not comparable with plain mu-law's; the figure says which.

    python benchmarks/experiments/piano_curve.py benchmarks/results/piano_model.json \
        benchmarks/results/piano_model_stage{2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18}.json   # -> benchmarks/results/piano_training_curve.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def curve(record: dict, offset: int) -> tuple[list[int], list[float], list[float]]:
    """A record's evaluations -> (updates counted from the first run, bits per sample, top-5)."""
    evals = record["eval"]
    return ([offset + e["step"] for e in evals], [e["bits_per_sample"] for e in evals], [e["top5"] for e in evals])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="+", help="piano_model.py records, in training order")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "results",
                                                      "piano_training_curve.png"))
    args = parser.parse_args(argv)
    import matplotlib

    from piano_model import DEFAULT_SHAPE, wavenet_shape  # the script's folder is on the path

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    legend_rows = (len(args.records) * 2 + 1) // 2  # two columns of (up to) two entries a record
    legend_inches = 0.15 + 0.14 * legend_rows  # the figure grows with its legend, the panels keep their size
    fig, (bits_ax, top5_ax) = plt.subplots(1, 2, figsize=(11, 4.2 + legend_inches))
    offset = 0
    # matplotlib's default cycle repeats after ten lines: past ten records, twenty distinct colours
    colours = plt.get_cmap("tab10" if len(args.records) <= 10 else "tab20").colors
    for index, path in enumerate(args.records):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        training = record["training"]
        emphasis = training.get("pre_emphasis", 0.0)
        start = training.get("init_updates", offset) if training.get("init") else 0  # a fresh run: update 0
        steps, bits, top5 = curve(record, start)
        noise = training.get("input_noise", 0.0)
        decay = record.get("model", {}).get("roll", {}).get("onset_decay")  # piano_model.py --onset-envelope
        shape = record.get("model", {}).get("shape")  # piano_model.py --shape; records before it: the default
        label = (f"{os.path.basename(path)}: " + (f"pre-emphasis {emphasis:g}" if emphasis else "plain mu-law")
                 + (", {layers} layers of {residual_channels}/{gate_channels}/{skip_channels}".format(**shape)
                    if shape and shape != wavenet_shape(DEFAULT_SHAPE) else "")
                 + (f", input noise {noise:g}" if noise else "")
                 + (f", onset envelope {decay:g} s" if decay else "")
                 + (", score-only training" if training.get("train_only") == "score" else "")  # --train-only score
                 + ((f" (from update {training['init_updates']:,})" if "init_updates" in training else " (from the run before)")
                    if training.get("init") else ""))
        line, = bits_ax.plot(steps, bits, marker="o", label=label, color=colours[index % len(colours)])
        top5_ax.plot(steps, top5, marker="o", label=label, color=line.get_color())
        averaged = [e for e in record["eval"] if "ema_bits_per_sample" in e]  # --ema-decay: its average too
        if averaged:
            at = [start + e["step"] for e in averaged]
            style = dict(color=line.get_color(), linestyle="--", marker="s",
                         label=f"{os.path.basename(path)}: the weights' moving average")
            bits_ax.plot(at, [e["ema_bits_per_sample"] for e in averaged], **style)
            top5_ax.plot(at, [e["ema_top5"] for e in averaged], **style)
        offset = start + training.get("updates", training["steps"])  # a run stopped early: what it made
    bits_ax.set(xlabel="updates (8 crops of 4,096 samples)", ylabel="validation bits / sample (own tokens)",
                title="held-out piano preset, 8 phrases")
    top5_ax.set(xlabel="updates", ylabel="validation top-5", title="next-sample top-5")
    fig.legend(*bits_ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7)  # below both panels
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))  # room for the legend
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
