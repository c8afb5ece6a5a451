"""`fastwave info`, `generate` and `bench`: the generation commands."""
from __future__ import annotations

import sys

from .._checks import check_device
from .._files import check_writable


def add_commands(sub, csv_list) -> None:
    sub.add_parser("info", help="version, native module, CUDA and Triton availability, ops backend")

    gen = sub.add_parser("generate", help="generate audio to a file")
    gen.add_argument("--seconds", type=float, default=1.0, help="audio per stream (default 1.0)")
    gen.add_argument("--out", required=True, help="output audio file (format from the extension, e.g. .wav)")
    gen.add_argument("--checkpoint", help="a model saved with model.save() (a conditioned WaveNet needs --cond "
                                         "or --score); default: the shipped piano WaveNet playing random score "
                                         "--seed, or a random-weight --model")
    gen.add_argument("--cond", metavar="NPZ", help="a conditioned WaveNet's conditioning: an .npz with global_cond "
                     "(ids, () or (batch,)) and / or local_cond (float, (channels, frames) or (batch, channels, "
                     "frames), frames of the model's cond_hop samples covering the prompt and the output)")
    gen.add_argument("--score", metavar="MID_OR_NPY", help="for a piano-score WaveNet (the shipped one, or one "
                     "trained like it): a MIDI file (needs mido) or a piano roll .npy (96, frames) to play "
                     "instead of random score --seed (a model that also reads the onset envelope gets it from the roll)")
    gen.add_argument("--prompt", metavar="AUDIO", help="an audio file to continue (resampled, then the model's tokens: "
                     "mu-law, after its pre-emphasis if it has one); "
                     "OUT holds the continuation only, not the prompt")
    gen.add_argument("--engine", default="auto", help="naive, torch, cpu or auto (default: the fastest here)")
    gen.add_argument("--threads", type=int, default=None, help="threads of the cpu engine (default: physical cores)")
    gen.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32",
                     help="weights of the cpu engine: fp32 (default; the same audio on every engine), fp16 (half "
                          "precision storage) or int8 (int8 weights, inputs quantised per step; the Transformer's KV "
                          "cache too); "
                          "docs/generation.md gives the speed and the bits/sample each costs")
    gen.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                     help="where the model runs (default cpu); the cpu engine needs cpu, the naive and torch "
                          "engines run on either")
    gen.add_argument("--batch", type=int, default=1, help="independent streams; >1 writes OUT_0, OUT_1, ...")
    gen.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    gen.add_argument("--top-k", type=int, default=None,
                     help="sample among the K most likely classes only (default: all)")
    gen.add_argument("--top-p", type=float, default=None,
                     help="sample among the most likely classes whose probabilities sum to P, in (0, 1] "
                          "(nucleus sampling; default: all)")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed; with the shipped piano WaveNet also "
                                                         "the score it plays (stream b: seed + b)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_flags(gen, "; ignored with --checkpoint",
                     "default: with no --checkpoint, --model or size flag, the shipped piano WaveNet")

    from .bench import DEFAULT_MAX_SECONDS_PER_RUN, precision_engines_help

    bench = sub.add_parser(
        "bench", help="generation speed of each engine",
        description="Time each engine on one model: samples/s over all streams, multiple of real time at "
                    "the model's sample rate, speedup over the torch engine, and the per-sample floor "
                    "(FLOPs and weight bytes of one incremental step, per stream, at the engine's precision, "
                    "and the bytes of cached state it reads: ring-buffer taps for WaveNet, keys and values "
                    "with the context full for the transformer). For the C++ engine, the floor: the samples/s "
                    "the read bandwidth of its threads allows, each streaming its share of the weights and, "
                    "for the transformer, of the keys and values; for WaveNet, the lower of that and the "
                    "samples/s its threads' measured multiply-add rate allows (the engine's own product at "
                    "the step's shapes and precision; --json: \"floor\" says which binds). For the "
                    "transformer, a second "
                    "table: FLOPs and bytes per sample as the context fills (1 position, 25%, 50%, "
                    "100%), at batch 1 and per stream at the largest --batch (16 if only 1), where the "
                    "weights are shared by the batch; --json adds it to each row as \"cost_by_fill\". "
                    "Per engine and batch: a warm-up that also measures the engine's rate, then the median of "
                    "--repeats runs, each timing the generation loop alone (not building the engine or "
                    "feeding the prompt). A run is cut to fewer samples when it would take longer than "
                    "--max-seconds-per-run (a note under the table says so), and the naive engine is timed "
                    "on fewer samples anyway; rates are per second either way. A progress bar per engine and "
                    "batch goes to stderr; so does a warning when the load average exceeds the usable cores "
                    "(the figures are then low and noisy; --json records the load in each row).")
    bench.add_argument("--engines", type=csv_list(str), default=None,
                       help="comma-separated: naive, torch, cpu, and cpu-<precision>: the C++ engine storing its "
                            f"weights at another precision, here: {precision_engines_help()}; default: all available")
    bench.add_argument("--batch", type=csv_list(int), default=[1], help="comma-separated batch sizes (default 1)")
    bench.add_argument("--seconds", type=float, default=0.25,
                       help="audio per stream generated in a timed run (default 0.25), before --max-seconds-per-run")
    bench.add_argument("--max-seconds-per-run", type=float, default=DEFAULT_MAX_SECONDS_PER_RUN,
                       help="cut a run to the samples the engine makes in about this many seconds at its "
                            f"warm-up's rate (default {DEFAULT_MAX_SECONDS_PER_RUN:g})")
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per engine; the median is reported")
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                       help="where the model runs (default cpu); the cpu engines are timed on cpu only")
    bench.add_argument("--threads", type=int, default=None,
                       help="threads of the cpu engine (default: physical cores)")
    bench.add_argument("--json", metavar="PATH", help="also write the rows as a JSON list (transformer rows "
                                                       "carry the fill table at their batch as \"cost_by_fill\")")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_model_flags(bench)


