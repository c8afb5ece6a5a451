"""Experiment B with cross-validation over the GM programs, pretraining on unlabelled phrases, seeds
and intervals: the design that `linear_probe_power.py` showed can separate methods (B's own split
cannot).

Each run is one fold and one training seed. The fold's training programs also play an unlabelled
pretraining corpus (``fastwave corpus phrases``: 5 s solo melodies, by default 2,400 of them, 8x the
probe's training notes in audio; rendered once per fold, no test or val program in it), so the
tokenizer and the code LM learn from more than the labelled notes, on clips long enough that the
next code is not a copy of the last. The run then follows B's pipeline (fit-tokenizer and encode on
the training notes and the phrases, train-code-lm, probe with the fold's split) and the baselines
that explain the probe (``fastwave.codes.baselines``: bag-of-codes, the autoencoder bottleneck before
k-means, and the trained and random LMs with layer and pooling chosen on validation), keeping each
test note's prediction. Over the k folds every program is tested once; the summary leaves out the
notes of a program whose twin preset (``fastwave.corpora.twins``: FluidR3_GM's programs 0 and 1 play
the same samples) was in that fold's training programs. It pools the runs:
- per method, the accuracy of each seed (all its folds pooled), with a t-interval over seeds;
- a bootstrap interval over test programs of the per-note correctness averaged over seeds;
- for each of the paper's claims, the paired difference with its intervals over programs and over
  seeds (the t-interval of each seed's difference) and a verdict: supported or contradicted only
  where both exclude zero, else not resolved.

    python benchmarks/experiments/linear_probe_folds.py --all        # 4 folds x 3 seeds, pipeline + baselines: 44 min from nothing (timed)
    python benchmarks/experiments/linear_probe_folds.py --all --parts all   # + every part: ~5 h of runs on 2 busy cores
    python benchmarks/experiments/linear_probe_folds.py --fold 0 --seed 0 --parts residual_deep   # one run, one part
    python benchmarks/experiments/linear_probe_folds.py --all --parts residual_lm   # an LM on 4-stage residual codes: ~12 min a run
    python benchmarks/experiments/linear_probe_folds.py --summarise
    python benchmarks/experiments/linear_probe_folds.py --all --k 8 --scale 4 --device cuda   # a GPU's design

Runs: the phrases in <work>/k<K>_fold<F>_phrases<N>/, the tokenizer, codes and LM in
<work>/<design>/fold<F>_seed<S>/; each run's records (per-note predictions of every method, the
LM's held-out metrics, command, machine) in <records>/<design>/fold<F>_seed<S>.json and its parts'
records beside it (fold<F>_seed<S>_baselines.json, _supervised.json, _vectors.json, _residual.json,
_residual_deep.json, _residual_lm.json), committed so
that runs add up across machines and sessions; the design is k<K>_pretrain<N>[_scale<X>]. A part
with its record is skipped. The parts read the pipeline's model files: where a run's record is
committed but its model files are gone (another machine), its missing parts are refused rather
than made from a rerun pipeline whose models the committed record did not come from. Results:
benchmarks/results/experiment_b_folds.{md,json}.
"""
from __future__ import annotations

import argparse
import csv
import functools
import glob
import json
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import (MORE_SEEDS, cell, clip_corpus, json_interval, more_seeds_cell, render_once, run_record,  # noqa: E402
                     write_results)
from linear_probe import PAPER, run_pipeline  # noqa: E402
from fastwave.corpora import SoundFontRenderer, family, plan_phrases, program_folds  # noqa: E402
from fastwave.training.intervals import (cluster_bootstrap, detectable_difference, detectable_with_seeds, paired_difference,  # noqa: E402
                                         t_interval, usable_strata)

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
          ("autoencoder bottleneck probe", "bag-of-codes probe"),  # k-means throws information away
          # Is the tokenizer the cap? Trained on codes, the network should beat spectrogram statistics.
          ("supervised end to end", "log-mel mean+std probe")]
