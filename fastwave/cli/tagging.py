"""`fastwave` commands of the raw-waveform classifier: train-classifier, evaluate, analyze-frontend.

    fastwave train-classifier FSD50K.dev_audio --labels dev.csv --out-dir runs/fsd --epochs 30
    fastwave evaluate runs/fsd/best.safetensors FSD50K.eval_audio --labels eval.csv
    fastwave analyze-frontend runs/fsd/best.safetensors --out frontend.png

    torchrun --nproc_per_node=8 -m fastwave.cli train-classifier ...   # data parallel on 8 GPUs
"""
from __future__ import annotations

import json
import os

from .._files import check_writable, open_atomically

# The model's choices, repeated so that `fastwave --help` needs no torch (tests/cli/test_cli_tagging.py
# holds them equal to fastwave.models.classifier's).
POOLINGS = ("none", "avg", "wavelet")
INPUTS = ("waveform", "logmel")


def add_commands(sub, csv_list) -> None:
    train = sub.add_parser(
        "train-classifier", help="train the raw-waveform Audio Transformer (or the log-mel CNN) on labelled clips",
        description="Train a WaveletClassifier (--arch cnn: the LogMelCNN baseline) on 1 s windows of labelled clips (resampled to 16 kHz). Clips "
                    "are split train / val / test first (a CSV's split column, else at random; a missing val or "
                    "test is carved from train), then cut into windows. Evaluates per clip (window scores "
                    "averaged) after every epoch, keeps the best epoch, and prints the test table. Checkpoints "
                    "go to --out-dir; --resume continues an interrupted run exactly. Under torchrun the "
                    "batches are split over the processes.")
    train.add_argument("data", help="a folder of clips: labels from --labels, else from sub-folder names")
    train.add_argument("--labels", metavar="CSV", help="FSD50K-style fname,labels[,split] CSV")
    train.add_argument("--test-data", metavar="FOLDER", help="a separate test set (e.g. FSD50K.eval_audio); "
                       "then no test split is carved from the training clips")
    train.add_argument("--test-labels", metavar="CSV", help="the CSV of --test-data")
    train.add_argument("--out-dir", required=True, help="checkpoints, history.json and report.json")
    train.add_argument("--arch", choices=["transformer", "cnn"], default="transformer",
                       help="the wavelet Audio Transformer on raw audio (default), or the log-mel CNN baseline "
                            "(which reads --channels and --dropout only)")
    train.add_argument("--channels", type=csv_list(int), default=[32, 64, 128, 256], metavar="N[,N]",
                       help="the CNN's conv block widths (default 32,64,128,256)")
    train.add_argument("--pooling", choices=POOLINGS, default="wavelet", help="between layers (default wavelet)")
    train.add_argument("--layers", type=int, default=6)
    train.add_argument("--width", type=int, default=64)
    train.add_argument("--heads", type=int, default=4)
    train.add_argument("--frontend", type=csv_list(int), default=[2048], metavar="N[,N]",
                       help="hidden widths of the dense front end (default 2048)")
    train.add_argument("--inputs", choices=INPUTS, default="waveform",
                       help="what the Transformer's front end reads per 25 ms patch: its samples (default), or "
                            "its log-mel frame (--n-mels bands; separates the front end from the architecture)")
    train.add_argument("--n-mels", type=int, default=64, help="--inputs logmel: mel bands (default 64)")
    train.add_argument("--dropout", type=float, default=None, help="default: the model's (0.1 transformer, 0.2 cnn)")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--steps", type=int, default=None,
                       help="train for this many updates instead of --epochs (a budget that does not grow with the data)")
    train.add_argument("--eval-every", type=int, default=None, metavar="STEPS",
                       help="evaluate on val every this many updates (default: every epoch) and after the last")
    train.add_argument("--warmup", type=int, default=None, metavar="STEPS",
                       help="learning-rate warm-up updates (default: one epoch, at most 1000)")
    train.add_argument("--batch-size", type=int, default=64, help="windows per update, over all processes")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--resume", action="store_true", help="continue from --out-dir's checkpoint")
    augment = train.add_argument_group("augmentation, drawn afresh for every window of every step (default: none)")
    augment.add_argument("--shift-ms", type=float, default=0.0,
                         help="move each window by up to this many ms either way, zero-filled")
    augment.add_argument("--gain-db", type=float, default=0.0, help="scale each window by up to this many dB either way")
    augment.add_argument("--polarity", action="store_true", help="negate half of the windows")
    augment.add_argument("--mix", type=float, default=0.0, metavar="P",
                         help="with probability P add another window of the batch (-12 to 0 dB) and join its labels "
                              "(multi-label data only)")
    _common(train)

    evaluate = sub.add_parser(
        "evaluate", help="per-clip metrics of a trained classifier (prints the metric table)",
        description="Score a classifier checkpoint on labelled clips: window probabilities averaged per clip; "
                    "mAP, micro-average precision and d-prime for multi-label data, accuracy and top-5 for "
                    "multi-class data. Labels must be in the model's vocabulary.")
    evaluate.add_argument("checkpoint", help="a classifier saved by train-classifier (e.g. best.safetensors)")
    evaluate.add_argument("data", help="a folder of clips: labels from --labels, else from sub-folder names")
    evaluate.add_argument("--labels", metavar="CSV", help="FSD50K-style fname,labels[,split] CSV")
    evaluate.add_argument("--split", choices=["all", "train", "val", "test"], default="all",
                          help="score one split as clip_splits draws it with --seed: the split train-classifier "
                               "used when it ran without --test-data (its splits.json lists them); default all")
    evaluate.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    _common(evaluate)

    analyze = sub.add_parser(
        "analyze-frontend", help="plot what a classifier's first layer learned (a filterbank figure)",
        description="The magnitude spectrum of every first-layer neuron (a 25 ms FIR filter), sorted by centre "
                    "frequency, against the straight line of a Fourier filterbank, plus a grid of example "
                    "filters. Needs matplotlib.")
    analyze.add_argument("checkpoint")
    analyze.add_argument("--out", required=True, help="the figure (.png, .pdf or .svg)")
    analyze.add_argument("--examples", type=int, default=16, help="filters in the example grid (default 16)")