def _add_model_flags(parser, checkpoint_note="", default_help="default wavenet"):
    from .bench import MODEL_SIZES, MODELS

    parser.add_argument("--model", default=None, choices=list(MODELS),
                        help=f"the random-weight model to build ({default_help}){checkpoint_note}")
    group = parser.add_argument_group("model size (defaults: WaveNet 20 layers in 2 cycles, residual 64, gate "
                                      "128, skip 128; transformer: the paper's 3 layers, 4 heads, width 128, "
                                      "context 1600; --cond-window 4000 makes it the conditioned variant)")
    names = dict.fromkeys(name for sizes in MODEL_SIZES.values() for name in sizes)
    for name in names:
        models = [m for m, sizes in MODEL_SIZES.items() if name in sizes]
        defaults = ", ".join(f"{m} {MODELS[m].config_class.__dataclass_fields__[name].default}" for m in models)
        group.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=f"default: {defaults}")


def _sizes(args) -> dict:
    """The size flags given, for --model; a flag another model takes is refused."""
    from .bench import MODEL_SIZES

    given = {name: getattr(args, name) for sizes in MODEL_SIZES.values() for name in sizes
             if getattr(args, name) is not None}
    model = args.model or "wavenet"
    foreign = sorted(set(given) - set(MODEL_SIZES[model]))
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise ValueError(f"{flags} do not apply to --model {model}")
    return given


def cmd_info(args) -> int:
    import fastwave
    import torch

    try:
        from fastwave.engines import _native
        native = f"yes ({_native.__file__})"
        cuda_compiled = "yes" if _native.cuda_compiled else "no"
        cuda_devices = _native.cuda_device_count()
    except ImportError as err:
        native, cuda_compiled, cuda_devices = f"no ({err})", "unknown", 0
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    cuda_seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = [torch.cuda.get_device_name(i) for i in range(cuda_seen)]
    print(f"fastwave        {fastwave.__version__}")
    print(f"native module   {native}")
    print(f"CUDA compiled   {cuda_compiled}")
    print(f"CUDA devices    {cuda_seen} seen by torch, {cuda_devices} by the native module"
          + (f" ({', '.join(names)})" if names else ""))
    print(f"Triton          {triton_version}")
    from fastwave import ops
    kernels = ("Triton kernels on CUDA tensors, torch references elsewhere" if triton_version != "not installed"
               else "torch references: Triton is not installed")
    print(f"ops backend     {ops.get_backend()} ({kernels})")
    print(f"torch           {torch.__version__}")
    return 0