# The pipeline's supervised network stops at 500 steps, where it was still learning (a pilot on folds
# 0 and 1, seed 0: 0.173 / 0.229 test at 500 steps, 0.281 / 0.271 at 2,000); a row of its own with 4x
# the steps gives it the fair chance the paper's 71.3% had.
LONG_SUPERVISED, LONG_SUPERVISED_STEPS = "supervised end to end, 2,000 steps", 2000
BASELINE = "log-mel mean+std probe"
CLAIMS += [(LONG_SUPERVISED, "code LM probe"), (LONG_SUPERVISED, CHOSEN_LM), (LONG_SUPERVISED, BASELINE)]
# Where is the cap? The same network and budget reading, in place of each code, the autoencoder's
# bottleneck vector it was quantised from, or the log-mel patch itself (each standardised with the
# training notes' statistics).
ON_BOTTLENECK = "supervised end to end on the bottleneck, 2,000 steps"
ON_PATCHES = "supervised end to end on the patches, 2,000 steps"
CLAIMS += [(ON_BOTTLENECK, LONG_SUPERVISED),  # the quantisation into codes caps the network
           (ON_PATCHES, ON_BOTTLENECK),  # the autoencoder caps it
           (ON_PATCHES, BASELINE)]  # with the spectrogram itself, the network beats its statistics
# If the quantisation caps it, can the tokenizer give codes that do not? The same network reading each
# patch's code as its centroid (the same information as the code), then as the sum of its 2-stage
# residual codes' centroids (``fastwave.codes.residual``: a second 64-code dictionary on what the
# first leaves, fitted on the training notes).
ON_CENTROIDS = "supervised end to end on the codes' centroids, 2,000 steps"
ON_RESIDUAL = "supervised end to end on 2-stage residual codes, 2,000 steps"
CLAIMS += [(ON_CENTROIDS, LONG_SUPERVISED),  # a code read through its centroid, not a learned embedding
           (ON_RESIDUAL, LONG_SUPERVISED),  # a second stage of codes lifts what codes carry
           (ON_BOTTLENECK, ON_RESIDUAL)]  # ... yet not to the bottleneck's
# Two stages recover a third of what quantisation costs: do more? 4 and 8 stages of 64 codes (the
# first 2 the same dictionaries: k-means is seeded per stage).
ON_RESIDUAL_4 = "supervised end to end on 4-stage residual codes, 2,000 steps"
ON_RESIDUAL_8 = "supervised end to end on 8-stage residual codes, 2,000 steps"
CLAIMS += [(ON_BOTTLENECK, ON_RESIDUAL_4), (ON_BOTTLENECK, ON_RESIDUAL_8),  # does the gap close?
           (ON_RESIDUAL_4, ON_RESIDUAL), (ON_RESIDUAL_8, LONG_SUPERVISED),
           (ON_PATCHES, ON_RESIDUAL_8),  # is the tokenizer still a cap against no tokenizer at all?
           (ON_RESIDUAL_8, BASELINE)]  # codes that beat spectrogram statistics
# Finer codes lift the supervised network: do they lift the code LM, the paper's method? An LM of the
# pipeline's shape over each patch's 4-stage residual codes (4 stages: 0.263, nearly 8's 0.267, at a
# quarter of 8's sequence length), flattened patch by patch (``fastwave.codes.flatten_stages``),
# pretrained as the pipeline's LM on the training notes and the fold's phrases, probed at its best
# layer and pooling; with its random-weights twin.
LM_STAGES = 4
RESIDUAL_LMS = (f"code LM on {LM_STAGES}-stage residual codes", f"random-weights on {LM_STAGES}-stage residual codes")
ON_RESIDUAL_LM, ON_RESIDUAL_RANDOM = (f"{name} probe, layer and pooling chosen on val" for name in RESIDUAL_LMS)  # probe_layers'
CLAIMS += [(ON_RESIDUAL_LM, CHOSEN_LM),  # finer codes lift the LM's probe
           (ON_RESIDUAL_LM, ON_RESIDUAL_RANDOM),  # the LM learned more than its architecture gives
           (ON_RESIDUAL_4, ON_RESIDUAL_LM),  # the paper's supervised > LM probe, on the finer codes
           (ON_RESIDUAL_LM, BASELINE)]
