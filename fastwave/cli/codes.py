"""`fastwave` commands of the audio-as-language pipeline: fit-tokenizer, encode, train-code-lm, probe.

    fastwave fit-tokenizer clips/ --out tok.safetensors --codes 16
    fastwave encode clips/ --tokenizer tok.safetensors --out codes.npz
    fastwave train-code-lm codes.npz --out lm.safetensors --steps 2000
    fastwave probe clips/ --tokenizer tok.safetensors --lm lm.safetensors [--labels labels.csv]
"""
from __future__ import annotations

import json

from .._checks import check_device
from .._files import check_writable, open_atomically


def add_commands(sub, csv_list) -> None:
    fit = sub.add_parser("fit-tokenizer", help="fit a CodeTokenizer (spectrogram patches -> autoencoder -> k-means)",
                         description="Fit the patch autoencoder and the k-means dictionary on audio files "
                                     "(resampled to --sample-rate, mixed to mono) and save the tokenizer.")
    fit.add_argument("data", nargs="+", help="audio files and / or folders (searched recursively)")
    fit.add_argument("--out", required=True, help="where to save the tokenizer (.safetensors)")
    fit.add_argument("--codes", type=int, default=16, help="dictionary size K (default 16, the paper's example)")
    fit.add_argument("--features", choices=["logmel", "stft"], default="logmel")
    fit.add_argument("--sample-rate", type=int, default=16000)
    fit.add_argument("--n-mels", type=int, default=64)
    fit.add_argument("--n-fft", type=int, default=512, help="STFT frame in samples (default 512: 32 ms at 16 kHz)")
    fit.add_argument("--hop-length", type=int, default=160, help="samples between frames (default 160: 10 ms at 16 kHz)")
    fit.add_argument("--patch-frames", type=int, default=4, help="frames per code (default 4: 40 ms at 16 kHz)")
    fit.add_argument("--hidden", type=csv_list(int), default=[512, 256], metavar="W,W",
                     help="autoencoder widths between a patch and the bottleneck, mirrored (default 512,256)")
    fit.add_argument("--bottleneck", type=int, default=64)
    fit.add_argument("--steps", type=int, default=2000, help="autoencoder updates (default 2000)")
    fit.add_argument("--batch-size", type=int, default=256)
    fit.add_argument("--lr", type=float, default=1e-3, help="the autoencoder's peak learning rate (Adam)")
    fit.add_argument("--kmeans-iterations", type=int, default=100, help="at most this many Lloyd iterations")
    _common(fit)

    enc = sub.add_parser("encode", help="encode audio files to codes (.npz)",
                         description="Encode every audio file to its code sequence; writes an .npz read by "
                                     "fastwave.codes.load_codes and `fastwave train-code-lm`.")
    enc.add_argument("data", nargs="+", help="audio files and / or folders")
    enc.add_argument("--tokenizer", required=True)
    enc.add_argument("--out", required=True, help="the codes file (.npz)")
    enc.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    enc.add_argument("--quiet", action="store_true", help="no progress bar")

    lm = sub.add_parser("train-code-lm", help="train a CodeLM on encoded clips",
                        description="Train a causal Transformer on the clips of a codes file; a held-out "
                                    "share of the clips reports next-code top-1 and perplexity.")
    lm.add_argument("codes", help="a codes file from `fastwave encode`")
    lm.add_argument("--out", required=True, help="where to save the model (.safetensors)")
    lm.add_argument("--layers", type=int, default=4)
    lm.add_argument("--heads", type=int, default=4)
    lm.add_argument("--width", type=int, default=128)
    lm.add_argument("--context", type=int, default=256)
    lm.add_argument("--dropout", type=float, default=0.0)
    lm.add_argument("--steps", type=int, default=2000)
    lm.add_argument("--batch-size", type=int, default=32)
    lm.add_argument("--lr", type=float, default=3e-4)
    lm.add_argument("--heldout", type=float, default=0.1, help="share of clips held out for evaluation")
    lm.add_argument("--json", metavar="PATH", help="also write the training and held-out metrics as JSON")
    _common(lm)

    probe = sub.add_parser("probe", help="linear probe of a code LM vs random weights vs supervised",
                           description="Encode labelled clips, split them train / val / test (a CSV's split "
                                       "column, else stratified at random), and report accuracy (mAP for "
                                       "multi-label data) of a linear probe on the code LM's clip vectors, of "
                                       "the same probe on random weights, and of the same architecture "
                                       "trained end to end with the labels.")
    probe.add_argument("data", help="a folder of clips: labels from --labels, else from sub-folder names")
    probe.add_argument("--tokenizer", required=True)
    probe.add_argument("--lm", help="a trained CodeLM (required unless --sweep-codes)")
    probe.add_argument("--labels", metavar="CSV", help="FSD50K-style fname,labels[,split] CSV")
    probe.add_argument("--supervised-steps", type=int, default=500)
    probe.add_argument("--sweep-codes", type=csv_list(int), metavar="K,K,...",
                       help="instead: for each dictionary size refit k-means, train a code LM (--lm-steps; "
                            "--lm's config if given) and report held-out perplexity and probe score")
    probe.add_argument("--lm-steps", type=int, default=1000)
    probe.add_argument("--baselines", action="store_true",
                       help="also the probes that explain the score (fastwave.codes.baselines): bag-of-codes, "
                            "the autoencoder bottleneck before k-means, and the trained and random LMs with "
                            "layer and pooling chosen on validation")
    probe.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    _common(probe)


