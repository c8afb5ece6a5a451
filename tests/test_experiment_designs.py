"""The experiment scripts' designs, on made-up runs: what they pool, match and conclude (the runs
themselves take hours; these are the parts a mistake would silently bias)."""
import argparse
import csv
import json
import os
import pathlib
import sys

import numpy as np
import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import linear_probe_dictionary  # noqa: E402
import linear_probe_folds  # noqa: E402
from fastwave.corpora import DEFAULT_SOUNDFONT, FAMILIES  # noqa: E402
from fastwave.training.intervals import t_interval  # noqa: E402
import next_sample_curves  # noqa: E402
import piano_eval  # noqa: E402
import piano_model  # noqa: E402
import piano_shape_speed  # noqa: E402
import residual_error  # noqa: E402
import tagging_folds  # noqa: E402
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


def test_b_runs_carry_the_rows_of_their_baselines_and_longer_supervised_records(tmp_path):
    def write(name, rows, **more):
        (tmp_path / name).write_text(json.dumps({"rows": [{"method": m} for m in rows], **more}))

    write("fold0_seed0.json", ["code LM probe", "supervised end to end"], fold=0, seed=0)
    write("fold0_seed0_baselines.json", ["bag-of-codes probe"])
    write("fold0_seed0_supervised.json", [linear_probe_folds.LONG_SUPERVISED])
    vectors = [linear_probe_folds.ON_BOTTLENECK, linear_probe_folds.ON_PATCHES]
    write("fold0_seed0_vectors.json", vectors)
    write("fold1_seed0.json", ["code LM probe"], fold=1, seed=0)  # its other parts not yet run
    runs = linear_probe_folds.load_runs(str(tmp_path))
    assert [run["fold"] for run in runs] == [0, 1]  # the extras are not runs of their own
    assert [row["method"] for row in runs[0]["rows"]] == ["code LM probe", "supervised end to end", "bag-of-codes probe",
                                                          linear_probe_folds.LONG_SUPERVISED, *vectors]
    assert [row["method"] for row in runs[1]["rows"]] == ["code LM probe"]
    claimed = {method for claim in linear_probe_folds.CLAIMS for method in claim}
    assert {linear_probe_folds.LONG_SUPERVISED, linear_probe_folds.BASELINE, *vectors} <= claimed
    paths = linear_probe_folds.record_paths(argparse.Namespace(records="r", k=4, pretrain_clips=2400, scale=1.0,
                                                               fold=1, seed=2))
    assert paths == tuple(os.path.join("r", "k4_pretrain2400", "fold1_seed2" + end)
                          for end in (".json", *linear_probe_folds.EXTRAS))
    assert set(linear_probe_folds.PARTS) == set(linear_probe_folds.EXTRAS)  # every part has its maker
    residual = {method for rows in linear_probe_folds.RESIDUAL_ROWS.values() for method, _ in rows}
    assert residual <= claimed and set(linear_probe_folds.RESIDUAL_ROWS) <= set(linear_probe_folds.EXTRAS)
    # the LM on residual codes is claimed against the one-code LM, its random twin and the supervised
    # network on the same codes
    assert {(linear_probe_folds.ON_RESIDUAL_LM, linear_probe_folds.CHOSEN_LM),
            (linear_probe_folds.ON_RESIDUAL_LM, linear_probe_folds.ON_RESIDUAL_RANDOM),
            (linear_probe_folds.ON_RESIDUAL_4, linear_probe_folds.ON_RESIDUAL_LM)} <= set(linear_probe_folds.CLAIMS)
    assert "residual_lm" in linear_probe_folds.PART_NAMES


def test_c_designs_over_more_soundfonts_keep_their_own_records(capsys):
    one = argparse.Namespace(k=4, soundfonts=[DEFAULT_SOUNDFONT], records="r", work="w", scale=1.0, device="cpu",
                             test_clips=None)
    two = argparse.Namespace(**{**vars(one), "k": 8, "soundfonts": [DEFAULT_SOUNDFONT, "/x/TimGM6mb.sf2"]})
    other = argparse.Namespace(**{**vars(one), "soundfonts": ["/x/Other.sf2"]})
    assert tagging_folds.design(one) == "k4" and tagging_folds.results_stem(one) == "experiment_c_folds"  # as before
    assert tagging_folds.design(two) == "k8_FluidR3_GM+TimGM6mb"
    assert tagging_folds.results_stem(two) == "experiment_c_folds_k8_FluidR3_GM+TimGM6mb"
    assert tagging_folds.design(other) == "k4_Other"  # another single font never joins FluidR3's records
    rescored = argparse.Namespace(**{**vars(two), "test_clips": 4000})  # the same models, another test set
    assert tagging_folds.design(rescored) == "k8_FluidR3_GM+TimGM6mb_test4000"
    assert tagging_folds.training_design(rescored) == tagging_folds.design(two)
    folds = tagging_folds.folds_of(two)
    assert len(folds) == 8 and sorted(p for fold in folds for p in fold["test"]) == list(range(256))
    with pytest.raises(SystemExit) as stop:  # a font twice would be heard in training and tested
        tagging_folds.main(["--soundfonts", DEFAULT_SOUNDFONT, DEFAULT_SOUNDFONT, "--summarise"])
    assert stop.value.code == 2 and "lists a file twice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        tagging_folds.main(["--test-clips", "50", "--summarise"])
    assert stop.value.code == 2 and "at least 100" in capsys.readouterr().err


def _curve_run(model, seed, steps, phrase_top5, val_bits):
    """A made-up A run: ``steps`` updates, a straight validation curve from ``val_bits`` (start, end)."""
    curve = [{"step": s, "bits_per_sample": val_bits[0] + (val_bits[1] - val_bits[0]) * np.log(s) / np.log(steps)}
             for s in next_sample_curves.eval_steps(steps)]
    return {"model": model, "seed": seed, "steps": steps, "parameters": 1000, "train_seconds": 240.0,
            "top5": float(np.mean(phrase_top5)), "bits_per_sample": 5.0, "curve": curve,
            "test_phrases": [{"top5": t} for t in phrase_top5]}


