"""Train the piano WaveNet that `fastwave generate` ships with.

Renders the piano corpus (``fastwave corpus piano``) if its folder is missing, mu-law encodes the
train and val phrases and rebuilds the piano roll of each from the corpus plan
(fastwave.corpora.score), trains a score-conditioned WaveNet by teacher forcing
(fastwave.training.sample_models.train_sample_model, with checkpoints: an interrupted run resumes where it stopped),
and writes the last weights (--ship best: the best by validation bits per sample) plus a JSON
record (command, seed, data size, machine, wall time, the evaluations). The model shipped now is
one run's moving average of the weights, at the update ``--pause-at`` stops it (docs/piano_model.md,
"How it was made").

Why a score: an unconditioned WaveNet of this size, after 2,700 updates on this corpus, still made
noise with faint tones (spectral flatness 0.05-0.08 against 0.002 for the real phrases). Told which keys are struck, the model only has to learn how a piano sounds, not
also when and what it plays, which is what MIDI-conditioned WaveNets do (Hawthorne et al., 2019).

The token embedding starts as a linear function of each level's amplitude (plus small noise) rather
than at random, so the first layer reads the waveform's values from the first step: over 300 updates
on this corpus that gave a training loss of 3.36 against 3.46 nats, validation 5.71 against 6.25 bits.

    python benchmarks/experiments/piano_model.py --steps 4000 --lr 1e-3 --eval-every 500   # the first shipped model, CPU
    python benchmarks/experiments/piano_model.py --steps 40000 --lr 1e-3 --minutes 240 --data data/piano_240 \
        --runs runs/piano_240 --device cuda                                                 # larger
    python benchmarks/experiments/piano_model.py --pre-emphasis 0 --export-tokens data/piano_tokens.npz
        # the tokens for a machine without the corpus: --tokens (benchmarks/gpu_piano_training.sh)
    python benchmarks/experiments/piano_model.py ... --extra-pianos /usr/share/sounds/sf2/TimGM6mb.sf2:0 \
        --extra-phrases 100         # more training pianos: 100 phrases each, played by other SoundFonts

``--extra-pianos`` adds training phrases only: the val and test phrases stay the corpus's (FluidR3's
programs 2 and 1), so the evaluations compare with runs trained without them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import ensure_corpus, number_in, parameters, render_once, run_record, token_split  # noqa: E402
from fastwave.corpora.piano import plan_piano, plan_piano_phrases  # noqa: E402
from fastwave.corpora.score import (ONSET_DECAY, ROLL_CHANNELS, ROLL_HOP, SCORE_CHANNELS, piano_roll,  # noqa: E402
                                   score_features)
from fastwave.training.loop import HISTORY  # noqa: E402
from fastwave.training.sample_models import train_sample_model  # noqa: E402

# Piano i of --extra-pianos plays phrase_stream(EXTRA_PHRASE_SEED + i): none of the random scores
# that tests/test_pretrained.py (seeds 0-3) and experiment A's test set (seed 1) play.
EXTRA_PHRASE_SEED = 100


def amplitude_embedding_(model: fastwave.WaveNet, seed: int) -> None:
    """Set the token embedding (classes, R) to a linear map of each level's companded value and
    amplitude, plus noise of 0.1: nearby levels start with nearby embeddings."""
    classes, width = model.embedding.weight.shape
    levels = torch.arange(classes)
    amplitude = fastwave.mulaw_decode(levels, classes=classes).float()
    companded = 2 * levels.float() / (classes - 1) - 1
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(width, generator=g), torch.randn(width, generator=g)
    with torch.no_grad():
        model.embedding.weight.copy_(2 * companded[:, None] * u + 4 * amplitude[:, None] * v
                                     + 0.1 * torch.randn(classes, width, generator=g))


def split_rolls(folder: str, split: str, minutes: float, seed: int, streams, limit=None,
                channels: int = ROLL_CHANNELS, decay: float = ONSET_DECAY) -> list[torch.Tensor]:
    """What a model of ``channels`` local channels reads (fastwave.corpora.score.score_features:
    (channels, F_i)) for each of the split's phrases (file order, as token_split), from its piano
    roll rebuilt from the corpus plan; each must match its rendered stream's length."""
    clips = sorted((c for c in plan_piano(minutes, seed) if c.split == split), key=lambda c: c.name)[:limit]
    if len(clips) != len(streams):
        raise SystemExit(f"{folder}/{split} has {len(streams)} phrases but its plan {len(clips)}: pass --minutes")
    return plan_rolls(clips, streams, "pass --minutes", channels, decay)


