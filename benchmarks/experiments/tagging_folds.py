"""Experiment C on folds over programs: are the CNN's lead over the wavelet Audio Transformer (Verma &
Berger, 2021), the log-mel front end's gain and wavelet pooling's measured on enough instruments?

The scaling curve (`tagging_scaling.py`) tests 16 programs, one per family, so it detects 0.11-0.14
of mAP. Here the 128 programs are split into k folds (``fastwave.corpora.program_folds``, default
k = 4: each fold tests 2 programs of every family, so every program is tested once). With
``--soundfonts`` naming several GM SoundFonts, every program plays in each (128 instruments a
font) and a fold holds out a program's renditions in every font together: ``--k 8`` with
FluidR3_GM and TimGM6mb tests 1 program of every family per fold, as 2 instruments, and trains on
12 instruments a family. A mixture plays
programs of one split, so each fold renders its own mixtures corpus (the curve's plan and size, its
programs drawn from the fold's splits), and every arm trains on 2,000 of its training clips with the
curve's budget and augmentation (`tagging_scaling.one_run`), for 3 seeds.

Intervals: over seeds (t, on each seed's mAP averaged over the folds) and over (fold, class) units:
the AP of one family on one fold's test clips, averaged over seeds (16 k units: 64 with k = 4), resampled
by a bootstrap within each family: every fold tests every family and mAP weighs the families alike,
so the families are the design's and only which programs of a family are tested is drawn (the
detectable difference with the families resampled too, wider, is kept beside it). A paired difference has both; a claim is supported or contradicted only where both
intervals exclude zero. A unit whose test programs include one with a twin preset in the fold's
training split (``fastwave.corpora.twins``: FluidR3_GM's programs 0 and 1 play the same samples) is
left out of both, and out of each seed's mAP: the model has heard that instrument.

    python benchmarks/experiments/tagging_folds.py --all        # 4 folds x 4 arms x 3 seeds: ~45 min on 2 cores
    python benchmarks/experiments/tagging_folds.py --fold 0 --arm cnn --seed 0   # one run: ~2 min
    python benchmarks/experiments/tagging_folds.py --summarise
    python benchmarks/experiments/tagging_folds.py --all --k 8 --soundfonts /usr/share/sounds/sf2/FluidR3_GM.sf2 \
        /usr/share/sounds/sf2/TimGM6mb.sf2        # 256 instruments, 128 units, 96 runs (--summarise: the same flags)
    python benchmarks/experiments/tagging_folds.py --all --test-clips 4000 --k 8 --soundfonts ...  # the same models
        # scored on 4,000 new mixtures of each fold's test programs: records and results under <design>_test4000

The design (``design``: k<K>, or k<K>_<font>+<font> for other SoundFonts) names everything: corpora
in data/mixtures_<count>_<design>_fold<F>/ (rendered when missing, about 6 s each), runs in
<work>/<design>_fold<F>/, records in <records>/<design>/fold<F>/<arm>_n<size>_seed<seed>.json
(committed; a run with a record is skipped). Results: benchmarks/results/experiment_c_folds.{md,json}
for k4, experiment_c_folds_<design>.{md,json} for the others.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import MORE_SEEDS, cell, json_interval, more_seeds_cell, render_once, run_record, write_results  # noqa: E402
from tagging_scaling import COMPARISONS, CORPUS_CLIPS, SEEDS, budget, one_run, test_scores  # noqa: E402
from fastwave.corpora.gm import MAX_SOUNDFONTS  # noqa: E402
from fastwave.corpora.render import DEFAULT_SOUNDFONT  # noqa: E402
from fastwave.training.intervals import (cluster_bootstrap, detectable_difference, detectable_with_seeds, paired_difference,  # noqa: E402
                                         t_interval, usable_strata)

ARMS = ("cnn", "transformer_none", "transformer_wavelet", "transformer_logmel")
SIZE = 2000  # the curve's largest
RECORDS = os.path.join(os.path.dirname(__file__), "..", "results", "run_records", "experiment_c_folds")


def training_design(args) -> str:
    """The trained runs' name: k<K> with FluidR3_GM alone (the first design's name), else
    k<K>_<font>+<font>... after the SoundFonts' file names. Runs of one design pool; others never mix
    with them."""
    if [os.path.realpath(path) for path in args.soundfonts] == [os.path.realpath(DEFAULT_SOUNDFONT)]:
        return f"k{args.k}"
    return f"k{args.k}_" + "+".join(os.path.splitext(os.path.basename(path))[0] for path in args.soundfonts)


def design(args) -> str:
    """The records' sub-folder and the results' tag: the training design, with ``--test-clips N``
    followed by _test<N> (the same trained models scored on N new mixtures a fold)."""
    return training_design(args) + ("" if args.test_clips is None else f"_test{args.test_clips}")


def results_stem(args) -> str:
    return "experiment_c_folds" + ("" if design(args) == "k4" else f"_{design(args)}")


def folds_of(args) -> list[dict]:
    from fastwave.corpora import program_folds

    return program_folds(0, k=args.k, soundfonts=len(args.soundfonts))


def fold_corpus(args, fold: int) -> str:
    """The fold's mixtures corpus (rendered once) -> its folder."""
    from fastwave.corpora import SoundFontRenderer
    from fastwave.corpora.plans import plan_mixtures

    count = round(CORPUS_CLIPS * args.scale)
    folder = os.path.join(args.data_root, f"mixtures_{count}_{training_design(args)}_fold{fold}")
    return render_once(folder, lambda: plan_mixtures(count, seed=0, splits=folds_of(args)[fold]),
                       lambda: SoundFontRenderer(args.soundfonts), kind="mixtures", seed=0,
                       command=f"plan_mixtures({count}, seed=0, splits=fold {fold} of k={args.k} over "
                               f"{len(args.soundfonts)} SoundFont(s))")