RESIDUAL_ROWS = {"_residual.json": ((ON_CENTROIDS, 1), (ON_RESIDUAL, 2)),
                 "_residual_deep.json": ((ON_RESIDUAL_4, 4), (ON_RESIDUAL_8, 8))}  # (method, stages) per part
PAPER = {**PAPER, LONG_SUPERVISED: PAPER["supervised end to end"]}
# The parts beside the pipeline's record, each made (and recorded) by its own function, in this order
EXTRAS = ("_baselines.json", "_supervised.json", "_vectors.json", "_residual.json", "_residual_deep.json",
          "_residual_lm.json")
PART_NAMES = tuple(extra[1:-len(".json")] for extra in EXTRAS)  # --parts: "baselines", ...
# --all's default: the pipeline and the baselines that explain it fit the 90-minute budget on 2 idle
# cores (44 min timed from nothing, rendering included); the parts that ask why (a longer supervised
# budget, networks on vectors and on residual codes) are asked for by name (--parts ... or all).
DEFAULT_PARTS = ("baselines",)
SEEDS = (0, 1, 2)
DEFAULT_RECORDS = os.path.join(os.path.dirname(__file__), "..", "results", "run_records", "experiment_b_folds")
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


def design(args) -> str:
    """The records' sub-folder: runs of one design pool, others never mix with them."""
    return f"k{args.k}_pretrain{pretrain_count(args)}" + ("" if args.scale == 1.0 else f"_scale{args.scale:g}")


def pretrain_count(args) -> int:
    return round(args.pretrain_clips * args.scale)


def record_paths(args) -> tuple[str, ...]:
    """This run's records: the pipeline's, then one per part in EXTRAS' order (the baselines', the
    longer supervised budget's, the supervised networks on vectors', on residual codes of 1-2 and of
    4-8 stages)."""
    stem = os.path.join(args.records, design(args), f"fold{args.fold}_seed{args.seed}")
    return (stem + ".json", *(stem + extra for extra in EXTRAS))


def pretraining_audio(args, fold: dict) -> tuple[str, ...]:
    """The fold's unlabelled phrases (its training programs only), rendered once for every seed ->
    (their folder,), or () without pretraining."""
    count = pretrain_count(args)
    if count == 0:
        return ()
    folder = os.path.join(args.work, f"k{args.k}_fold{args.fold}_phrases{count}")
    return (render_once(folder, lambda: plan_phrases(count, seed=args.corpus_seed, programs=fold["train"]),
                        SoundFontRenderer, kind="phrases", seed=args.corpus_seed,
                        command=f"plan_phrases({count}, seed={args.corpus_seed}, programs=fold {args.fold} of k={args.k})"),)


def one_run(args) -> int:
    work = os.path.join(args.work, design(args), f"fold{args.fold}_seed{args.seed}")
    training_seed, args.seed = args.seed, args.corpus_seed  # the corpus is the same for every run
    corpus = clip_corpus("notes", args)
    args.seed = training_seed
    run_path, *part_paths = record_paths(args)
    wanted = [(extra, path) for name, extra, path in zip(PART_NAMES, EXTRAS, part_paths) if name in args.parts]
    os.makedirs(os.path.dirname(run_path), exist_ok=True)
    if all(os.path.isfile(path) for path in [run_path] + [path for _, path in wanted]):
        print(f"{run_path} and its parts {', '.join(args.parts)} exist: skipped")
        return 0
    if os.path.isfile(run_path):
        models = ("tok.safetensors", "lm.safetensors")
        if not all(os.path.isfile(os.path.join(work, name)) for name in models):
            raise SystemExit(f"{run_path} is recorded but its model files are not in {work}: its missing parts "
                             "must come from the models that made it (delete the run's records to rerun it whole)")
        print(f"{run_path} exists: pipeline skipped")
    else:  # the other parts read the pipeline's tokenizer and LM
        pipeline_run(work, corpus, args, run_path)
    for extra, path in wanted:
        if not os.path.isfile(path):
            PARTS[extra](work, args, run_path, path)
    return 0


