"""The experiment scripts' designs, on made-up runs: what they pool, match and conclude (the runs
themselves take hours; these are the parts a mistake would silently bias)."""
import csv
import pathlib
import sys

import numpy as np
import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import linear_probe_folds  # noqa: E402
import tagging_scaling  # noqa: E402


def test_c_arms_have_matched_parameters():
    counts = {arm: sum(p.numel() for p in tagging_scaling.arm_model(arm).parameters()) for arm in tagging_scaling.ARMS}
    assert max(counts.values()) <= 1.01 * min(counts.values()), counts
    assert tagging_scaling.arm_model("transformer_logmel").config.inputs == "logmel"
    assert {tagging_scaling.arm_model(a).config.pooling for a in ("transformer_none", "transformer_avg",
                                                                   "transformer_wavelet")} == {"none", "avg", "wavelet"}


def test_c_sizes_are_nested_subsets_of_the_training_clips(tmp_path):
    rows = [{"fname": f"c{i}", "labels": "Piano", "split": ["train", "val", "test"][i % 3]} for i in range(30)]
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["fname", "labels", "split"])
        writer.writeheader()
        writer.writerows(rows)
    kept = {}
    for size in (2, 4, 8):
        tagging_scaling.size_labels(str(tmp_path), size, str(tmp_path / f"n{size}.csv"))
        with open(tmp_path / f"n{size}.csv") as f:
            split = [(row["fname"], row["split"]) for row in csv.DictReader(f)]
        kept[size] = {name for name, s in split if s == "train"}
        assert len(kept[size]) == size and sum(s != "train" for _, s in split) == 20  # every val and test clip
    assert kept[2] < kept[4] < kept[8]
    with pytest.raises(SystemExit, match="fewer than --size 11"):
        tagging_scaling.size_labels(str(tmp_path), 11, str(tmp_path / "x.csv"))


def _scaling_run(arm, size, seed, class_ap):
    return {"arm": arm, "size": size, "seed": seed, "class_ap": list(class_ap), "mAP": float(np.mean(class_ap)),
            "parameters": 1000, "wall_seconds": 1.0}


def test_c_pooling_intervals_and_verdicts():
    rng = np.random.default_rng(0)
    base = np.full(16, 0.4)
    runs = []
    for seed in range(3):
        runs.append(_scaling_run("cnn", 250, seed, base + 0.2 + 0.01 * rng.standard_normal(16)))
        none = base + 0.01 * rng.standard_normal(16)
        runs.append(_scaling_run("transformer_none", 250, seed, none))
        runs.append(_scaling_run("transformer_wavelet", 250, seed, none[::-1]))  # the same APs, other programs
    table, comparisons = tagging_scaling.pool_runs(runs)
    cell = table[("cnn", 250)]
    assert cell["seeds"] == [0, 1, 2] and cell["over_seeds"][1] < cell["over_seeds"][0] < cell["over_seeds"][2]
    assert cell["over_seeds"][0] == pytest.approx(np.mean([r["mAP"] for r in runs if r["arm"] == "cnn"]))
    verdicts = {c["claim"]: c for c in comparisons}
    assert verdicts["cnn > transformer_none"]["verdict"] == "supported"
    assert verdicts["cnn > transformer_none"]["difference"][0] == pytest.approx(0.2, abs=0.01)
    assert verdicts["transformer_wavelet > transformer_none"]["verdict"] == "not resolved"
    assert "transformer_logmel > transformer_none" not in verdicts  # an arm with no runs compares with nothing


def _probe_run(fold, seed, methods, baselines=None):
    clips = [f"note_{fold}{i:02d}_p{fold * 10 + i % 3:03d}_m060_v075.wav" for i in range(6)]
    rows = [{"method": m, "test_predictions": p} for m, p in methods.items()]
    run = {"fold": fold, "seed": seed, "test_clips": clips, "test_targets": [0, 1, 0, 1, 0, 1], "rows": rows}
    if baselines:
        run["rows"] = rows + [{"method": m, "test_predictions": p} for m, p in baselines.items()]
    return run


def test_b_pooling_leaves_out_methods_missing_from_some_runs(capsys):
    right, wrong = [0, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0]
    runs = [_probe_run(0, 0, {"code LM probe": right}, {"bag-of-codes probe": wrong}),
            _probe_run(1, 0, {"code LM probe": wrong})]  # its baselines not yet run
    baseline = {clip: 1.0 for run in runs for clip in run["test_clips"]}
    seeds, clips, correct, programs = linear_probe_folds.pooled(runs, baseline)
    assert "bag-of-codes probe" not in correct and "left out (not in every run): bag-of-codes probe" in capsys.readouterr().out
    assert len(clips) == 12 and correct["code LM probe"].shape == (1, 12)  # every run's notes kept
    assert correct["code LM probe"].mean() == 0.5 and sorted(set(programs)) == [0, 1, 2, 10, 11, 12]