def test_a_pooling_reads_equal_updates_and_pairs_phrases():
    """Equal updates are read at the fewest updates any model reached, from each run's own curve (its
    log-spaced evaluations reach down there; between them, linear in log updates); the
    paired claims resample phrases, so a model better on every phrase is supported however far the
    phrases differ from each other, and an ordering that flips between phrases is not resolved."""
    phrases = np.linspace(0.2, 0.6, 7)  # phrases differ far more than the models do
    runs = []
    for seed in range(3):
        runs.append(_curve_run("transformer_3", seed, 400, phrases + 0.02, (8.0, 4.0)))
        runs.append(_curve_run("wavenet_10", seed, 2000, phrases, (8.0, 6.0)))
        runs.append(_curve_run("wavenet_30", seed, 800, phrases + 0.02 * (-1) ** np.arange(7), (8.0, 5.0)))
    table, claims, common = next_sample_curves.pool_runs(runs)
    assert common == 400
    assert next_sample_curves.eval_steps(2000)[0] == 10 and len(next_sample_curves.eval_steps(2000)) == next_sample_curves.EVALS
    # wavenet_10's curve at 400 of its 2000 updates, between two of its evaluations
    assert 400 not in next_sample_curves.eval_steps(2000)
    assert table["wavenet_10"]["val_bits_at_common_updates"][0] == pytest.approx(8 - 2 * np.log(400) / np.log(2000))
    assert np.isnan(next_sample_curves.at_updates(runs[0]["curve"], 5))  # before a curve's first point: not guessed
    assert table["transformer_3"]["val_bits_at_common_updates"][0] == pytest.approx(4.0)
    assert table["transformer_3"]["seeds"] == [0, 1, 2]
    verdicts = {c["claim"]: c for c in claims}
    assert verdicts["transformer_3 > wavenet_10 (test top-5)"]["verdict"] == "supported"
    assert verdicts["transformer_3 > wavenet_10 (test top-5)"]["difference"][0] == pytest.approx(0.02)
    assert verdicts["wavenet_30 > wavenet_10 (test top-5)"]["verdict"] == "not resolved"
    # Better on every phrase averaged over seeds, but the seeds disagree: the phrase interval alone
    # would call it; the seeds' interval does not (the bug of the first summary, which pooled seeds
    # away before its only interval).
    swing = [0.10, -0.06, -0.01]
    runs = [_curve_run("transformer_3", s, 400, phrases + swing[s], (8.0, 4.0)) for s in range(3)]
    runs += [_curve_run("wavenet_10", s, 2000, phrases, (8.0, 6.0)) for s in range(3)]
    claim = next_sample_curves.pool_runs(runs)[1][0]
    assert claim["difference"][1] > 0 and claim["difference_over_seeds"][1] < 0 < claim["difference_over_seeds"][2]
    assert claim["verdict"] == "not resolved"
    assert claim["difference_over_seeds"] == pytest.approx(list(t_interval([0.10, -0.06, -0.01])))
    assert not any("transformer_6" in c for c in verdicts)  # a model with no runs compares with nothing


def test_a_keeps_the_heard_twin_phrases_apart_and_never_pools_two_test_sets(tmp_path, capsys):
    """The verdicts come from the unheard piano's phrases; the corpus's own test phrases (a training
    piano's twin) give their own claims, never mixed in; runs scored on another test set are refused,
    and so is a test font that is the corpus's own (its program 0 trains)."""
    phrases = np.linspace(0.2, 0.6, 7)
    runs = []
    for seed in range(3):
        for model, unheard, heard in (("transformer_3", phrases + 0.03, phrases - 0.03), ("wavenet_10", phrases, phrases)):
            run = _curve_run(model, seed, 400, unheard, (8.0, 4.0))
            run["twin_test_phrases"] = [{"top5": t} for t in heard]
            run["twin_top5"], run["twin_bits_per_sample"] = float(np.mean(heard)), 5.0
            runs.append(run)
    assert next_sample_curves.pool_runs(runs)[1][0]["verdict"] == "supported"
    twin = next_sample_curves.pool_runs(runs, "twin_")[1][0]
    assert twin["verdict"] == "contradicted" and twin["difference"][0] == pytest.approx(-0.03)

    args = argparse.Namespace(work=str(tmp_path), test_phrases=150, test_font="/fonts/TimGM6mb.sf2", scale=1.0, budget=180.0)
    for seed, design in enumerate((next_sample_curves.test_design(args), "the corpus's own test phrases")):
        (tmp_path / f"wavenet_10_seed{seed}.json").write_text(json.dumps({**runs[0], "seed": seed, "test_set": design,
                                                                          "schedule": next_sample_curves.SCHEDULE}))
    with pytest.raises(SystemExit, match="scored on"):
        next_sample_curves.summarise(args)
    with pytest.raises(SystemExit, match="no such file .*timgm6mb-soundfont"):  # before any rendering
        next_sample_curves.test_tokens(argparse.Namespace(**{**vars(args), "test_font": str(tmp_path / "none.sf2"),
                                                             "data": str(tmp_path / "piano")}))
    for flags, message in ((["--test-font", DEFAULT_SOUNDFONT], "corpus's font"), (["--test-phrases", "5"], "at least 10")):
        with pytest.raises(SystemExit) as stop:
            next_sample_curves.main([*flags, "--summarise"])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_b_pretraining_phrases_hold_out_the_folds_test_and_val_programs(tmp_path, monkeypatch):
    """The unlabelled corpus a fold's tokenizer and LM learn from plays only its training programs
    (else the probe's test instruments would be heard in pretraining), once for every seed."""
    class QuietRenderer:  # stands in for the SoundFont: what is written is not the question here
        sample_rate, soundfont = 8000, "stub.sf2"

        def render(self, clip, gain_db=0.0):
            return np.zeros(round(clip.seconds * self.sample_rate), dtype=np.float32)

    monkeypatch.setattr(linear_probe_folds, "SoundFontRenderer", QuietRenderer)
    args = argparse.Namespace(k=4, fold=1, pretrain_clips=40, scale=1.0, corpus_seed=0, work=str(tmp_path))
    fold = linear_probe_folds.program_folds(0, k=4)[1]
    (folder,) = linear_probe_folds.pretraining_audio(args, fold)
    with open(os.path.join(folder, "corpus.json")) as f:
        heard = set(json.load(f)["programs"]["train"])
    assert heard and heard <= set(fold["train"]) and not heard & set(fold["test"] + fold["val"])
    assert len(os.listdir(os.path.join(folder, "train"))) == 40 and not os.path.exists(folder + ".partial")
    stamp = os.path.getmtime(os.path.join(folder, "corpus.json"))
    assert linear_probe_folds.pretraining_audio(args, fold) == (folder,)  # the next seed reuses it
    assert os.path.getmtime(os.path.join(folder, "corpus.json")) == stamp
    assert linear_probe_folds.pretraining_audio(argparse.Namespace(**{**vars(args), "pretrain_clips": 0}), fold) == ()
    assert linear_probe_folds.design(args) == "k4_pretrain40"