def pipeline_run(work: str, corpus: dict, args, out: str) -> None:
    started = time.perf_counter()
    os.makedirs(work, exist_ok=True)
    fold = program_folds(args.corpus_seed, k=args.k)[args.fold]
    labels = os.path.join(work, "labels.csv")
    train_audio = fold_labels(args.data, fold, labels)
    unlabelled = pretraining_audio(args, fold)
    with open(run_pipeline(train_audio, args.data, labels, work, args, unlabelled), encoding="utf-8") as f:
        probe = json.load(f)
    with open(os.path.join(work, "lm.json"), encoding="utf-8") as f:
        lm = json.load(f)
    record = {"fold": args.fold, "k": args.k, "programs": fold, "corpus": {k: corpus[k] for k in ("seed", "clips")},
              "pretrain_clips": pretrain_count(args), "scale": args.scale, "lm": lm, "rows": probe["rows"],
              "test_clips": probe["test_clips"], "test_targets": probe["test_targets"],
              **run_record(args.seed, args.device, time.perf_counter() - started)}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f)
    print({row["method"]: round(row["test"], 4) for row in probe["rows"]})


def run_models(work: str, args, run_path: str):
    """The run's tokenizer, LM, clips and splits, the test clips checked against the run record's
    -> (tokenizer, lm, clips, splits)."""
    from fastwave.codes import CodeTokenizer
    from fastwave.models import load_model
    from fastwave.training.data import clip_splits, clips_from_csv

    with open(run_path, encoding="utf-8") as f:
        test_clips = json.load(f)["test_clips"]
    tokenizer = CodeTokenizer.load(os.path.join(work, "tok.safetensors"), map_location=args.device)
    lm = load_model(os.path.join(work, "lm.safetensors"), map_location=args.device)
    clips = clips_from_csv(os.path.join(work, "labels.csv"), args.data)
    splits = clip_splits(clips, seed=args.seed)  # the probe's call: the splits come from labels.csv
    if [clips.paths[i] for i in splits["test"]] != test_clips:
        raise SystemExit(f"{work}: the test clips differ from {run_path}'s (was --data another corpus?)")
    return tokenizer, lm, clips, splits


def write_part(args, out: str, started: float, rows: list[dict], **more) -> None:
    record = {"fold": args.fold, "seed": args.seed, "rows": rows, **more,
              **run_record(args.seed, args.device, time.perf_counter() - started)}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f)
    print({row["method"]: round(row["test"], 4) for row in rows})


def baselines_run(work: str, args, run_path: str, out: str) -> None:
    """The run's tokenizer and LM through ``probe_baselines`` on the run's splits -> ``out`` (rows in
    the order of the run record's test clips, and the layer/pooling sweep)."""
    from fastwave.codes.baselines import probe_baselines

    started = time.perf_counter()
    tokenizer, lm, clips, splits = run_models(work, args, run_path)
    rows, sweep = probe_baselines(tokenizer, lm, clips.paths, clips.targets(), splits, seed=args.seed)
    write_part(args, out, started, rows, sweep=sweep)


def supervised_run(work: str, args, run_path: str, out: str) -> None:
    """The pipeline's supervised network (the LM's architecture on the run's codes, the same seed and
    splits) trained for LONG_SUPERVISED_STEPS (x --scale) -> ``out``: one row."""
    from fastwave.codes.probing import supervised_row

    started = time.perf_counter()
    tokenizer, lm, clips, splits = run_models(work, args, run_path)
    codes = [tokenizer.encode_item(path) for path in clips.paths]
    steps = max(20, round(LONG_SUPERVISED_STEPS * args.scale))
    row = supervised_row(lm.config, codes, clips.targets(), splits, method=LONG_SUPERVISED, steps=steps,
                         seed=args.seed, device=args.device)
    write_part(args, out, started, [row], steps=steps)