def cmd_generate(args) -> int:
    import fastwave
    import torch
    from .bench import build_model
    from fastwave.models.sample_model import SampleModel

    device = check_device(args.device)
    _check_seconds(args.seconds)
    if args.batch < 1:
        raise ValueError(f"--batch must be a positive number of streams, got {args.batch}")
    fastwave.audio.audio_file_subtype(args.out)  # a bad --out fails now, not after generating
    check_writable(args.out, "--out")
    sizes = _sizes(args)
    shipped = not args.checkpoint and args.model is None and not sizes  # nothing asked for: the piano model
    if args.checkpoint:
        if sizes:
            raise ValueError("--checkpoint fixes the model; its size flags ("
                             + ", ".join("--" + name.replace("_", "-") for name in sizes) + ") do not apply")
        model = fastwave.load_model(args.checkpoint, map_location=device)
        if not isinstance(model, SampleModel):
            raise TypeError(f"--checkpoint {args.checkpoint} holds a {model.model_type}, not a sample model "
                            "(WaveNet or SampleTransformer) that generates audio")
    elif shipped:
        print(f"no --checkpoint or --model: the shipped piano WaveNet plays random score {args.seed} "
              "(--seed picks another)", file=sys.stderr)
        from fastwave.pretrained import piano_wavenet

        model = piano_wavenet(map_location=device)
    else:
        name = args.model or "wavenet"
        print(f"no --checkpoint: generating from a random-weight {name} (noise)", file=sys.stderr)
        model = build_model(name, device, seed=args.seed, **sizes)
    n = max(1, round(args.seconds * model.sample_rate))
    prompt = None
    if args.prompt:  # continue a recording: the model's rate, mono, mu-law tokens
        audio, _ = fastwave.load_audio(args.prompt, sample_rate=model.sample_rate)
        prompt = torch.as_tensor(model.audio_to_tokens(audio))
    covered = n + (0 if prompt is None else int(prompt.shape[-1]))  # positions the conditioning must cover
    cond = _conditioning(args, model, covered, shipped)
    tokens = fastwave.generate(model, n, batch=args.batch, prompt=prompt, cond=cond, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed, engine=args.engine,
                               threads=args.threads, precision=args.precision, progress=not args.quiet)
    if prompt is None:
        audio = model.tokens_to_audio(tokens)
    else:  # decoded after its prompt, so that a model's de-emphasis carries on from the recording
        audio = model.tokens_to_audio(torch.cat([prompt.expand(len(tokens), -1), tokens], 1))[:, prompt.shape[-1]:]
    paths = [args.out] if args.batch == 1 else [_numbered(args.out, b) for b in range(args.batch)]
    for path, stream in zip(paths, audio):
        fastwave.save_audio(path, stream, model.sample_rate)
        print(f"wrote {path} ({n} samples, {n / model.sample_rate:.2f} s at {model.sample_rate} Hz)")
    return 0