CLASSES = sorted(FAMILIES)  # a tagger's labels: the families, sorted


def test_c_folds_pool_fold_family_units_and_only_seeds_with_every_fold():
    """Each seed's mAP averages the same folds (a seed missing a fold is left out, not averaged over
    fewer); the units are (fold, family) APs, so a lead on every unit is supported however much the
    families differ, and an alternating one is not resolved. The families are the design's, so units
    are resampled within them: a difference that is mostly each family's own, the same on every fold,
    has little spread there (with one fold there is nothing within a family to resample, and all units are)."""
    rng = np.random.default_rng(0)
    base = {f: rng.uniform(0.1, 0.9, 16) for f in range(2)}  # families differ far more than the arms
    wobble = 0.01 * rng.standard_normal(16)
    wobble = {0: wobble, 1: -wobble}  # each fold's own noise on each family, cancelling over the folds
    runs = []
    for seed in range(3):
        for fold in range(2):
            noise = 0.002 * seed
            for arm, ap in (("transformer_none", base[fold] + noise), ("cnn", base[fold] + 0.1 + noise),
                            ("transformer_wavelet", base[fold] + 0.05 * (-1) ** np.arange(16) + wobble[fold] + noise)):
                runs.append({"arm": arm, "seed": seed, "fold": fold, "size": 2000, "class_ap": ap.tolist(),
                             "mAP": float(ap.mean()), "classes": CLASSES})
    runs.append({"arm": "transformer_logmel", "seed": 0, "fold": 0, "size": 2000, "class_ap": base[0].tolist(),
                 "mAP": 0.9, "classes": CLASSES})  # seed 0 ran fold 0 only
    table, comparisons = tagging_folds.pool_folds(runs)
    assert "transformer_logmel" not in table and table["cnn"]["seeds"] == [0, 1, 2]
    assert len(table["cnn"]["units"]) == 32
    assert table["cnn"]["per_seed"][1] == pytest.approx(np.mean([base[f].mean() + 0.102 for f in range(2)]))
    verdicts = {c["claim"]: c for c in comparisons}
    assert verdicts["cnn > transformer_none"]["verdict"] == "supported"
    assert verdicts["cnn > transformer_none"]["difference"][0] == pytest.approx(0.1)
    alternating = verdicts["transformer_wavelet > transformer_none"]
    assert alternating["verdict"] == "not resolved" and alternating["units_resampled"] == "within families"
    assert alternating["detectable"] < 0.012 < 0.02 < alternating["detectable_across_families"]  # ~0.007, ~0.025
    assert not any("logmel" in claim for claim in verdicts)
    assert table["cnn"]["units_resampled"] == "within families"
    one_table, one_fold = tagging_folds.pool_folds([run for run in runs if run["fold"] == 0])
    assert {c["units_resampled"] for c in one_fold} == {v["units_resampled"] for v in one_table.values()} == {
        "across families"}
    assert one_fold[1]["detectable"] == pytest.approx(one_fold[1]["detectable_across_families"])


def test_c_folds_leave_out_units_whose_test_program_has_a_twin_in_training():
    """A fold that tests FluidR3_GM's program 0 trains on program 1, the same samples: that unit's
    AP would score a heard piano. Pooling made up so that only the leaked units differ between arms
    must find no difference at all."""
    from fastwave.corpora.render import DEFAULT_SOUNDFONT

    args = argparse.Namespace(k=4, soundfonts=[DEFAULT_SOUNDFONT])
    left_out = tagging_folds.leaked_units(args, [0, 1, 2, 3])
    assert left_out == {(1, "piano"), (3, "piano")}  # folds 1 and 3 test programs 0 and 1
    assert tagging_folds.leaked_units(args, [0, 2]) == set()
    two = argparse.Namespace(k=8, soundfonts=[DEFAULT_SOUNDFONT, "/x/TimGM6mb.sf2"])
    assert tagging_folds.leaked_units(two, list(range(8))) == {(1, "ensemble"), (3, "piano"), (4, "ensemble"),
                                                               (7, "piano")}
    runs = []
    for seed in range(3):
        for fold in range(4):
            for arm in ("cnn", "transformer_none"):
                ap = np.full(16, 0.3 + 0.01 * seed)
                if arm == "cnn" and (fold, "piano") in left_out:
                    ap[CLASSES.index("piano")] = 1.0  # the heard piano, recognised
                runs.append({"arm": arm, "seed": seed, "fold": fold, "size": 2000, "class_ap": ap.tolist(),
                             "mAP": float(ap.mean()), "classes": CLASSES})
    leaky, _ = tagging_folds.pool_folds(runs)
    assert leaky["cnn"]["per_seed"][0] > 0.3 + 1e-9
    table, comparisons = tagging_folds.pool_folds(runs, left_out)
    assert len(table["cnn"]["units"]) == 62 and table["cnn"]["per_seed"] == pytest.approx([0.30, 0.31, 0.32])
    assert comparisons[0]["difference"][0] == pytest.approx(0.0) and comparisons[0]["verdict"] == "not resolved"