def vectors_run(work: str, args, run_path: str, out: str) -> None:
    """The longer supervised network again, reading each position's bottleneck vector, then its
    log-mel patch, in place of its code (``fastwave.codes.probing.VectorClassifier``; same seed,
    splits, steps and stopping) -> ``out``: two rows."""
    from fastwave.codes.probing import supervised_row

    started = time.perf_counter()
    tokenizer, lm, clips, splits = run_models(work, args, run_path)
    patches = [tokenizer.clip_patches(path) for path in clips.paths]
    steps = max(20, round(LONG_SUPERVISED_STEPS * args.scale))
    rows = [supervised_row(lm.config, vectors, clips.targets(), splits, method=method, steps=steps, seed=args.seed,
                           device=args.device)
            for method, vectors in ((ON_BOTTLENECK, [tokenizer.latents(p) for p in patches]), (ON_PATCHES, patches))]
    write_part(args, out, started, rows, steps=steps)


def residual_run(work: str, args, run_path: str, out: str, *, rows: tuple) -> None:
    """The longer supervised network reading each patch's quantised bottleneck vector, the sum of its
    residual codes' centroids, for each (method, stages) of ``rows`` (stage 1 is the tokenizer's code,
    so 1 stage is the code's centroid; the further dictionaries are fitted on the training notes'
    bottleneck vectors only) -> ``out``: a row each."""
    from fastwave.codes.probing import supervised_row
    from fastwave.codes.residual import residual_quantise

    started = time.perf_counter()
    tokenizer, lm, clips, splits = run_models(work, args, run_path)
    latents, books = residual_codebooks(tokenizer, clips, splits, max(stages for _, stages in rows), args.seed)
    steps = max(20, round(LONG_SUPERVISED_STEPS * args.scale))
    rows = [supervised_row(lm.config, [residual_quantise(z, books[:stages])[1] for z in latents], clips.targets(),
                           splits, method=method, steps=steps, seed=args.seed, device=args.device)
            for method, stages in rows]
    write_part(args, out, started, rows, steps=steps, residual_codes=[len(book) for book in books])


def residual_codebooks(tokenizer, clips, splits, stages: int, seed: int) -> tuple[list, list]:
    """Every clip's bottleneck vectors and ``stages`` residual dictionaries (stage 1 the tokenizer's,
    the others fitted on the training clips' vectors, seeded per stage) -> (latents, codebooks)."""
    import torch

    from fastwave.codes.residual import fit_residual_codebooks

    latents = [tokenizer.latents(tokenizer.clip_patches(path)) for path in clips.paths]
    books = fit_residual_codebooks(torch.cat([latents[i] for i in splits["train"]]), first=tokenizer.centroids.cpu(),
                                   stages=stages, seed=seed)
    return latents, books