def test_corpus(args, fold: int) -> str:
    """The fold's larger test set: ``--test-clips`` mixtures of its test programs alone, drawn with
    seed 1 (none is one of the fold corpus's own test clips), rendered once -> its folder."""
    from fastwave.corpora import SoundFontRenderer
    from fastwave.corpora.plans import plan_mixtures

    folder = os.path.join(args.data_root, f"mixtures_test{args.test_clips}_{training_design(args)}_fold{fold}")
    return render_once(folder, lambda: plan_mixtures(args.test_clips, seed=1, splits=folds_of(args)[fold], only="test"),
                       lambda: SoundFontRenderer(args.soundfonts), kind="mixtures", seed=1,
                       command=f"plan_mixtures({args.test_clips}, seed=1, splits=fold {fold} of k={args.k} over "
                               f"{len(args.soundfonts)} SoundFont(s), only='test')")


def fold_args(args, fold: int) -> argparse.Namespace:
    """What ``tagging_scaling.one_run`` reads, for one fold's training (and its own test clips)."""
    return argparse.Namespace(data=fold_corpus(args, fold),
                              work=os.path.join(args.work, f"{training_design(args)}_fold{fold}"),
                              records=os.path.join(args.records, training_design(args), f"fold{fold}"),
                              scale=args.scale, device=args.device)


def run_on_fold(args, fold: int, arm: str, seed: int) -> None:
    """One run: trained unless its record is there and, with ``--test-clips``, its best checkpoint
    scored again on the fold's larger test set (a record of its own, under the _test<N> design)."""
    trained = fold_args(args, fold)
    one_run(trained, arm, size(args), seed)
    if args.test_clips is None:
        return
    name = f"{arm}_n{size(args)}_seed{seed}"
    path = os.path.join(args.records, design(args), f"fold{fold}", name + ".json")
    if os.path.isfile(path):
        print(f"{path}: done, skipped")
        return
    run = os.path.join(trained.work, name)
    if not os.path.isfile(os.path.join(run, "best.safetensors")):
        raise SystemExit(f"{run}/best.safetensors is missing (its record was made elsewhere): move "
                         f"{os.path.join(trained.records, name + '.json')} aside to train the run here")
    with open(os.path.join(trained.records, name + ".json"), encoding="utf-8") as f:
        record = json.load(f)
    data = test_corpus(args, fold)
    started = time.perf_counter()
    record.update(test_scores(run, data, os.path.join(data, "labels.csv")))
    scoring = time.perf_counter() - started
    record.update(test_corpus=data, scoring=run_record(seed, args.device, scoring),  # where and how it was scored
                  wall_seconds=round(record["wall_seconds"] + scoring, 1))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    print(f"{arm}, fold {fold}, seed {seed}: test mAP {record['mAP']:.3f} on {record['test_clips']} clips", flush=True)


def size(args) -> int:
    return max(64, round(SIZE * args.scale))