def test_b_leaves_out_notes_of_a_program_whose_twin_trained():
    right = [0, 1, 0, 1, 0, 1]
    runs = [_probe_run(0, 0, {"code LM probe": right}), _probe_run(1, 0, {"code LM probe": right})]
    runs[0]["programs"] = {"train": [1, 5], "val": [], "test": [0, 1, 2]}  # 0's twin trained: its notes leak
    runs[1]["programs"] = {"train": [0, 1], "val": [], "test": [10, 11, 12]}
    leaked = linear_probe_folds.leaked_clips(runs)
    assert leaked == {clip for clip in runs[0]["test_clips"] if "_p000_" in clip} and len(leaked) == 2
    baseline = {clip: 1.0 for run in runs for clip in run["test_clips"]}
    seeds, clips, correct, programs = linear_probe_folds.pooled(runs, baseline, leaked)
    assert len(clips) == 10 and 0 not in programs and not leaked & set(clips)


def test_b_dictionary_and_residual_error_leave_out_the_leaked_notes():
    clips = [f"/d/n{i}_p{program:03d}_x.wav" for i, program in enumerate([0, 0, 2, 2, 3, 3])]
    leaked = frozenset({"n0_p000_x.wav", "n1_p000_x.wav"})  # program 0's notes: all right under 256 codes
    hits = {64: np.array([0, 0, 1, 0, 1, 0]), 256: np.array([1, 1, 1, 0, 1, 0])}
    accuracy, differences, kept = linear_probe_dictionary.scores(hits, clips, leaked, [64, 256])
    assert kept == clips[2:]
    assert accuracy[64][0] == pytest.approx(0.5) and accuracy[256][0] == pytest.approx(0.5)
    assert differences[256]["difference"][0] == pytest.approx(0.0)  # with the leaked notes: +0.33
    assert residual_error.unheard(clips, [5, 0, 2, 1], leaked) == [5, 2]


def test_b_dictionary_record_is_rescored_from_its_hits_without_training(tmp_path, monkeypatch, capsys):
    import _common

    monkeypatch.setattr(_common, "RESULTS", str(tmp_path))
    monkeypatch.setattr(linear_probe_dictionary, "RESULTS", str(tmp_path))
    record = {"codes": [64, 256], "steps": 10, "k": 4, "left_out_notes": ["n0_p000_x.wav"], "folds": {},
              "notes": [f"n{i}_p{program:03d}_x.wav" for i, program in enumerate([0, 1, 2, 3, 8, 9])],
              "hits": {"64": [1, 0, 1, 0, 1, 0], "256": [0, 1, 1, 1, 1, 0]}, "wall_seconds": 60.0, "machine": "m"}
    (tmp_path / "experiment_b_dictionary.json").write_text(json.dumps(record))
    assert linear_probe_dictionary.main(["--rescore"]) == 0
    rescored = json.loads((tmp_path / "experiment_b_dictionary.json").read_text())
    assert rescored["test_notes"] == 5 and rescored["test_programs"] == 5  # n0 left out
    assert rescored["accuracy"]["64"][0] == pytest.approx(0.4) and rescored["accuracy"]["256"][0] == pytest.approx(0.8)
    assert rescored["differences"]["256"]["difference"][0] == pytest.approx(0.4)
    assert "rescored_by" in rescored and "| 256 | 0.800" in (tmp_path / "experiment_b_dictionary.md").read_text()
    (tmp_path / "experiment_b_dictionary.json").write_text(json.dumps({"codes": [64]}))
    with pytest.raises(SystemExit, match="lacks hits, left_out_notes, notes"):
        linear_probe_dictionary.main(["--rescore"])


def test_b_resamples_programs_within_their_family_where_each_family_has_two():
    """B's folds test every family alike, so the bootstrap over programs is stratified by family; with
    a family tested by one program (a partial set of folds) there is nothing to resample within it."""
    assert linear_probe_folds.families_of([0, 3, 3, 8, 9]) == ["piano", "piano", "piano",
                                                               "chromatic_percussion", "chromatic_percussion"]
    assert linear_probe_folds.families_of([0, 3, 8]) is None


@pytest.mark.skipif(not os.path.isfile(DEFAULT_SOUNDFONT), reason="FluidR3_GM is not installed")
def test_piano_model_paused_writes_its_record_ships_nothing_and_resumes(tmp_path, capsys):
    """--pause-at: the record of the training so far (updates < steps, no bytes shipped), no --out;
    the same command without it finishes the run and ships."""
    pytest.importorskip("tinysoundfont")
    import fastwave

    data, runs, out, record = tmp_path / "piano", tmp_path / "runs", tmp_path / "out.safetensors", tmp_path / "r.json"
    command = ["--data", str(data), "--minutes", "3", "--steps", "3", "--batch-size", "1", "--segment", "256",
               "--eval-phrases", "1", "--eval-every", "1", "--pre-emphasis", "0", "--onset-envelope", "0.2",
               "--runs", str(runs), "--out", str(out), "--record", str(record)]
    assert piano_model.main(command + ["--pause-at", "1"]) == 0
    assert "paused after update 1 of 3" in capsys.readouterr().out and not out.exists()
    paused = json.loads(record.read_text())
    assert (paused["training"]["updates"], paused["training"]["steps"], paused["model"]["bytes"]) == (1, 3, None)
    assert [e["step"] for e in paused["eval"]] == [1]
    with pytest.raises(SystemExit):  # refused before the corpus is read
        piano_model.main(command + ["--pause-at", "1"])
    assert "--pause-at 1: " in capsys.readouterr().err
    assert piano_model.main(command) == 0
    finished = json.loads(record.read_text())
    assert finished["training"]["updates"] == 3 and finished["model"]["bytes"] == out.stat().st_size
    assert fastwave.load_model(str(out)).config.local_channels == 144