def residual_lm_run(work: str, args, run_path: str, out: str) -> None:
    """A code LM over LM_STAGES-stage residual codes (the residual part's dictionaries), flattened
    patch by patch, trained by ``fastwave train-code-lm`` as the pipeline's LM is (its shape, steps,
    batch, learning rate and held-out share; the context LM_STAGES x as long, so it spans the same
    audio) on the training notes' and the fold's phrases' codes, then probed at the layer and
    pooling chosen on val (``probe_layers``), and so is its random-weights twin -> ``out``: two rows,
    the LM's held-out metrics and the sweep."""
    from linear_probe import run as fastwave_command
    from fastwave.codes import flatten_stages, probe_layers, residual_quantise, save_codes
    from fastwave.codes.probing import random_weights_like
    from fastwave.models import load_model

    started = time.perf_counter()
    tokenizer, lm, clips, splits = run_models(work, args, run_path)
    latents, books = residual_codebooks(tokenizer, clips, splits, LM_STAGES, args.seed)
    classes = tokenizer.config.codes

    def tokens(z):
        return flatten_stages(residual_quantise(z, books)[0], classes)

    notes = [tokens(z) for z in latents]
    unlabelled = pretraining_audio(args, program_folds(args.corpus_seed, k=args.k)[args.fold])  # () without
    phrases = sorted(p for folder in unlabelled for p in glob.glob(os.path.join(folder, "**", "*.wav"), recursive=True))
    pretraining = [notes[i] for i in splits["train"]] + [tokens(tokenizer.latents(tokenizer.clip_patches(p)))
                                                         for p in phrases]
    codes, model_path, metrics = (os.path.join(work, f"residual{LM_STAGES}_{name}")
                                  for name in ("codes.npz", "lm.safetensors", "lm.json"))
    save_codes(codes, [f"clip{i}" for i in range(len(pretraining))], pretraining, classes * LM_STAGES)
    c = lm.config
    fastwave_command("train-code-lm", codes, "--out", model_path, "--steps", str(max(20, round(1000 * args.scale))),
                     "--context", str(LM_STAGES * c.context), "--layers", str(c.layers), "--heads", str(c.heads),
                     "--width", str(c.width), "--json", metrics, "--device", args.device, "--seed", str(args.seed),
                     "--quiet")
    residual_lm = load_model(model_path, map_location=args.device)
    targets = clips.targets()
    rows, sweep = [], []
    for name, model in zip(RESIDUAL_LMS, (residual_lm, random_weights_like(residual_lm, args.seed))):
        row, pairs = probe_layers(model, notes, targets, splits, name=name)
        rows.append(row)
        sweep += pairs
    with open(metrics, encoding="utf-8") as f:
        heldout = json.load(f)
    write_part(args, out, started, rows, stages=LM_STAGES, lm=heldout, pretraining_clips=len(pretraining),
               sweep=sweep)


PARTS = {"_baselines.json": baselines_run, "_supervised.json": supervised_run, "_vectors.json": vectors_run,
         **{extra: functools.partial(residual_run, rows=rows) for extra, rows in RESIDUAL_ROWS.items()},
         "_residual_lm.json": residual_lm_run}


def baseline_hits(data: str, corpus_seed: int, count: int, folds: list[int], k: int) -> dict[str, float]:
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
        correct, test = fold_correct(features, families, programs, program_folds(corpus_seed, k=k)[fold])
        hits.update({clips[i].name + ".wav": value for i, value in zip(test, correct["log-mel mean+std"])})
    return hits


def leaked_clips(runs: list[dict]) -> frozenset[str]:
    """File names of the runs' test notes played by a program whose twin preset (the same samples,
    ``fastwave.corpora.twins``) is among that run's training programs: the tokenizer, LM and probe
    heard that instrument, so the note is left out of every method's score."""
    from fastwave.corpora import DEFAULT_SOUNDFONT
    from fastwave.corpora.twins import heard_twins

    leaked = set()
    for run in runs:
        heard = heard_twins(run["programs"], [DEFAULT_SOUNDFONT])  # the notes corpus plays the default font
        leaked.update(os.path.basename(clip) for clip in run["test_clips"] if program_of(clip) in heard)
    return frozenset(leaked)


def run_leaked_clips(run_path: str) -> frozenset[str]:
    """``leaked_clips`` of the one run recorded at ``run_path`` (a fold's pipeline record)."""
    with open(run_path, encoding="utf-8") as f:
        return leaked_clips([json.load(f)])


def families_of(programs) -> list[str] | None:
    """The GM family of each test note's program: the strata of the bootstrap over programs. The
    folds test the same share of every family (``program_folds``), so the families are the design's
    and only which of a family's programs are tested is drawn. None where a family has fewer than 2
    programs among them (a fold or two of the k): nothing to resample within it."""
    strata = usable_strata(programs, [family(program) for program in programs])
    return None if strata is None else strata.tolist()