def _common(parser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="splits, initial weights and batch order")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    parser.add_argument("--batch-eval", type=int, default=256, help="windows per evaluation batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _clips(data: str, labels: str | None, vocabulary=None, multi_label: bool = False):
    """Labelled clips from a CSV or sub-folders; with a ``vocabulary`` (a trained model's), its class
    order; ``multi_label`` keeps multi-hot targets when every clip happens to have one label."""
    from ..training.data import LabelledClips, clips_from_csv, clips_from_folders

    clips = clips_from_csv(labels, data, vocabulary=vocabulary) if labels else clips_from_folders(data)
    if vocabulary is not None:
        unknown = sorted(set(clips.vocabulary) - set(vocabulary))
        if unknown:
            raise ValueError(f"labels {unknown[:5]} are not in the model's vocabulary ({len(vocabulary)} labels)")
    return LabelledClips(clips.paths, clips.labels, list(vocabulary or clips.vocabulary), clips.splits,
                         force_multi_label=multi_label)


def cmd_train_classifier(args) -> int:
    import numpy as np
    import torch

    from ..tagging.classify import check_data, evaluate_classifier, train_classifier
    from ..training.clip_windows import WindowedClips
    from ..training.data import clip_splits
    from ..training.loop import BEST, init_distributed, training_device

    rank, world = init_distributed()
    device = training_device(args.device)
    quiet = args.quiet or rank != 0
    if rank == 0:  # the folder the checkpoints go to, made and checked before the data is read
        try:
            os.makedirs(args.out_dir, exist_ok=True)
        except OSError as err:
            raise ValueError(f"--out-dir: cannot create {args.out_dir}: {err}") from None
        check_writable(os.path.join(args.out_dir, "report.json"), "--out-dir")
    if (args.test_data is None) != (args.test_labels is None) and args.test_labels is not None:
        raise ValueError("--test-labels needs --test-data")
    clips = _clips(args.data, args.labels)
    splits = clip_splits(clips, seed=args.seed)
    test_clips = None
    if args.test_data:
        test_clips = _clips(args.test_data, args.test_labels, clips.vocabulary, clips.multi_label)
        # The separate set is the test: the clips carved (or marked) as test here are trained on.
        splits["train"] = np.sort(np.concatenate([splits["train"], splits.pop("test")]))
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = _new_classifier(args, num_classes=len(clips.vocabulary), multi_label=clips.multi_label,
                            labels=tuple(clips.vocabulary)).to(device)
    rate = model.config.sample_rate
    load = lambda subset, name: WindowedClips.from_clips(subset, sample_rate=rate, progress=not quiet,  # noqa: E731
                                                         min_samples=model.config.patch_size)
    test = load(test_clips if test_clips is not None else clips.subset(splits["test"]), "test")
    check_data(model, test, "test")  # now, not after training
    train = load(clips.subset(splits["train"]), "train")
    val = load(clips.subset(splits["val"]), "val")
    if rank == 0:  # which files each split holds, for the record (evaluate --split redraws them)
        with open_atomically(os.path.join(args.out_dir, "splits.json")) as handle:
            json.dump({"train": train.paths, "val": val.paths, "test": test.paths}, handle, indent=0)
    if not quiet:
        print(f"{len(clips)} clips, {len(clips.vocabulary)} labels "
              f"({'multi-label' if clips.multi_label else 'multi-class'}); windows: train {len(train)}, val "
              f"{len(val)}, test {len(test)}; {sum(p.numel() for p in model.parameters()):,} parameters, "
              f"pooling {args.pooling}, {world} process(es) on {device}")
    history = train_classifier(model, train, val, epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
                               lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, seed=args.seed,
                               checkpoint_dir=args.out_dir, resume=args.resume, eval_every=args.eval_every,
                               eval_batch_size=args.batch_eval, augment=_augment(args, rate), progress=not quiet)
    if rank == 0:
        from ..models.checkpoint import load_model

        best = load_model(os.path.join(args.out_dir, BEST), map_location=device)
        report = evaluate_classifier(best, test, args.batch_eval)
        print(f"test, best epoch (step {history['best']['step']}):\n{report.table()}")
        with open_atomically(os.path.join(args.out_dir, "report.json")) as handle:
            json.dump({"test": report.to_dict(), "best": history["best"], "command": " ".join(["fastwave"] + args.argv)},
                      handle, indent=1)
    if world > 1:
        torch.distributed.destroy_process_group()
    return 0


def _augment(args, sample_rate: int):
    from ..training.augment import WaveAugment

    if not 0 <= args.shift_ms <= 1000:  # also refuses NaN
        raise ValueError(f"--shift-ms must lie in [0, 1000], got {args.shift_ms}")
    return WaveAugment(shift=round(args.shift_ms * sample_rate / 1000), gain_db=args.gain_db, polarity=args.polarity,
                       mix=args.mix)


def _new_classifier(args, **task):
    """The model --arch names, from its flags (``task``: num_classes, multi_label, labels)."""
    from ..models.classifier import WaveletClassifier
    from ..models.mel_cnn import LogMelCNN

    if args.dropout is not None:  # else each model's config default
        task["dropout"] = args.dropout
    if args.arch == "cnn":
        return LogMelCNN(channels=tuple(args.channels), **task)
    return WaveletClassifier(pooling=args.pooling, layers=args.layers, width=args.width, heads=args.heads,
                             frontend=tuple(args.frontend), inputs=args.inputs, n_mels=args.n_mels, **task)


def _load_classifier(path: str, device: str = "cpu", transformer_only: bool = False):
    from ..models.checkpoint import load_model
    from ..models.classifier import WaveletClassifier
    from ..models.clip_classifier import ClipClassifier

    model = load_model(path, map_location=device)
    wanted = WaveletClassifier if transformer_only else ClipClassifier
    if not isinstance(model, wanted):
        raise ValueError(f"{path} holds a {model.model_type}, not a "
                         f"{'wavelet Audio Transformer' if transformer_only else 'classifier'} (train one with "
                         "`fastwave train-classifier`)")
    return model


def cmd_evaluate(args) -> int:
    if args.json:
        check_writable(args.json, "--json")  # before the evaluation, not after
    from ..tagging.classify import evaluate_classifier
    from ..training.clip_windows import WindowedClips
    from ..training.data import clip_splits
    from ..training.loop import training_device

    model = _load_classifier(args.checkpoint, training_device(args.device))
    if not model.config.labels:
        raise ValueError(f"{args.checkpoint} stores no label names, so CSV labels cannot be matched to its classes")
    clips = _clips(args.data, args.labels, model.config.labels, model.config.multi_label)
    if args.split != "all":
        clips = clips.subset(clip_splits(clips, seed=args.seed)[args.split])
    data = WindowedClips.from_clips(clips, sample_rate=model.config.sample_rate, progress=not args.quiet,
                                    min_samples=model.config.patch_size)
    report = evaluate_classifier(model, data, args.batch_eval)
    print(report.table())
    if args.json:
        with open_atomically(args.json, name="--json") as handle:
            json.dump({**report.to_dict(), "checkpoint": args.checkpoint, "split": args.split,
                       "command": " ".join(["fastwave"] + args.argv)}, handle, indent=1)
        print(f"wrote {args.json}")
    return 0


def cmd_analyze_frontend(args) -> int:
    check_writable(args.out, "--out")
    from ..tagging.frontend_analysis import analyze_frontend, plot_frontend

    analysis = analyze_frontend(_load_classifier(args.checkpoint, transformer_only=True))
    plot_frontend(analysis, args.out, examples=args.examples)
    print(analysis.summary())
    print(f"wrote {args.out}")
    return 0


HANDLERS = {"train-classifier": cmd_train_classifier, "evaluate": cmd_evaluate,
            "analyze-frontend": cmd_analyze_frontend}
