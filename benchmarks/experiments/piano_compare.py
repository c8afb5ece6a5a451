"""Two piano models' playing compared, paired over the sampling seeds: the figures docs/piano_model.md
gives as "paired with the shipped model".

Each argument is a piano_eval record (piano_eval.py --record), or one record inside a file that
collects several, named by its keys after a '#', one per level:

    python benchmarks/experiments/piano_compare.py benchmarks/results/piano_model_audio_stage14.json \\
        benchmarks/results/piano_model_audio_first.json
    python benchmarks/experiments/piano_compare.py "benchmarks/results/piano_model_audio_soups.json#soups/s11_a0.5_l1/test" \\
        benchmarks/results/piano_model_audio.json

For each measure (median flatness, mean chroma agreement, mean RMS over the phrases) it prints the
first model's mean over the seeds minus the second's, with a 95% Student-t interval of the per-seed
differences: both models played the same phrases with the same sampling seeds, so a seed's
difference cancels what that draw shares between them. The two records must hold the same seeds,
split and phrases.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from fastwave.training.intervals import t_interval  # noqa: E402

MEASURES = ("median_flatness_generated", "chroma_generated", "rms_generated")


def load_record(spec: str) -> dict:
    """'FILE' or 'FILE#key/key' -> the piano_eval record there (a dict with ``by_seed``)."""
    path, _, keys = spec.partition("#")
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read a record from {path}: {error}") from None
    for key in filter(None, keys.split("/")):
        if not isinstance(record, dict) or key not in record:
            have = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise SystemExit(f"{spec}: no key {key!r} here (it holds {have})")
        record = record[key]
    if not isinstance(record, dict) or "by_seed" not in record:
        raise SystemExit(f"{spec} is not a piano_eval record (no by_seed): name the record inside with '#key/key'")
    return record


def phrase_names(record: dict) -> list[str] | None:
    """The phrases a record played, in order (None for a record that kept no per-phrase rows)."""
    rows = record.get("phrases")
    return sorted({row["phrase"] for row in rows}) if rows else None


def paired(first: dict, second: dict) -> dict:
    """Per-seed differences first - second of each measure -> {measure: (mean, low, high)}."""
    seeds = [row["seed"] for row in first["by_seed"]]
    if seeds != [row["seed"] for row in second["by_seed"]]:
        raise ValueError(f"the records hold different sampling seeds: {seeds} and "
                         f"{[row['seed'] for row in second['by_seed']]}")
    if len(seeds) < 2:
        raise ValueError("one sampling seed gives no interval: play at least two (piano_eval.py --seeds 0,1,2)")
    split = first.get("split", "test"), second.get("split", "test")  # the first records played the test phrases
    names = phrase_names(first), phrase_names(second)
    if split[0] != split[1] or (None not in names and names[0] != names[1]):
        raise ValueError(f"the records played different phrases: {split[0]} {names[0]} and {split[1]} {names[1]}")
    return {measure: t_interval([a[measure] - b[measure] for a, b in zip(first["by_seed"], second["by_seed"])])
            for measure in MEASURES}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="a piano_eval record: FILE or FILE#key/key")
    parser.add_argument("second", help="the record it is compared with (the same seeds and phrases)")
    args = parser.parse_args(argv)
    try:
        differences = paired(load_record(args.first), load_record(args.second))
    except ValueError as error:
        parser.error(str(error))
    print(f"{args.first} minus {args.second}, paired over the sampling seeds (95% t-interval):")
    for measure, (mean, low, high) in differences.items():
        interval = "" if math.isnan(low) else f" [{low:+.4f}, {high:+.4f}]"
        print(f"  {measure.removesuffix('_generated')}: {mean:+.4f}{interval}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