def pooled(runs: list[dict], baseline: dict[str, float],
           leaked=frozenset()) -> tuple[list[int], list[str], dict[str, np.ndarray], list[int]]:
    """The runs' test notes that every seed scored, less ``leaked`` -> (seeds, clips, per method
    a (seeds, clips) 0/1 correctness array, the clips' programs). ``baseline`` joins every seed's
    methods."""
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
    clips = sorted(set.intersection(*(set(hits) for hits in correct.values())) - leaked)
    arrays = {m: np.array([[correct[(m, s)][c] for c in clips] for s in seeds]) for m in methods}
    return seeds, clips, arrays, [program_of(c) for c in clips]


def load_runs(records: str) -> list[dict]:
    """Each run's pipeline record under ``records`` with the rows of its EXTRAS (where made) after
    its own."""
    runs = []
    for path in sorted(glob.glob(os.path.join(records, "fold*_seed*.json"))):
        if path.endswith(EXTRAS):
            continue
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        for extra in (path[:-len(".json")] + suffix for suffix in EXTRAS):
            if os.path.isfile(extra):  # same test clips, same order (checked when it was made)
                with open(extra, encoding="utf-8") as f:
                    run["rows"] = run["rows"] + json.load(f)["rows"]
        runs.append(run)
    return runs


