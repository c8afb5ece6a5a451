"""Train the piano WaveNet that `fastwave generate` ships with.

Renders the piano corpus (``fastwave corpus piano``) if its folder is missing, mu-law encodes the
train and val phrases and rebuilds the piano roll of each from the corpus plan
(fastwave.corpora.score), trains a score-conditioned WaveNet by teacher forcing
(fastwave.training.sample_models.train_sample_model, with checkpoints: an interrupted run resumes where it stopped),
and writes the last weights (--ship best: the best by validation bits per sample) plus a JSON
record (command, seed, data size, machine, wall time, the evaluations).

Why a score: an unconditioned WaveNet of this size, after 2,700 updates on this corpus, still made
noise with faint tones (spectral flatness 0.05-0.08 against 0.002 for the real phrases). Told which keys are struck, the model only has to learn how a piano sounds, not
also when and what it plays, which is what MIDI-conditioned WaveNets do (Hawthorne et al., 2019).

The token embedding starts as a linear function of each level's amplitude (plus small noise) rather
than at random, so the first layer reads the waveform's values from the first step: over 300 updates
on this corpus that gave a training loss of 3.36 against 3.46 nats, validation 5.71 against 6.25 bits.

    python benchmarks/experiments/piano_model.py --steps 4000 --lr 1e-3 --eval-every 500   # the shipped model, CPU
    python benchmarks/experiments/piano_model.py --steps 40000 --lr 1e-3 --minutes 240 --data data/piano_240 \
        --runs runs/piano_240 --device cuda                                                 # larger
    python benchmarks/experiments/piano_model.py --pre-emphasis 0 --export-tokens data/piano_tokens.npz
        # the tokens for a machine without the corpus: --tokens (benchmarks/gpu_piano_training.sh)
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
from _common import ensure_corpus, parameters, run_record, token_split  # noqa: E402
from fastwave.corpora.piano import plan_piano  # noqa: E402
from fastwave.corpora.score import ROLL_CHANNELS, ROLL_HOP, piano_roll  # noqa: E402
from fastwave.training.sample_models import train_sample_model  # noqa: E402


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


def split_rolls(folder: str, split: str, minutes: float, seed: int, streams, limit=None) -> list[torch.Tensor]:
    """The piano roll (ROLL_CHANNELS, F_i) of each of the split's phrases (file order, as token_split),
    rebuilt from the corpus plan; each must match its rendered stream's length."""
    clips = sorted((c for c in plan_piano(minutes, seed) if c.split == split), key=lambda c: c.name)[:limit]
    if len(clips) != len(streams):
        raise SystemExit(f"{folder}/{split} has {len(streams)} phrases but its plan {len(clips)}: pass --minutes")
    rolls = []
    for clip, stream in zip(clips, streams):
        if abs(len(stream) - clip.seconds * 16000) > 16:
            raise SystemExit(f"{clip.name}: {len(stream)} samples rendered, {clip.seconds} s planned: pass --minutes")
        rolls.append(torch.from_numpy(piano_roll(clip.sources[0].notes, len(stream))))
    return rolls


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
                        help="which weights go to --out: the last (default; the shipped model's, see docs/piano_model.md), "
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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.ship == "ema" and args.ema_decay is None:
        parser.error("--ship ema needs --ema-decay (the run's moving average of the weights)")

    started = time.perf_counter()
    corpus = None if args.tokens else ensure_corpus("piano", args.data, args.seed, minutes=args.minutes)
    torch.manual_seed(args.seed)
    # 20 layers in 2 cycles, 64 / 128 / 128 channels, reading the roll every ROLL_HOP samples
    model = fastwave.WaveNet(local_channels=ROLL_CHANNELS, cond_hop=ROLL_HOP, pre_emphasis=args.pre_emphasis)
    amplitude_embedding_(model, args.seed)
    if args.init:  # ignored when resuming: the checkpoint's weights win
        model.load_state_dict(fastwave.load_model(args.init).state_dict())  # its weights, this run's config
    model.to(args.device)
    if args.tokens:
        corpus, train, val = load_tokens(args.tokens, args.pre_emphasis, args.eval_phrases)
    else:
        train = token_split(args.data, "train", model=model)
        val = token_split(args.data, "val", limit=None if args.export_tokens else args.eval_phrases, model=model)
    if args.export_tokens:
        export_tokens(args.export_tokens, corpus, train, val, args.pre_emphasis)
        print(f"wrote {args.export_tokens}: {len(train)} train and {len(val)} val phrases")
        return 0
    train_rolls = split_rolls(args.data, "train", args.minutes, args.seed, train)
    val_rolls = split_rolls(args.data, "val", args.minutes, args.seed, val, limit=args.eval_phrases)
    history = train_sample_model(model, train, steps=args.steps, batch_size=args.batch_size, segment=args.segment,
                                 lr=args.lr, warmup=min(args.warmup, args.steps // 10), seed=args.seed,
                                 cond={"local_cond": train_rolls}, eval_tokens=val,
                                 eval_cond={"local_cond": val_rolls}, eval_every=args.eval_every,
                                 checkpoint_dir=args.runs, resume=True, checkpoint_every=100,
                                 input_noise=args.input_noise, ema_decay=args.ema_decay)
    shipped = fastwave.load_model(os.path.join(args.runs, f"{args.ship}.safetensors"))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    shipped.save(args.out)
    record = {"model": {"type": "wavenet", "parameters": parameters(shipped), "bytes": os.path.getsize(args.out),
                        "receptive_field": shipped.receptive_field,
                        "roll": {"channels": ROLL_CHANNELS, "hop": ROLL_HOP}},
              "data": {"folder": args.tokens or args.data, "corpus": {k: corpus[k] for k in ("seed", "clips", "seconds", "programs")},
                       "train_phrases": len(train), "train_samples": sum(len(s) for s in train),
                       "val_phrases_scored": len(val), "val_samples_scored": sum(len(s) for s in val)},
              "training": {"steps": args.steps, "batch_size": args.batch_size, "segment": args.segment, "lr": args.lr,
                           "warmup": min(args.warmup, args.steps // 10), "pre_emphasis": args.pre_emphasis,
                           "input_noise": args.input_noise, "ema": history.get("ema"),
                           "init": args.init, "shipped_weights": args.ship},
              "eval": history["eval"], "best": history.get("best"),
              **run_record(args.seed, args.device, time.perf_counter() - started)}
    with open(args.record, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(json.dumps({k: record[k] for k in ("model", "best")}))  # wall_seconds: this run (resumed runs add up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