@pytest.mark.skipif(not os.path.isfile(DEFAULT_SOUNDFONT), reason="FluidR3_GM is not installed")
def test_piano_model_stopped_by_ctrl_c_writes_the_record_of_its_checkpoint(tmp_path, capsys, monkeypatch):
    """Ctrl-C during update 2 of 3: the loop finishes and checkpoints it, and piano_model.py writes the
    record of that checkpoint (as a paused run does) and exits 130; the same command resumes and ships,
    one with another onset envelope is refused (the checkpoint keeps it)."""
    pytest.importorskip("tinysoundfont")
    import signal

    from fastwave.training import loop

    data, runs, out, record = tmp_path / "piano", tmp_path / "runs", tmp_path / "out.safetensors", tmp_path / "r.json"
    command = ["--data", str(data), "--minutes", "3", "--steps", "3", "--batch-size", "1", "--segment", "256",
               "--eval-phrases", "1", "--eval-every", "3", "--pre-emphasis", "0", "--onset-envelope", "0.2",
               "--runs", str(runs), "--out", str(out), "--record", str(record)]
    update, updates = loop.apply_update, []

    def ctrl_c_in_update_2(*args, **kwargs):
        updates.append(1)
        if len(updates) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return update(*args, **kwargs)

    monkeypatch.setattr(loop, "apply_update", ctrl_c_in_update_2)
    assert piano_model.main(command) == 130
    assert "stopped after update 2 of 3" in capsys.readouterr().out and not out.exists()
    stopped = json.loads(record.read_text())
    assert (stopped["training"]["updates"], stopped["model"]["bytes"], stopped["eval"]) == (2, None, [])
    monkeypatch.setattr(loop, "apply_update", update)
    envelope = command.index("--onset-envelope") + 1
    with pytest.raises(ValueError, match="onset_decay: saved None, now 0.5"):  # other inputs: no resume
        piano_model.main(command[:envelope] + ["0.5"] + command[envelope + 1:])
    assert piano_model.main(command) == 0
    finished = json.loads(record.read_text())
    assert finished["training"]["updates"] == 3 and finished["model"]["bytes"] == out.stat().st_size


@pytest.mark.parametrize("shape, message", [("20/2/64/128", "five whole numbers"), ("20/2/64/0/128", "five whole numbers"),
                                            ("20/3/64/128/128", "--shape: ")])
def test_piano_model_refuses_a_shape_it_cannot_build(shape, message, capsys):
    with pytest.raises(SystemExit):
        piano_model.main(["--shape", shape, "--data", "/absent"])
    assert message in capsys.readouterr().err


def test_piano_shape_speed_times_each_shape_the_parser_builds(capsys):
    from fastwave import WaveNetConfig

    for shape in piano_shape_speed.SHAPES:  # each parses and builds: WaveNetConfig raises otherwise
        assert WaveNetConfig(**piano_model.wavenet_shape(shape)).layers == int(shape.split("/")[0])
    with pytest.raises(SystemExit):
        piano_shape_speed.main(["--runs", "0"])
    assert "--runs must be in [1, 100]" in capsys.readouterr().err


def test_piano_model_shape_names_the_wavenets_sizes():
    from fastwave import pretrained

    assert piano_model.wavenet_shape("24/2/32/64/64") == {"layers": 24, "cycles": 2, "residual_channels": 32,
                                                        "gate_channels": 64, "skip_channels": 64}
    assert piano_model.wavenet_shape(piano_model.DEFAULT_SHAPE) == {  # the shipped model's
        k: v for k, v in pretrained.piano_wavenet().config.to_dict().items()
        if k in ("layers", "cycles", "residual_channels", "gate_channels", "skip_channels")}


@pytest.mark.parametrize("pause_at", ["0", "500"])
def test_piano_model_refuses_a_pause_outside_its_run(pause_at, capsys):
    with pytest.raises(SystemExit):
        piano_model.main(["--steps", "500", "--pause-at", pause_at, "--data", "/absent"])
    assert "--pause-at must lie in [1, --steps) = [1, 500)" in capsys.readouterr().err