def _common(parser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_fit_tokenizer(args) -> int:
    from ..codes.tokenizer import CodeTokenizer

    _check_out(args.out)
    tokenizer = CodeTokenizer(codes=args.codes, features=args.features, sample_rate=args.sample_rate,
                              n_fft=args.n_fft, hop_length=args.hop_length, n_mels=args.n_mels,
                              patch_frames=args.patch_frames, hidden=tuple(args.hidden), bottleneck=args.bottleneck)
    result = tokenizer.to(check_device(args.device)).fit(args.data, steps=args.steps, batch_size=args.batch_size,
                                                    lr=args.lr, kmeans_iterations=args.kmeans_iterations,
                                                    seed=args.seed, progress=not args.quiet)
    tokenizer.save(args.out)
    losses = result["autoencoder_loss"]
    print(f"fitted on {result['patches']} patches: autoencoder MSE {sum(losses[-50:]) / len(losses[-50:]):.4f} "
          f"(standardised), k-means inertia {result['kmeans_inertia']:.4g} after {result['kmeans_iterations']} "
          f"iterations; wrote {args.out}")
    return 0


def cmd_encode(args) -> int:
    from tqdm.auto import tqdm

    from ..training.data import audio_files
    from ..codes.tokenizer import CodeTokenizer, save_codes

    _check_out(args.out)
    tokenizer = CodeTokenizer.load(args.tokenizer, map_location=check_device(args.device))
    paths = audio_files(args.data)
    codes = [tokenizer.encode_item(path) for path in tqdm(paths, desc="encode", unit="file", disable=args.quiet)]
    save_codes(args.out, paths, codes, tokenizer.config.codes)
    print(f"wrote {args.out}: {len(paths)} files, {sum(len(c) for c in codes)} codes")
    return 0


def cmd_train_code_lm(args) -> int:
    import numpy as np
    import torch

    from ..codes.lm_training import code_lm_metrics, train_code_lm
    from ..models.code_lm import CodeLM
    from ..codes.tokenizer import load_codes

    _check_out(args.out)
    if args.json:
        _check_out(args.json)
    if not 0 <= args.heldout < 1:
        raise ValueError(f"--heldout must be in [0, 1), got {args.heldout}")
    _, clips, classes = load_codes(args.codes)
    order = np.random.default_rng(args.seed).permutation(len(clips))
    heldout = int(round(args.heldout * len(clips)))
    train, test = [clips[i] for i in order[heldout:]], [clips[i] for i in order[:heldout]]
    if not train:
        raise ValueError(f"{args.codes} holds {len(clips)} clips: none is left to train on with --heldout {args.heldout}")
    torch.manual_seed(args.seed)  # the initial weights
    model = CodeLM(classes=classes, layers=args.layers, heads=args.heads, width=args.width, context=args.context,
                   dropout=args.dropout).to(check_device(args.device))
    history = train_code_lm(model, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            progress=not args.quiet)
    model.save(args.out)
    print(f"trained {args.steps} steps on {len(train)} clips: final loss {history['loss'][-1]:.4f}; wrote {args.out}")
    scored = [clip for clip in test if len(clip) >= 2]
    metrics = code_lm_metrics(model, scored) if scored else None
    if metrics:
        print(f"held-out {len(scored)} clips: next-code top-1 {metrics['top1']:.3f}, top-5 {metrics['top5']:.3f}, "
              f"perplexity {metrics['perplexity']:.2f} (of {classes} codes)")
    if args.json:
        with open_atomically(args.json) as f:
            json.dump({"steps": args.steps, "train_clips": len(train), "heldout_clips": len(scored),
                       "final_loss": history["loss"][-1], "heldout": metrics}, f, indent=1)
    return 0


def cmd_probe(args) -> int:
    from tqdm.auto import tqdm

    from ..codes.probing import codes_sweep, format_table, probe_report
    from ..training.data import clip_splits, clips_from_csv, clips_from_folders
    from ..models import load_model
    from ..models.code_lm import CodeLM
    from ..codes.tokenizer import CodeTokenizer

    if args.json:
        _check_out(args.json)
    if args.lm is None and not args.sweep_codes:
        raise ValueError("--lm is required (or --sweep-codes to train one per dictionary size)")
    if args.baselines and args.sweep_codes:
        raise ValueError("--baselines probes one --lm: run it without --sweep-codes")
    device = check_device(args.device)
    tokenizer = CodeTokenizer.load(args.tokenizer, map_location=device)
    lm = load_model(args.lm, map_location=device) if args.lm else None
    if lm is not None and not isinstance(lm, CodeLM):
        raise ValueError(f"--lm {args.lm} holds a {lm.model_type}, not a code LM")
    if lm is not None and lm.config.classes != tokenizer.config.codes:
        raise ValueError(f"--lm {args.lm} models {lm.config.classes} codes but --tokenizer {args.tokenizer} makes "
                         f"{tokenizer.config.codes}: train the LM on this tokenizer's codes")
    clips = clips_from_csv(args.labels, args.data) if args.labels else clips_from_folders(args.data)
    splits = clip_splits(clips, seed=args.seed)
    print(f"{len(clips)} clips, {len(clips.vocabulary)} labels ({'multi-label' if clips.multi_label else 'multi-class'}); "
          f"split {', '.join(f'{name} {len(index)}' for name, index in splits.items())}")
    if args.sweep_codes:
        config = {k: v for k, v in lm.config.to_dict().items() if k != "classes"} if lm else None
        rows = codes_sweep(tokenizer, clips.paths, clips.targets(), splits, codes=args.sweep_codes,
                           lm_steps=args.lm_steps, lm_config=config, seed=args.seed, progress=not args.quiet)
    else:
        codes = [tokenizer.encode_item(p) for p in tqdm(clips.paths, desc="encode", unit="file", disable=args.quiet)]
        rows = probe_report(lm, codes, clips.targets(), splits, supervised_steps=args.supervised_steps,
                            seed=args.seed, progress=not args.quiet)
    sweep = None
    if args.baselines:
        from ..codes.baselines import probe_baselines

        more, sweep = probe_baselines(tokenizer, lm, clips.paths, clips.targets(), splits, seed=args.seed,
                                      progress=not args.quiet)
        rows += [{k: v for k, v in row.items() if k not in ("layer", "pooling")} for row in more]
    print(format_table(rows))
    if args.json:
        with open_atomically(args.json, name="--json") as f:
            # The test clips, in the order of each row's "test_predictions" (intervals over test items).
            test = {"test_clips": [clips.paths[i] for i in splits["test"]],
                    "test_targets": clips.targets()[splits["test"]].tolist()}
            extra = {"sweep": sweep} if sweep is not None else {}  # each layer and pooling's val and test
            json.dump({"rows": rows, **test, **extra, "command": " ".join(["fastwave"] + args.argv)}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


HANDLERS = {"fit-tokenizer": cmd_fit_tokenizer, "encode": cmd_encode, "train-code-lm": cmd_train_code_lm,
            "probe": cmd_probe}


def _check_out(path: str) -> None:
    check_writable(path, "the output")