def pool_folds(runs: list[dict], left_out=frozenset()) -> tuple[dict, list[dict]]:
    """Run records (each with its "fold") -> ({arm: mean and intervals}, the paired comparisons).
    Only seeds with every fold of the runs count, so each seed's mAP averages the same folds. The
    (fold, family) units in ``left_out`` (``leaked_units``) count nowhere: neither in a seed's mAP
    (the mean of its kept units) nor in the units' intervals."""
    folds = sorted({run["fold"] for run in runs})
    by = {(run["arm"], run["seed"], run["fold"]): run for run in runs}
    classes = runs[0]["classes"]
    kept = np.array([(fold, name) not in left_out for fold in folds for name in classes])
    # Every fold tests the same 16 families and mAP weighs each alike: the families are the design's,
    # the programs within a family its draw, so units are resampled within their family.
    # (None with one fold, or a family with one unit kept: no spread within it to resample.)
    families = usable_strata(np.arange(kept.sum()), np.array([name for _ in folds for name in classes])[kept])
    resampled = "across families" if families is None else "within families"
    seeds = {arm: [s for s in SEEDS if all((arm, s, f) in by for f in folds)] for arm in ARMS}

    def unit_ap(arm: str, seed: int) -> np.ndarray:  # (kept units,): one family's AP on one fold, fold-major
        return np.concatenate([by[(arm, seed, f)]["class_ap"] for f in folds])[kept]

    table = {}
    for arm in [a for a in ARMS if seeds[a]]:
        per_seed = np.array([unit_ap(arm, s).mean() for s in seeds[arm]])
        units = np.mean([unit_ap(arm, s) for s in seeds[arm]], axis=0)
        table[arm] = {"seeds": seeds[arm], "per_seed": per_seed.tolist(), "over_seeds": json_interval(t_interval(per_seed)),
                      "units": units.tolist(), "over_units": list(cluster_bootstrap(units, np.arange(units.size), seed=0, strata=families)),
                      "units_resampled": resampled}
    comparisons = []
    for better, worse, meaning in COMPARISONS:
        if better not in table or worse not in table:
            continue
        common = sorted(set(seeds[better]) & set(seeds[worse]))
        diff = np.array(table[better]["units"]) - np.array(table[worse]["units"])
        # (seeds, units): would more seeds sharpen the test, or only more units? (The seeds both arms
        # have; ``diff`` averages each arm's own, the same seeds wherever every arm has every seed.)
        units_by_seed = np.array([unit_ap(better, s) - unit_ap(worse, s) for s in common] or np.zeros((0, kept.sum())))
        more_seeds = (detectable_with_seeds(units_by_seed, np.arange(units_by_seed.shape[1]), MORE_SEEDS,
                                            strata=families) if len(common) >= 2 else None)
        comparisons.append({"claim": f"{better} > {worse}", "meaning": meaning,
                            **paired_difference(diff, np.arange(diff.size), units_by_seed.mean(axis=1), strata=families),
                            f"detectable_with_{MORE_SEEDS}_seeds": more_seeds,
                            "units_resampled": resampled,
                            # the same units resampled as if the families were drawn too: the wider, older figure
                            "detectable_across_families": detectable_difference(diff, np.arange(diff.size))})
    return table, comparisons


def leaked_units(args, folds: list[int]) -> set[tuple[int, str]]:
    """(fold, family) units whose test instruments include one with a twin preset in the fold's
    training split (``fastwave.corpora.twins``): that unit's AP scores an instrument the model heard."""
    from fastwave.corpora import family
    from fastwave.corpora.twins import heard_twins

    splits = folds_of(args)
    return {(fold, family(instrument)) for fold in folds for instrument in heard_twins(splits[fold], args.soundfonts)}