def test_piano_model_extra_pianos_are_parsed_refused_and_play_phrases_no_test_plays(tmp_path):
    import itertools

    import torch

    from fastwave.corpora.piano import phrase_stream
    from fastwave.corpora.score import ROLL_CHANNELS, ROLL_HOP

    font = tmp_path / "f.sf2"
    font.write_bytes(b"")
    assert piano_model.parse_extra_pianos(f"{font}:0,{font}:3") == [(str(font), 0), (str(font), 3)]
    assert piano_model.parse_extra_pianos(None) == []
    for spec, message in ((f"{font}:8", "piano program"), (f"{font}", "FONT:PROGRAM"), ("/absent.sf2:0", "no SoundFont"),
                          (f"{font}:0,{font}:0", "twice")):
        with pytest.raises(SystemExit, match=message):
            piano_model.parse_extra_pianos(spec)
    record = {"program": 3, "phrase_seed": piano_model.EXTRA_PHRASE_SEED, "phrases": 4}
    plan = piano_model.extra_plan(record)
    assert [c.split for c in plan] == ["train"] * 4 and {c.sources[0].program for c in plan} == {3}
    # the random scores tests/test_pretrained.py plays (seeds 0-3) and A's 150 test phrases (seed 1)
    played_elsewhere = {notes for seed in range(4) for notes, _ in itertools.islice(phrase_stream(seed), 150)}
    assert not played_elsewhere & {clip.sources[0].notes for clip in plan}
    streams = [torch.zeros(round(c.seconds * 16000), dtype=torch.long) for c in plan]
    rolls = piano_model.plan_rolls(plan, streams, "hint")
    assert [tuple(r.shape) for r in rolls] == [(ROLL_CHANNELS, -(-len(s) // ROLL_HOP)) for s in streams]
    with pytest.raises(SystemExit, match="planned: hint"):
        piano_model.plan_rolls(plan, [s[:-100] for s in streams], "hint")
    from fastwave.corpora.score import SCORE_CHANNELS, score_features

    wide = piano_model.plan_rolls(plan, streams, "hint", SCORE_CHANNELS)  # with the onset envelope
    assert all(np.array_equal(w.numpy(), score_features(r.numpy(), SCORE_CHANNELS)) for w, r in zip(wide, rolls))


def test_piano_frames_compares_each_frame_of_two_clips():
    import piano_frames

    t = np.arange(8192) / 16000
    a = np.sin(2 * np.pi * 440 * t).astype(np.float32)  # A
    c = np.sin(2 * np.pi * 523.25 * t).astype(np.float32) * 0.1  # C, 20 dB quieter
    rows = piano_frames.frames(a, a, 16000)
    assert len(rows) == 1 + (8192 - 2048) // 512 and rows[1]["second"] == 0.032
    assert all(r["cosine"] == pytest.approx(1.0) and r["real"].startswith("A ") and r["played"] == r["real"] for r in rows)
    rows = piano_frames.frames(a, c, 16000)
    assert all(r["cosine"] < 0.1 and r["played"].startswith("C 1") for r in rows)
    assert rows[0]["db_real"] - rows[0]["db_played"] == pytest.approx(20, abs=0.2)


def test_piano_model_init_widens_a_roll_model_to_read_the_onset_envelope():
    """--init from a model of the roll alone into one that also reads the envelope: the added
    columns start at zero, so the two compute the same until training; other shapes are refused."""
    import fastwave
    import torch

    from fastwave.corpora.score import ROLL_CHANNELS, ROLL_HOP, SCORE_CHANNELS, piano_roll, random_score, score_features

    torch.manual_seed(0)
    small = dict(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, classes=16, cond_hop=ROLL_HOP)
    roll_model = fastwave.WaveNet(local_channels=ROLL_CHANNELS, **small).eval()
    wide = fastwave.WaveNet(local_channels=SCORE_CHANNELS, **small).eval()
    wide.load_state_dict(piano_model.widened_local(roll_model.state_dict(), wide))
    assert wide.layers[0].local_proj.weight[:, ROLL_CHANNELS:].abs().sum() == 0
    roll = piano_roll(random_score(0.1, 1), 1600)
    tokens = torch.randint(0, 16, (1, 1600))
    assert torch.equal(roll_model(tokens, local_cond=torch.from_numpy(roll)[None]),
                       wide(tokens, local_cond=torch.from_numpy(score_features(roll, SCORE_CHANNELS))[None]))
    narrow = fastwave.WaveNet(local_channels=ROLL_CHANNELS, **small)
    with pytest.raises(SystemExit, match="only added local channels"):
        piano_model.widened_local(wide.state_dict(), narrow)
    assert piano_model.onset_seconds("0.2") == 0.2
    for bad in ("0", "-1", "nan", "61", "fast"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"time constant \(seconds\) must be in \(0, 60\]"):
            piano_model.onset_seconds(bad)


def test_piano_model_train_only_score_moves_the_score_projections_alone():
    """--train-only score: an update changes the local projections and nothing else (the network
    that plays the samples keeps --init's weights); a model without them is refused."""
    import fastwave
    import torch

    from fastwave.corpora.score import ROLL_HOP, SCORE_CHANNELS
    from fastwave.training.loop import make_optimizer

    torch.manual_seed(0)
    small = dict(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, classes=16, cond_hop=ROLL_HOP)
    model = fastwave.WaveNet(local_channels=SCORE_CHANNELS, **small)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = piano_model.freeze_all_but_score(model)
    assert frozen == sum(v.numel() for k, v in model.named_parameters() if "local_proj" not in k) > 0
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    tokens = torch.randint(0, 16, (2, 640))
    logits = model(tokens, local_cond=torch.rand(2, SCORE_CHANNELS, 10))
    torch.nn.functional.cross_entropy(logits[:, :, :-1], tokens[:, 1:]).backward()
    optimizer.step()
    after = model.state_dict()
    moved = {name for name, _ in model.named_parameters() if not torch.equal(before[name], after[name])}
    assert moved == {name for name, _ in model.named_parameters() if "local_proj" in name}
    with pytest.raises(SystemExit, match="no local projections"):
        piano_model.freeze_all_but_score(fastwave.WaveNet(**{**small, "cond_hop": 1}))


def test_piano_soup_interpolates_a_model_and_its_widened_fine_tune():
    """alpha 0 plays the base (its roll-only projections widened with zeros), 1 the fine-tune, and
    --alpha-local moves the score projections alone; models of another shape, or alphas outside
    [0, 1], are refused."""
    import fastwave
    import torch

    import piano_soup
    from fastwave.corpora.score import ROLL_CHANNELS, ROLL_HOP, SCORE_CHANNELS

    torch.manual_seed(0)
    small = dict(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, classes=16, cond_hop=ROLL_HOP)
    base = fastwave.WaveNet(local_channels=ROLL_CHANNELS, **small)
    tuned = fastwave.WaveNet(local_channels=SCORE_CHANNELS, **small)
    widened = piano_model.widened_local(base.state_dict(), tuned)
    for alpha, expected in ((0.0, widened), (1.0, tuned.state_dict())):
        state = piano_soup.interpolated(base, tuned, alpha)
        assert all(torch.equal(state[k], expected[k]) for k in expected)
    half = piano_soup.interpolated(base, tuned, 0.5, alpha_local=1.0)
    name = "layers.0.local_proj.weight"
    assert torch.equal(half[name], tuned.state_dict()[name])
    gate = "layers.0.conv.weight"
    assert torch.allclose(half[gate], (widened[gate] + tuned.state_dict()[gate]) / 2)
    assert not torch.equal(half[gate], tuned.state_dict()[gate])
    deeper = fastwave.WaveNet(local_channels=SCORE_CHANNELS, **{**small, "layers": 4, "cycles": 2})
    with pytest.raises(ValueError, match="differ in.*layers"):
        piano_soup.interpolated(base, deeper, 0.5)
    with pytest.raises(ValueError, match="a fine-tune only adds channels"):
        piano_soup.interpolated(tuned, base, 0.5)
    for bad in ("-0.1", "1.5", "nan", "half"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"in \[0, 1\]"):
            piano_soup.unit_fraction(bad)


def test_piano_compare_pairs_two_records_seed_by_seed(tmp_path, capsys):
    """The interval is over the per-seed differences (a shift shared by both models' draws of a seed
    cancels), a record nested in a collecting file is found by its keys, and records of other seeds
    or phrases are refused by name."""
    import piano_compare

    def record(flatness, seeds=(0, 1, 2), phrase="piano_00000", split="test"):
        by_seed = [{"seed": s, "median_flatness_generated": f, "chroma_generated": 0.5 + f, "rms_generated": 0.1}
                   for s, f in zip(seeds, flatness)]
        return {"split": split, "by_seed": by_seed, "phrases": [{"seed": s, "phrase": phrase} for s in seeds]}

    first, second = record([0.02, 0.05, 0.08]), record([0.01, 0.04, 0.07])
    mean, low, high = piano_compare.paired(first, second)["median_flatness_generated"]
    assert mean == pytest.approx(0.01) and low == pytest.approx(0.01) and high == pytest.approx(0.01)
    unpaired = t_interval([0.02, 0.05, 0.08])  # the same spread unpaired: far wider
    assert unpaired[2] - unpaired[1] > 0.1
    nested = tmp_path / "collected.json"
    nested.write_text(json.dumps({"models": {"a": first}}))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(second))
    assert piano_compare.main([f"{nested}#models/a", str(plain)]) == 0
    assert "median_flatness: +0.0100 [+0.0100, +0.0100]" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no key 'b'.*'a'"):
        piano_compare.load_record(f"{nested}#models/b")
    with pytest.raises(SystemExit, match="not a piano_eval record"):
        piano_compare.load_record(f"{nested}#models")
    with pytest.raises(ValueError, match="different sampling seeds"):
        piano_compare.paired(first, record([0.01, 0.04, 0.07], seeds=(0, 1, 3)))
    with pytest.raises(ValueError, match="different phrases"):
        piano_compare.paired(first, record([0.01, 0.04, 0.07], phrase="piano_00004"))
    with pytest.raises(ValueError, match="different phrases"):
        piano_compare.paired(first, record([0.01, 0.04, 0.07], split="val"))
    with pytest.raises(ValueError, match="no interval"):
        piano_compare.paired(record([0.02], seeds=(0,)), record([0.01], seeds=(0,)))


def fake_piano_corpus(folder: pathlib.Path, minutes: float, seed: int, samples: int = 1600,
                      splits=("test",)) -> list:
    """corpus.json and silent WAVs of ``splits`` named as the (minutes, seed) piano plan's -> the
    first split's clips."""
    import fastwave
    from fastwave.corpora.piano import plan_piano

    planned = {split: sorted((c for c in plan_piano(minutes, seed) if c.split == split), key=lambda c: c.name)
               for split in splits}
    for split, clips in planned.items():
        (folder / split).mkdir()
        for clip in clips:
            fastwave.save_audio(str(folder / split / (clip.name + ".wav")), np.zeros(samples, np.float32), 16000)
    (folder / "corpus.json").write_text(json.dumps({"kind": "piano", "seed": seed,
                                                    "clips": {split: len(c) for split, c in planned.items()}}))
    return planned[splits[0]]


def test_piano_eval_scores_the_phrases_of_the_corpus_it_reads(tmp_path):
    """The held-out phrases' scores come from the corpus's own plan (the seed in its corpus.json),
    whatever seed the sampling uses: another plan pairs the WAVs with other notes."""
    from fastwave.corpora.piano import plan_piano
    from fastwave.corpora.score import piano_roll

    test = fake_piano_corpus(tmp_path, 1.0, seed=3)
    other = sorted((c for c in plan_piano(1.0, 0) if c.split == "test"), key=lambda c: c.name)
    assert other[0].sources[0].notes != test[0].sources[0].notes  # so a wrong plan would be seen
    [(name, real, roll)] = piano_eval.held_out_phrases(str(tmp_path), 1.0, 1, 800, 16000)
    assert name == test[0].name and real.shape == (800,)
    assert np.array_equal(roll[0].numpy(), piano_roll(test[0].sources[0].notes, 800, 16000))
    with pytest.raises(SystemExit, match="--phrases must be 1 to"):
        piano_eval.held_out_phrases(str(tmp_path), 1.0, len(test) + 1, 800, 16000)
    with pytest.raises(SystemExit, match="pass the --minutes"):
        piano_eval.held_out_phrases(str(tmp_path), 2.0, 1, 800, 16000)
    with pytest.raises(SystemExit, match="holds None val phrases"):  # this corpus rendered no val split
        piano_eval.held_out_phrases(str(tmp_path), 1.0, 1, 800, 16000, "val")
    with pytest.raises(SystemExit, match="--split must be test, val"):
        piano_eval.held_out_clips(str(tmp_path), 1.0, 1, "train")
    val_folder = tmp_path / "with_val"
    val_folder.mkdir()
    val = fake_piano_corpus(val_folder, 3.0, seed=3, splits=("val", "test"))  # 1 minute plans no val phrase
    [(name, _, roll)] = piano_eval.held_out_phrases(str(val_folder), 3.0, 1, 800, 16000, "val")
    assert name == val[0].name and val[0].split == "val"
    assert np.array_equal(roll[0].numpy(), piano_roll(val[0].sources[0].notes, 800, 16000))
    from fastwave.corpora.score import SCORE_CHANNELS, score_features

    [(_, _, feats)] = piano_eval.held_out_phrases(str(val_folder), 3.0, 1, 800, 16000, "val", SCORE_CHANNELS)
    assert np.array_equal(feats[0].numpy(), score_features(roll[0].numpy(), SCORE_CHANNELS))


@pytest.mark.skipif(not os.path.isfile(DEFAULT_SOUNDFONT), reason="FluidR3_GM is not installed")
def test_piano_eval_random_split_is_what_generate_plays_against_the_test_presets_render(tmp_path):
    """--split random: the scores of `fastwave generate --seed 0, 1` (random_score), the real side the
    corpus's SoundFont playing them with the test preset at the corpus's gain; a corpus naming no
    SoundFont, or not a piano corpus, is refused."""
    pytest.importorskip("tinysoundfont")
    import torch

    from fastwave.corpora import SoundFontRenderer
    from fastwave.corpora.score import piano_roll, random_score
    from fastwave.pretrained import piano_cond

    (tmp_path / "corpus.json").write_text(json.dumps({"kind": "piano", "soundfont": DEFAULT_SOUNDFONT, "gain_db": 6.0}))
    phrases = piano_eval.held_out_phrases(str(tmp_path), 1.0, 2, 8000, 16000, "random")
    assert [name for name, _, _ in phrases] == ["random_score_0", "random_score_1"]
    for seed, (_, real, roll) in enumerate(phrases):
        assert torch.equal(roll, piano_cond(8000, [seed], channels=roll.shape[1])["local_cond"])  # generate's own score
        clip = piano_eval.random_score_clips(2, 0.5)[seed]
        assert clip.sources[0].program == 1 and clip.sources[0].notes == random_score(0.5, seed)
        assert np.array_equal(real, SoundFontRenderer([DEFAULT_SOUNDFONT]).render(clip, gain_db=6.0)[:8000])  # the corpus's level
        assert real.std() > 0.01
    assert np.array_equal(phrases[0][2][0].numpy(), piano_roll(random_score(0.5, 0), 8000, 16000))
    (tmp_path / "corpus.json").write_text(json.dumps({"kind": "piano", "gain_db": 6.0}))
    with pytest.raises(SystemExit, match="names no soundfont"):
        piano_eval.held_out_phrases(str(tmp_path), 1.0, 1, 8000, 16000, "random")
    (tmp_path / "corpus.json").write_text(json.dumps({"kind": "notes", "soundfont": DEFAULT_SOUNDFONT, "gain_db": 0}))
    with pytest.raises(SystemExit, match="not the piano corpus"):
        piano_eval.held_out_phrases(str(tmp_path), 1.0, 1, 8000, 16000, "random")
    with pytest.raises(SystemExit, match="1 to 1000 random scores"):
        piano_eval.held_out_clips(str(tmp_path), 1.0, 0, "random")


@pytest.mark.skipif(not os.path.isfile(DEFAULT_SOUNDFONT), reason="FluidR3_GM is not installed")
def test_piano_eval_random_split_end_to_end_draws_two_panels(tmp_path, monkeypatch):
    """With --split random the phrase the model plays is already a random score played as generate plays
    it: the figure has the real render and the model's, not a second such score; the record is the
    random split's."""
    pytest.importorskip("tinysoundfont")
    import fastwave

    (tmp_path / "corpus.json").write_text(json.dumps({"kind": "piano", "soundfont": DEFAULT_SOUNDFONT, "gain_db": 6.0}))
    model = fastwave.WaveNet(layers=2, cycles=1, residual_channels=8, gate_channels=16, skip_channels=16,
                             local_channels=144, cond_hop=64)
    model.save(str(tmp_path / "model.safetensors"))
    drawn = []
    monkeypatch.setattr(piano_eval, "draw", lambda panels, rate, path: drawn.append([title for title, _ in panels]))
    record = tmp_path / "audio.json"
    assert piano_eval.main(["--model", str(tmp_path / "model.safetensors"), "--data", str(tmp_path), "--split",
                            "random", "--phrases", "1", "--seconds", "0.25", "--threads", "1",
                            "--record", str(record), "--figure", str(tmp_path / "f.png")]) == 0
    assert len(drawn) == 1 and len(drawn[0]) == 2 and drawn[0][0].startswith("real: random_score_0")
    written = json.loads(record.read_text())
    assert written["split"] == "random" and [p["phrase"] for p in written["phrases"]] == ["random_score_0"]


@pytest.mark.skipif(not os.path.isfile(DEFAULT_SOUNDFONT), reason="FluidR3_GM is not installed")
def test_piano_eval_plays_the_scores_with_other_real_pianos():
    """The ceiling of chroma agreement: the test preset's own samples agree fully; another piano's
    (FluidR3_GM's program 2, other samples) agrees less, but far above another phrase."""
    pytest.importorskip("tinysoundfont")
    from fastwave.corpora import SoundFontRenderer
    from fastwave.corpora.piano import plan_piano

    clips = sorted((c for c in plan_piano(1.0, 3) if c.split == "test"), key=lambda c: c.name)[:2]
    reals = [SoundFontRenderer().render(clip)[:24000] for clip in clips]  # the test preset, program 1
    same, other = piano_eval.other_pianos(clips, reals, [(DEFAULT_SOUNDFONT, 1), (DEFAULT_SOUNDFONT, 2)], 16000)
    assert same["chroma_mean"] == pytest.approx(1.0, abs=1e-6) and len(other["chroma"]) == 2
    assert 0.5 < other["chroma_mean"] < 0.999
    with pytest.raises(SystemExit, match="--other-pianos: no SoundFont"):
        piano_model.parse_extra_pianos("/no/such.sf2:0", "--other-pianos")


def test_piano_eval_seeds_are_parsed_and_refused_by_name():
    assert piano_eval.seed_list("0,1,2") == [0, 1, 2] and piano_eval.seed_list("7") == [7]
    for bad in ("0,0", "-1", "a,1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="seeds must be"):
            piano_eval.seed_list(bad)


def test_piano_eval_summarises_each_seed_and_the_spread_between_seeds():
    rows = [{"seed": seed, "flatness_generated": f, "chroma_generated": c, "rms_generated": 0.1}
            for seed, values in ((0, [(0.01, 0.5), (0.03, 0.7), (0.02, 0.6)]), (1, [(0.04, 0.8), (0.02, 0.6), (0.03, 0.7)]))
            for f, c in values]
    figures = piano_eval.seed_figures(rows, [0, 1])
    assert [s["median_flatness_generated"] for s in figures["by_seed"]] == pytest.approx([0.02, 0.03])
    assert [s["chroma_generated"] for s in figures["by_seed"]] == pytest.approx([0.6, 0.7])
    mean, low, high = figures["over_seeds"]["chroma_generated"]
    assert mean == pytest.approx(0.65) and low < 0.6 and high > 0.7  # t with 1 degree of freedom: wide
    one = piano_eval.seed_figures(rows[:3], [0])["over_seeds"]["median_flatness_generated"]
    assert one[0] == pytest.approx(0.02) and one[1:] == [None, None]  # one seed: no interval, valid JSON
    json.dumps(figures, allow_nan=False)