def plan_rolls(clips, streams, hint: str, channels: int = ROLL_CHANNELS, decay: float = ONSET_DECAY) -> list[torch.Tensor]:
    """The piano roll of each planned clip (with its onset envelope of time constant ``decay`` if
    ``channels`` is SCORE_CHANNELS), for its rendered token stream (the same order); a stream whose
    length is not the plan's is refused, with ``hint``."""
    rolls = []
    for clip, stream in zip(clips, streams, strict=True):
        if abs(len(stream) - clip.seconds * 16000) > 16:
            raise SystemExit(f"{clip.name}: {len(stream)} samples rendered, {clip.seconds} s planned: {hint}")
        rolls.append(torch.from_numpy(score_features(piano_roll(clip.sources[0].notes, len(stream)), channels, decay)))
    return rolls


DEFAULT_SHAPE = "20/2/64/128/128"


def wavenet_shape(text: str) -> dict:
    """--shape: 'layers/cycles/residual/gate/skip' -> WaveNet keyword arguments (checked by WaveNetConfig too)."""
    names = ("layers", "cycles", "residual_channels", "gate_channels", "skip_channels")
    parts = text.split("/")
    if len(parts) != len(names) or not all(p.isdigit() and 0 < int(p) <= 1024 for p in parts):
        raise argparse.ArgumentTypeError(f"expected five whole numbers in 1-1024, layers/cycles/residual/gate/skip "
                                         f"(e.g. {DEFAULT_SHAPE}), got {text!r}")
    return dict(zip(names, map(int, parts)))


def onset_seconds(text: str) -> float:
    """--onset-envelope / --onset-decay: a time constant in (0, 60] seconds."""
    return number_in(text, 0, 60, "the onset envelope's time constant (seconds)", open_low=True)


def parse_extra_pianos(spec: str | None, flag: str = "--extra-pianos") -> list[tuple[str, int]]:
    """``flag``'s "FONT:PROGRAM,FONT:PROGRAM" -> [(SoundFont path, piano program 0-7)], each font an
    existing file; None or "" -> []."""
    pianos = []
    for item in (spec or "").split(","):
        if not item:
            continue
        font, _, program = item.rpartition(":")
        if not font or not program.isdigit() or not 0 <= int(program) <= 7:
            raise SystemExit(f"{flag}: {item!r} is not FONT:PROGRAM with a piano program 0-7")
        if not os.path.isfile(font):
            raise SystemExit(f"{flag}: no SoundFont at {font}")
        pianos.append((font, int(program)))
    if len(set(pianos)) != len(pianos):
        raise SystemExit(f"{flag} names a piano twice: {spec}")
    return pianos


def extra_plan(record: dict) -> list:
    """One extra piano's training phrases (its record from ``extra_training``), in file order."""
    return plan_piano_phrases(record["phrases"], record["program"], seed=record["phrase_seed"], split="train")


def extra_training(data: str, pianos: list[tuple[str, int]], phrases: int, model) -> tuple[list, list]:
    """Training phrases played by ``pianos`` (``phrases`` each, piano i from phrase_stream(
    EXTRA_PHRASE_SEED + i)), rendered once beside ``data`` -> (token streams, one record per piano)."""
    from fastwave.corpora import SoundFontRenderer

    streams, records = [], []
    for i, (font, program) in enumerate(pianos):
        record = {"soundfont": font, "program": program, "phrase_seed": EXTRA_PHRASE_SEED + i, "phrases": phrases}
        stem = os.path.splitext(os.path.basename(font))[0]
        folder = os.path.join(os.path.dirname(os.path.abspath(data)),
                              f"piano_extra_{stem}_p{program}_{phrases}_seed{record['phrase_seed']}")
        render_once(folder, lambda: extra_plan(record), lambda: SoundFontRenderer([font]), kind="piano",
                    seed=record["phrase_seed"], command=f"plan_piano_phrases({phrases}, {program}, "
                    f"seed={record['phrase_seed']}, split='train') on {font}")
        tokens = token_split(folder, "train", model=model)
        streams += tokens
        records.append({**record, "seconds": sum(len(t) for t in tokens) / 16000, "folder": folder})
    return streams, records


def widened_local(state: dict, model) -> dict:
    """A saved WaveNet's weights for ``model``, whose local projections may read more channels (the
    onset envelope after the roll): the added input columns start at zero, so the widened model
    computes what the saved one did until training moves them."""
    out = dict(state)
    for name, weight in model.state_dict().items():
        if name.endswith("local_proj.weight") and name in out and out[name].shape != weight.shape:
            old = out[name]
            if old.shape[0] != weight.shape[0] or old.shape[1] > weight.shape[1]:
                raise SystemExit(f"--init's {name} is {tuple(old.shape)}, this model's {tuple(weight.shape)}: "
                                 "only added local channels can be filled")
            out[name] = torch.cat([old, old.new_zeros(old.shape[0], weight.shape[1] - old.shape[1], *old.shape[2:])], 1)
    return out