def summarise(args) -> int:
    records = os.path.join(args.records, design(args))
    runs = load_runs(records)
    if not runs:
        raise SystemExit(f"no runs under {records}: run --fold F --seed S (or --all) first")
    folds = sorted({run["fold"] for run in runs})
    corpus = runs[0]["corpus"]
    data = args.data or f"data/notes_{sum(corpus['clips'].values())}"
    baseline = baseline_hits(data, corpus["seed"], sum(corpus["clips"].values()), folds, args.k)
    leaked = leaked_clips(runs)
    seeds, clips, correct, programs = pooled(runs, baseline, leaked)
    families = families_of(programs)
    methods = {}
    for method, hits in correct.items():
        per_seed = hits.mean(axis=1)
        seeds_interval = json_interval(t_interval(per_seed))  # one seed: no interval (JSON null)
        methods[method] = {"per_seed": per_seed.tolist(), "seeds": seeds_interval,
                           "programs": list(cluster_bootstrap(hits.mean(axis=0), programs, seed=0, strata=families))}
    claims = []
    for better, worse in [(b, w) for b, w in CLAIMS if b in correct and w in correct]:
        difference = correct[better] - correct[worse]  # (seeds, notes)
        claims.append({"claim": f"{better} > {worse}",
                       **paired_difference(difference.mean(axis=0), programs, difference.mean(axis=1), strata=families),
                       f"detectable_with_{MORE_SEEDS}_seeds": (detectable_with_seeds(difference, programs, MORE_SEEDS,
                                                                                     strata=families)
                                                               if len(seeds) >= 2 else None),
                       "programs_resampled": "across families" if families is None else "within families",
                       # the programs resampled as if the families were drawn too: the wider, older figure
                       "detectable_across_families": detectable_difference(difference.mean(axis=0), programs),
                       "paper": PAPER[better] - PAPER[worse] if better in PAPER and worse in PAPER else None})
    lm = {name: [run["lm"]["heldout"][name] for run in runs] for name in ("perplexity", "top1")}
    record = {"experiment": f"B on {args.k} folds over programs", "design": design(args), "k": args.k,
              "pretrain_clips": pretrain_count(args), "folds": folds, "seeds": seeds, "test_notes": len(clips),
              "test_programs": len(set(programs)), "left_out_notes": len(leaked), "lm_heldout": lm, "methods": methods, "claims": claims,
              "runs": [{k: run[k] for k in ("fold", "seed", "command", "machine", "wall_seconds")} for run in runs]}
    minutes = sum(run["wall_seconds"] for run in runs) / 60
    lines = [f"# Experiment B on {args.k} folds over programs", "",
             f"Design {design(args)}: {len(runs)} runs (folds {folds}, seeds {seeds}, {minutes:.0f} min of pipeline "
             f"in all on {runs[0]['machine']}); {len(clips)} test notes of {len(set(programs))} programs, each scored "
             f"by every seed"
             + (f" ({len(leaked)} notes left out: their program's twin preset, the same samples, was among the "
                "fold's training programs, `fastwave.corpora.twins`)" if leaked else "")
             + f". The tokenizer and code LM of each fold also learned from {pretrain_count(args)} "
             "unlabelled 5 s phrases of its training programs; the LM's next-code perplexity on its held-out "
             f"clips: {np.mean(lm['perplexity']):.2f} of 64 codes (top-1 {np.mean(lm['top1']):.3f}), mean of the runs. "
             "Intervals 95%: over seeds (t), and over test programs (bootstrap of each note's correctness "
             "averaged over seeds, "
             + ("the programs resampled within their family: the folds test every family alike)." if families else
                "the programs resampled across families: a family has a single test program here)."), "",
             "| method | accuracy, over seeds | accuracy, over programs | paper |", "|---|---|---|---|"]
    lines += [f"| {m} | {cell(v['seeds'])} | {cell(v['programs'])} | {PAPER.get(m, float('nan')):.3f} |"
              .replace("nan", "–") for m, v in methods.items()]
    lines += ["", "A verdict needs the difference's intervals over programs and over seeds on one side of zero "
              "(one seed resolves nothing).", "",
              f"| claim | difference, over programs | over seeds | detectable over programs (with {MORE_SEEDS} seeds) "
              "| detectable, families resampled too | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['claim']} | {cell(c['difference'])} | {cell(c['difference_over_seeds'])} | "
              f"{c['detectable']:.3f} ({more_seeds_cell(c)}) | {c['detectable_across_families']:.3f} | {c['verdict']} |"
              for c in claims]
    write_results("experiment_b_folds", record, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the notes corpus (default data/notes_<count>; rendered if missing)")
    parser.add_argument("--work", default="runs/experiment_b_folds", help="the phrases and one folder of model files per run")
    parser.add_argument("--records", default=DEFAULT_RECORDS,
                        help="the runs' JSON records, a sub-folder per design (committed; summarised from here)")
    parser.add_argument("--k", type=int, default=4, choices=(2, 4, 8),
                        help="folds over programs (default 4: each tests 2 programs of every family)")
    parser.add_argument("--fold", type=int, help="one run: the fold (0 to k-1)")
    parser.add_argument("--all", action="store_true", help="every missing run: all folds, seeds 0-2")
    parser.add_argument("--summarise", action="store_true", help="pool the records into the results")
    parser.add_argument("--parts", nargs="+", choices=(*PART_NAMES, "all"), default=list(DEFAULT_PARTS),
                        help="the parts each run makes beside its pipeline (default: baselines; all: every part; "
                        "a part with its record is skipped)")
    parser.add_argument("--pretrain-clips", type=int, default=2400,
                        help="unlabelled 5 s phrases per fold (x --scale) the tokenizer and LM also learn from (0: none)")
    parser.add_argument("--corpus-seed", type=int, default=0, help="the corpus and its folds (default 0)")
    parser.add_argument("--scale", type=float, default=1.0, help="grows the data and the training")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="one run: the training seed")
    args = parser.parse_args(argv)
    if sum([args.fold is not None, args.all, args.summarise]) != 1:
        parser.error("give --fold F [--seed S] (one run), --all or --summarise")
    if args.fold is not None and not 0 <= args.fold < args.k:
        parser.error(f"--fold must be in [0, {args.k - 1}] with --k {args.k}")
    if args.pretrain_clips < 0:
        parser.error(f"--pretrain-clips must be >= 0, got {args.pretrain_clips}")
    args.parts = list(PART_NAMES) if "all" in args.parts else args.parts
    if args.summarise:
        return summarise(args)
    if args.fold is not None:
        return one_run(args)
    for seed in SEEDS:  # a whole seed first: an interrupted --all still leaves every fold of a seed
        for fold in range(args.k):
            one_run(argparse.Namespace(**{**vars(args), "fold": fold, "seed": seed, "data": args.data}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