def cmd_bench(args) -> int:
    args.model = args.model or "wavenet"
    from .bench import (build_model, cost_by_fill, environment, fill_table_batch, format_fill_table,
                                format_notes, format_table, run_bench, write_json)

    device = check_device(args.device)
    _check_seconds(args.seconds)
    if not 0 < args.max_seconds_per_run < 1e6:  # also refuses NaN and inf
        raise ValueError(f"--max-seconds-per-run must be a positive number of seconds, got {args.max_seconds_per_run}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.json:
        check_writable(args.json, "--json")  # before minutes of timing, not after
    sizes = _sizes(args)
    rows = run_bench(args.model, args.engines, args.batch, args.seconds, device, args.repeats,
                     threads=args.threads, max_seconds_per_run=args.max_seconds_per_run, progress=not args.quiet,
                     **sizes)
    env = environment(device)
    print(f"model {args.model} {sizes or '(default sizes)'} on {device} ({env['processor']}, torch {env['torch']}, "
          f"{env['threads']} threads); median of {args.repeats} runs after a warm-up, each run at most "
          f"{args.seconds:g} s of audio and about {args.max_seconds_per_run:g} s of wall time")
    print(format_table(rows))
    notes = format_notes(rows)
    if notes:
        print(notes)
    if args.model == "transformer":  # its step grows with the cache: the cost at a few fills
        model = build_model(args.model, "cpu", **sizes)
        costs = cost_by_fill(model, batch=fill_table_batch(args.batch))
        print(f"\ncost per sample as the context fills (context {model.config.context}; weights read once per "
              "step for the batch, keys and values once per stream)")
        print(format_fill_table(costs))
    if args.json:
        write_json([{**row, "environment": env, "command": " ".join(["fastwave"] + args.argv)} for row in rows], args.json)
        print(f"wrote {args.json}")
    return 0


def _conditioning(args, model, covered: int, shipped: bool) -> dict | None:
    """generate's ``cond`` from --cond / --score (or the shipped model's random score), for ``covered``
    positions of --batch streams; a conditioned model without them, or them without one, is refused."""
    import numpy as np
    import torch

    c = model.config
    conditioned = bool(getattr(c, "global_classes", 0) or getattr(c, "local_channels", 0))
    if args.cond and args.score:
        raise ValueError("give --cond or --score, not both")
    if (args.cond or args.score) and not conditioned:
        raise ValueError(f"--{'cond' if args.cond else 'score'} was given but this {model.model_type} is not "
                         "conditioned (no global_classes / local_channels)")
    if args.score:
        from fastwave.corpora.score import (ROLL_CHANNELS, ROLL_HOP, SCORE_CHANNELS, notes_from_midi, piano_roll,
                                            score_features)

        if c.local_channels not in (ROLL_CHANNELS, SCORE_CHANNELS) or (c.cond_hop, c.global_classes) != (ROLL_HOP, 0):
            raise ValueError(f"--score needs a piano-score WaveNet (local_channels {ROLL_CHANNELS} or {SCORE_CHANNELS} "
                             f"with the onset envelope, cond_hop {ROLL_HOP}, no global ids); this one has "
                             f"local_channels {c.local_channels}, cond_hop {c.cond_hop}, global_classes "
                             f"{c.global_classes}: give --cond")
        if args.score.lower().endswith(".npy"):
            try:
                roll = np.load(args.score, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise ValueError(f"--score {args.score}: not a readable .npy piano roll ({err})") from None
            roll = _npz_array(roll, "--score", np.floating)
            if roll.ndim not in (2, 3) or roll.shape[-2] != ROLL_CHANNELS:
                raise ValueError(f"--score {args.score}: a piano roll is ({ROLL_CHANNELS}, frames) or (batch, "
                                 f"{ROLL_CHANNELS}, frames), got shape {roll.shape}")
        else:
            roll = piano_roll(notes_from_midi(args.score), covered, model.sample_rate)
        feats = score_features(roll, c.local_channels, sample_rate=model.sample_rate)  # the roll, or + onset envelope
        return {"local_cond": _per_stream(torch.from_numpy(np.ascontiguousarray(feats)), args.batch, 2, "--score")}
    if args.cond:
        try:
            arrays = np.load(args.cond, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"--cond {args.cond}: not a readable .npz file ({err})") from None
        unknown = sorted(set(arrays.files) - {"global_cond", "local_cond"})
        if unknown:
            raise ValueError(f"--cond {args.cond} holds {', '.join(unknown)}; it takes global_cond and local_cond")
        cond = {}
        if "global_cond" in arrays.files:
            ids = _npz_array(arrays["global_cond"], "--cond global_cond", np.integer)
            cond["global_cond"] = _per_stream(torch.from_numpy(ids.astype(np.int64)), args.batch, 0, "--cond global_cond")
        if "local_cond" in arrays.files:
            local = _npz_array(arrays["local_cond"], "--cond local_cond", np.floating)
            cond["local_cond"] = _per_stream(torch.from_numpy(local.astype(np.float32)), args.batch, 2,
                                             "--cond local_cond")
        return cond  # what the model needs and lacks here is named by its prepare_cond
    if shipped:  # stream b plays score seed + b, over the prompt and the generated audio
        from fastwave.pretrained import piano_cond

        return piano_cond(covered, [args.seed + b for b in range(args.batch)], model.sample_rate,
                          c.local_channels)
    if conditioned:
        raise ValueError("this checkpoint is conditioned (global_classes / local_channels): give --cond FILE.npz "
                         "(global_cond, local_cond), or --score for a piano-score WaveNet")
    return None


def _npz_array(array, name: str, kind):
    """``array`` if its dtype is of ``kind`` (np.integer, np.floating), else a ValueError naming it."""
    import numpy as np

    if not np.issubdtype(array.dtype, kind):
        raise ValueError(f"{name} must hold {'integers' if kind is np.integer else 'floats'}, got dtype {array.dtype}")
    return array


def _per_stream(tensor, batch: int, dims: int, name: str):
    """One stream's conditioning (``dims`` dimensions) repeated for every stream, or --batch of them."""
    if tensor.dim() == dims:
        return tensor.unsqueeze(0).expand(batch, *tensor.shape).contiguous()
    if tensor.dim() == dims + 1 and tensor.shape[0] == batch:
        return tensor
    raise ValueError(f"{name} has shape {tuple(tensor.shape)}: expected {dims} dimensions (every stream) or "
                     f"{dims + 1} with --batch {batch} first")


def _check_seconds(seconds: float) -> None:
    if not 0 < seconds < 1e6:  # also refuses NaN and inf
        raise ValueError(f"--seconds must be a positive number of seconds, got {seconds}")


def _numbered(path: str, index: int) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}_{index}.{ext}" if dot else f"{path}_{index}"


HANDLERS = {"info": cmd_info, "generate": cmd_generate, "bench": cmd_bench}