def freeze_all_but_score(model) -> int:
    """Leaves only the local (score) projections trainable (the optimiser skips the rest) -> how many
    parameters were frozen."""
    frozen = 0
    for name, weight in model.named_parameters():
        weight.requires_grad_("local_proj" in name)
        frozen += 0 if weight.requires_grad else weight.numel()
    if frozen == parameters(model):
        raise SystemExit("--train-only score: this model has no local projections to train")
    return frozen


def export_tokens(path: str, corpus: dict, train: list[torch.Tensor], val: list[torch.Tensor],
                  pre_emphasis: float) -> None:
    """Writes the splits' token streams (uint8, joined, with their lengths) and the corpus record to
    ``path`` (.npz): what a machine without the corpus, soundfile or a SoundFont (a lent GPU) trains on."""
    np.savez_compressed(path, corpus=json.dumps(corpus), pre_emphasis=pre_emphasis,
                        **{f"{name}{part}": array for name, streams in (("train", train), ("val", val))
                           for part, array in (("", torch.cat(streams).to(torch.uint8).numpy()),
                                               ("_lengths", np.array([len(x) for x in streams])))})


def load_tokens(path: str, pre_emphasis: float, limit: int) -> tuple[dict, list[torch.Tensor], list[torch.Tensor]]:
    """``export_tokens``'s file -> (corpus record, train streams, the first ``limit`` val streams),
    int64 (T_i,) each; refused if its tokens were made with another pre-emphasis than the model's."""
    with np.load(path) as f:
        if float(f["pre_emphasis"]) != pre_emphasis:
            raise SystemExit(f"{path} holds tokens of pre-emphasis {float(f['pre_emphasis'])}, the model reads "
                             f"{pre_emphasis}: export them again with this --pre-emphasis")
        splits = [[torch.from_numpy(x.astype(np.int64))
                   for x in np.split(f[name], np.cumsum(f[f"{name}_lengths"])[:-1])] for name in ("train", "val")]
        return json.loads(str(f["corpus"])), splits[0], splits[1][:limit]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/piano", help="the piano corpus folder (rendered if missing)")
    parser.add_argument("--minutes", type=float, default=60.0, help="corpus size when rendering it")
    parser.add_argument("--runs", default="runs/piano_score_wavenet", help="checkpoints (resumed if present)")
    parser.add_argument("--out", default="fastwave/assets/piano_wavenet.safetensors")
    parser.add_argument("--record", default="benchmarks/results/piano_model.json")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-phrases", type=int, default=8, help="val phrases scored at each evaluation")
    parser.add_argument("--init", default=None, help="start from this saved WaveNet's weights (e.g. an earlier "
                                                    "run's best.safetensors) instead of random ones")
    parser.add_argument("--ship", choices=["last", "best", "ema"], default="last",
                        help="which weights go to --out: the last (default), "
                             "the best by validation bits per sample (an unheard preset) or, with --ema-decay, "
                             "the moving average of the weights")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="keep a moving average of the weights with this decay per update (e.g. 0.999; "
                             "runs/.../ema.safetensors, scored at each evaluation); may start on a resumed run")
    parser.add_argument("--pre-emphasis", type=float, default=0.85,
                        help="the model reads mu-law of pre-emphasised audio and plays through de-emphasis, "
                             "so its sampling noise falls where a piano is quiet (0: plain mu-law, the first "
                             "shipped model's; fastwave.audio.emphasis)")
    parser.add_argument("--input-noise", type=float, default=0.0,
                        help="std in token levels of the noise added to what the model reads in training, never "
                             "to its targets (train_sample_model's input_noise: noise injection)")
    parser.add_argument("--warmup", type=int, default=200, help="updates of linear warm-up (at most a tenth of --steps)")
    parser.add_argument("--export-tokens", default=None, metavar="NPZ",
                        help="write the train and val tokens (at this --pre-emphasis) and the corpus record to NPZ "
                             "and stop: what --tokens reads on a machine without the corpus (a lent GPU)")
    parser.add_argument("--tokens", default=None, metavar="NPZ",
                        help="train on --export-tokens' file instead of the rendered corpus (the piano rolls are "
                             "rebuilt from the corpus plan, as always)")
    parser.add_argument("--extra-pianos", default=None, metavar="FONT:PROGRAM,...",
                        help="more training pianos, each a SoundFont file and a piano program (0-7) in it")
    parser.add_argument("--extra-phrases", type=int, default=100, help="training phrases each extra piano plays")
    parser.add_argument("--onset-envelope", type=onset_seconds, default=None, metavar="SECONDS",
                        help="the model also reads each key's onset envelope of this time constant "
                             f"(fastwave.corpora.score.score_features, e.g. {ONSET_DECAY}: {SCORE_CHANNELS} local "
                             f"channels, not the roll's {ROLL_CHANNELS}); an --init without it starts with the "
                             "envelope's weights at zero. The model file does not store the time constant (the record and "
                             "the checkpoint do): play another than the default with piano_eval.py --onset-decay")
    parser.add_argument("--train-only", choices=("all", "score"), default="all",
                        help="score: train the local (score) projections alone, every other weight frozen at --init's, "
                             "so the network that plays the samples stays the --init model's (its noise floor) while "
                             "its reading of the score learns")
    parser.add_argument("--pause-at", type=int, default=None, metavar="UPDATE",
                        help="stop after this update (its weights and average in --runs, its record of the "
                             "training so far in --record, nothing in --out), the schedule still planned over "
                             "--steps; the same command without it resumes exactly")
    parser.add_argument("--shape", type=wavenet_shape, default=wavenet_shape(DEFAULT_SHAPE), metavar="L/C/R/G/S",
                        help=f"the WaveNet's layers / cycles / residual / gate / skip channels (default {DEFAULT_SHAPE}, "
                             "the shipped model's): a smaller one generates faster (piano_shape_speed.py)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train_only == "score" and not args.init:
        parser.error("--train-only score needs --init: the frozen weights would be random")
    pianos = parse_extra_pianos(args.extra_pianos)
    if pianos and args.tokens:
        parser.error("--extra-pianos renders audio: export the tokens with it instead of passing --tokens")
    if not 1 <= args.extra_phrases <= 10_000:
        parser.error("--extra-phrases must be in [1, 10000]")
    if args.pause_at is not None and not 1 <= args.pause_at < args.steps:
        parser.error(f"--pause-at must lie in [1, --steps) = [1, {args.steps})")
    if args.pause_at is not None and os.path.isfile(os.path.join(args.runs, HISTORY)):  # said before the data is read
        made = checkpointed_history(args.runs)["step"]
        if args.pause_at <= made:
            parser.error(f"--pause-at {args.pause_at}: {args.runs} has already made {made} updates")
    try:
        fastwave.WaveNetConfig(**args.shape)
    except ValueError as err:
        parser.error(f"--shape: {err}")
    if args.ship == "ema" and args.ema_decay is None:
        parser.error("--ship ema needs --ema-decay (the run's moving average of the weights)")

    started = time.perf_counter()
    corpus = None if args.tokens else ensure_corpus("piano", args.data, args.seed, minutes=args.minutes)
    torch.manual_seed(args.seed)
    # --shape (default 20 layers in 2 cycles, 64 / 128 / 128 channels), reading the roll every ROLL_HOP samples
    channels = ROLL_CHANNELS if args.onset_envelope is None else SCORE_CHANNELS
    decay = args.onset_envelope or ONSET_DECAY
    model = fastwave.WaveNet(local_channels=channels, cond_hop=ROLL_HOP, pre_emphasis=args.pre_emphasis, **args.shape)
    amplitude_embedding_(model, args.seed)
    if args.init:  # ignored when resuming: the checkpoint's weights win
        model.load_state_dict(widened_local(fastwave.load_model(args.init).state_dict(), model))  # this run's config
    frozen = freeze_all_but_score(model) if args.train_only == "score" else 0
    model.to(args.device)
    if args.tokens:
        corpus, train, val = load_tokens(args.tokens, args.pre_emphasis, args.eval_phrases)
        extra = corpus.get("extra_pianos", [])  # their phrases follow the corpus's in the file
        corpus_phrases = len(train) - sum(record["phrases"] for record in extra)
        train, extra_streams = train[:corpus_phrases], train[corpus_phrases:]
    else:
        train = token_split(args.data, "train", model=model)
        val = token_split(args.data, "val", limit=None if args.export_tokens else args.eval_phrases, model=model)
        extra_streams, extra = extra_training(args.data, pianos, args.extra_phrases, model)
    if args.export_tokens:
        export_tokens(args.export_tokens, {**corpus, "extra_pianos": extra}, train + extra_streams, val,
                      args.pre_emphasis)
        print(f"wrote {args.export_tokens}: {len(train) + len(extra_streams)} train and {len(val)} val phrases")
        return 0
    train_rolls = split_rolls(args.data, "train", args.minutes, args.seed, train, channels=channels, decay=decay)
    train_rolls += plan_rolls([clip for record in extra for clip in extra_plan(record)], extra_streams,
                              "the extra pianos' renders are not their plan's", channels, decay)
    train = train + extra_streams
    val_rolls = split_rolls(args.data, "val", args.minutes, args.seed, val, limit=args.eval_phrases, channels=channels,
                            decay=decay)
    try:
        history = train_sample_model(model, train, steps=args.steps, batch_size=args.batch_size,
                                     segment=args.segment, lr=args.lr, warmup=min(args.warmup, args.steps // 10),
                                     seed=args.seed, cond={"local_cond": train_rolls}, eval_tokens=val,
                                     eval_cond={"local_cond": val_rolls}, eval_every=args.eval_every,
                                     checkpoint_dir=args.runs, resume=True, checkpoint_every=100,
                                     input_noise=args.input_noise, ema_decay=args.ema_decay, pause_at=args.pause_at,
                                     settings=resume_settings(args))
        stopped = False
    except KeyboardInterrupt:  # Ctrl-C: the record of the checkpoint a resume continues from
        history, stopped = checkpointed_history(args.runs)["history"], True
    updates = len(history["loss"])
    paused = updates < args.steps  # --pause-at or Ctrl-C: nothing ships, the run goes on later; its record says so
    shipped = model if paused else fastwave.load_model(os.path.join(args.runs, f"{args.ship}.safetensors"))
    if not paused:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        shipped.save(args.out)
    record = {"model": {"type": "wavenet", "parameters": parameters(shipped),
                        "bytes": None if paused else os.path.getsize(args.out), "receptive_field": shipped.receptive_field, "shape": args.shape,
                        "roll": {"channels": channels, "hop": ROLL_HOP, "onset_decay": args.onset_envelope}},
              "data": {"folder": args.tokens or args.data, "corpus": {k: corpus[k] for k in ("seed", "clips", "seconds", "programs")},
                       "extra_pianos": extra, "train_phrases": len(train), "train_samples": sum(len(s) for s in train),
                       "val_phrases_scored": len(val), "val_samples_scored": sum(len(s) for s in val)},
              "training": {"steps": args.steps, "updates": updates, "batch_size": args.batch_size,
                           "segment": args.segment, "lr": args.lr,
                           "warmup": min(args.warmup, args.steps // 10), "pre_emphasis": args.pre_emphasis,
                           "input_noise": args.input_noise, "ema": history.get("ema"),
                           "init": args.init, "shipped_weights": None if paused else args.ship,
                           "train_only": args.train_only, "frozen_parameters": frozen},
              "eval": history["eval"], "best": history.get("best"),
              **run_record(args.seed, args.device, time.perf_counter() - started)}
    with open(args.record, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(json.dumps({k: record[k] for k in ("model", "best")}))  # wall_seconds: this run (resumed runs add up)
    if paused:
        print(f"{'stopped' if stopped else 'paused'} after update {updates} of {args.steps}: its weights are in "
              f"{args.runs} (last / ema .safetensors), its record in {args.record}; the same command "
              f"without --pause-at resumes")
    return 130 if stopped else 0  # a stopped run's exit status stays the shell's for Ctrl-C


def resume_settings(args) -> dict:
    """What the checkpoint keeps of this script's own choices, so that a resume under others is refused
    rather than trained on other inputs: the onset envelope's time constant and --train-only, each only
    where it differs from its default (ONSET_DECAY; all), so that the runs checkpointed before they
    were kept, at the defaults (stages 14-17), still resume."""
    settings = {}
    if args.onset_envelope not in (None, ONSET_DECAY):
        settings["onset_decay"] = args.onset_envelope
    if args.train_only != "all":
        settings["train_only"] = args.train_only
    return settings


def checkpointed_history(runs: str) -> dict:
    """The last checkpoint in ``runs`` (run_training's HISTORY file) -> {"step": updates made,
    "history": the training history}. After Ctrl-C the run checkpoints before it stops (a second
    Ctrl-C stops without one: then the last periodic checkpoint's, what a resume continues from)."""
    path = os.path.join(runs, HISTORY)
    if not os.path.isfile(path):
        raise SystemExit(f"stopped before the first checkpoint: {runs} holds no {HISTORY}, so no record is written")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    return {"step": saved["step"], "history": {k: v for k, v in saved.items() if k not in ("step", "settings")}}


if __name__ == "__main__":
    sys.exit(main())