def summarise(args) -> int:
    runs = []
    for path in sorted(glob.glob(os.path.join(args.records, design(args), "fold*", "*_n*_seed*.json"))):
        with open(path, encoding="utf-8") as f:
            runs.append({**json.load(f), "fold": int(os.path.basename(os.path.dirname(path))[len("fold"):])})
    runs = [run for run in runs if run["size"] == size(args)]
    if not runs:
        raise SystemExit(f"no runs under {args.records}/{design(args)}: run --all (or --fold F --arm A --seed S) first")
    folds = sorted({run["fold"] for run in runs})
    left_out = leaked_units(args, folds)
    table, comparisons = pool_folds(runs, left_out)
    units = len(folds) * len(runs[0]["class_ap"]) - len(left_out)
    within = all(arm["units_resampled"] == "within families" for arm in table.values())
    minutes = sum(run["wall_seconds"] for run in runs) / 60
    test_clips = [run["test_clips"] for run in runs]
    b = budget(args)
    instruments = 128 * len(args.soundfonts)
    record = {"experiment": f"C on {args.k} folds over {instruments} instruments", "design": design(args), "k": args.k,
              "soundfonts": args.soundfonts, "folds": folds, "size": size(args),
              "test_clips": args.test_clips, "budget": b,
              "left_out": [{"fold": fold, "family": name} for fold, name in sorted(left_out)], "arms": table, "comparisons": comparisons, "runs": len(runs),
              "minutes": round(minutes, 1), "machine": runs[0]["machine"]}
    lines = [f"# Experiment C on {args.k} folds over {instruments} instruments (mixtures, 16 GM families)", "",
             f"Design {design(args)}: the 128 GM programs of {len(args.soundfonts)} SoundFont(s) "
             f"({', '.join(os.path.basename(path) for path in args.soundfonts)}), {8 // args.k} test program(s) of "
             f"every family per fold, each played by every font ({8 * len(args.soundfonts) // args.k} instruments). "
             + (f"Test clips: each fold's corpus's own test split ({min(test_clips)}-{max(test_clips)} mixtures)." if
                args.test_clips is None else f"Test clips: {args.test_clips} new mixtures of each fold's test programs "
                f"(seed 1), scoring the models of design {training_design(args)}."), "",
             f"{len(runs)} runs, {minutes:.0f} min of training and scoring on {runs[0]['machine']}: folds {folds}, "
             f"{size(args)} training clips of each fold's corpus, {b['steps']} updates as in the scaling curve. Test mAP "
             f"with 95% intervals over seeds (t, each seed's mAP averaged over the folds) and over {units} "
             "(fold, family) units (bootstrap of each family's AP on a fold's test programs, averaged over seeds, "
             + ("resampled within each family: the families are fixed by the design)" if within else
                "resampled across families: a family has a single unit here)")
             + (". Left out: " + ", ".join(f"{name} on fold {fold}" for fold, name in sorted(left_out))
                + ", whose test programs have a twin preset (the same samples) in the fold's training split "
                "(`fastwave.corpora.twins`); a seed's mAP is the mean of its kept units." if left_out else "."), "",
             "| arm | seeds | test mAP, over seeds | over units |", "|---|---|---|---|"]
    lines += [f"| {arm} | {len(v['seeds'])} | {cell(v['over_seeds'])} | {cell(v['over_units'])} |" for arm, v in table.items()]
    lines += ["", "Paired differences in test mAP; a verdict needs both intervals on one side of zero:", "",
              f"| claim | difference, over units | over seeds | detectable over units (with {MORE_SEEDS} seeds) "
              "| detectable, families resampled too | verdict |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {c['claim']} ({c['meaning']}) | {cell(c['difference'])} | {cell(c['difference_over_seeds'])} | "
              f"{c['detectable']:.3f} ({more_seeds_cell(c)}) | {c['detectable_across_families']:.3f} | {c['verdict']} |"
              for c in comparisons]
    write_results(results_stem(args), record, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data", help="where the folds' corpora are (rendered if missing)")
    parser.add_argument("--work", default="runs/experiment_c_folds", help="one folder of model files per run")
    parser.add_argument("--records", default=RECORDS, help="the runs' JSON records (committed; summarised from here)")
    parser.add_argument("--k", type=int, default=4, choices=(2, 4, 8), help="folds over programs (default 4)")
    parser.add_argument("--soundfonts", nargs="+", default=[DEFAULT_SOUNDFONT], metavar="SF2",
                        help="GM SoundFonts to play: each adds 128 instruments (default FluidR3_GM; e.g. also "
                             "/usr/share/sounds/sf2/TimGM6mb.sf2 from Debian's timgm6mb-soundfont)")
    parser.add_argument("--test-clips", type=int, metavar="N",
                        help="also score every run on N new mixtures of each fold's test programs (the corpus's own "
                             "test split is about 460): more test clips, the same trained models")
    parser.add_argument("--fold", type=int, help="one run: the fold (0 to k-1)")
    parser.add_argument("--arm", choices=ARMS, help="one run: the arm")
    parser.add_argument("--all", action="store_true", help="every missing run: all folds, arms and seeds 0-2")
    parser.add_argument("--summarise", action="store_true", help="pool the records into the results")
    parser.add_argument("--scale", type=float, default=1.0, help="grows the corpora, the size and the updates")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="one run: the training seed")
    args = parser.parse_args(argv)
    if len({os.path.realpath(path) for path in args.soundfonts}) != len(args.soundfonts):
        parser.error("--soundfonts lists a file twice: its instruments would be heard in training and tested")
    if len(args.soundfonts) > MAX_SOUNDFONTS:
        parser.error(f"--soundfonts takes at most {MAX_SOUNDFONTS} files")
    if args.test_clips is not None and args.test_clips < 100:
        parser.error(f"--test-clips must be at least 100 (every family needs positives), got {args.test_clips}")
    one = args.fold is not None or args.arm is not None
    if sum([one, args.all, args.summarise]) != 1:
        parser.error("give --fold F --arm A [--seed S] (one run), --all or --summarise")
    if args.summarise:
        return summarise(args)
    if one:
        if args.arm is None or args.fold is None or not 0 <= args.fold < args.k:
            parser.error(f"one run needs --arm and --fold in [0, {args.k - 1}]")
        run_on_fold(args, args.fold, args.arm, args.seed)
        return 0
    for seed in SEEDS:  # a whole seed first: an interrupted --all still leaves every fold of a seed
        for fold in range(args.k):
            for arm in ARMS:
                run_on_fold(args, fold, arm, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
