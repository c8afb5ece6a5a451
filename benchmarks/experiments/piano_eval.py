"""How piano-like the shipped piano WaveNet sounds, in numbers and in the picture of docs/piano_model.md.

For held-out phrases of the piano corpus (test split: scores the model never saw, played by the test
preset, which in FluidR3_GM is a training preset's samples 6.3 dB louder: docs/corpora.md), the
model plays each phrase's score (its piano roll, fastwave.corpora.score) with the C++ engine, and the
result is compared with the real recording of that phrase:

- spectral flatness (fastwave.audio.measures): about 0.002 for real piano, 1 for white noise;
- pitch-class agreement: the mean cosine of the 12-bin chroma of the generated and the real audio,
  frame by frame, against the same for the real audio of another phrase (chance level);
- RMS level;
- with ``--other-pianos``, the same measures of the scores played by other real pianos (other
  SoundFonts' or programs' samples): how far a real piano of another timbre agrees, the ceiling;
- the C++ engine's speed playing them (seconds of audio per second; time it on an idle machine).

``--split random`` plays instead what `fastwave generate` plays: random scores 0, 1, ...
(fastwave.corpora.score.random_score, ``--seconds`` each), against the test preset's real render of
each score (the corpus's SoundFont): the default output's figures, beside the held-out phrases'.

It also draws benchmarks/results/piano_spectrograms.png: the real phrase, the model playing its
score, and what `fastwave generate --seconds 4` writes (random score 0).

    python benchmarks/experiments/piano_eval.py [--model fastwave/assets/piano_wavenet.safetensors] [--seeds 0,1,2] [--wav-dir docs/audio]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import json_interval, run_record  # noqa: E402
from piano_model import onset_seconds, parse_extra_pianos  # noqa: E402
from fastwave.corpora.piano import plan_piano  # noqa: E402
from fastwave.corpora.plans import PIANO_SPLITS, Clip, Source  # noqa: E402
from fastwave.audio import log_spectrogram  # noqa: E402
from fastwave.audio.measures import chroma_agreement, spectral_flatness  # noqa: E402
from fastwave.corpora.score import (ONSET_DECAY, ROLL_CHANNELS, SCORE_CHANNELS, piano_roll, random_score,  # noqa: E402
                                    score_features)
from fastwave.engines.cpu_native import engine_threads  # noqa: E402
from fastwave.pretrained import PIANO_WAVENET, piano_cond  # noqa: E402
from fastwave.training.intervals import t_interval  # noqa: E402


def draw(panels, sample_rate: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), sharey=True)
    for ax, (title, audio) in zip(axes, panels):
        spec = 20 / np.log(10) * log_spectrogram(audio, n_fft=1024, hop_length=128, eps=1e-6).numpy()  # dB
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 80, vmax=spec.max(),
                  extent=[0, len(audio) / sample_rate, 0, sample_rate / 2000])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seconds")
    axes[0].set_ylabel("kHz")
    axes[0].set_ylim(0, 4)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def held_out_phrases(data: str, minutes: float, phrases: int, samples: int, rate: int, split: str = "test",
                     channels: int = ROLL_CHANNELS, decay: float = ONSET_DECAY):
    """The first ``phrases`` phrases of ``split`` (test, or val to choose checkpoints without the test
    phrases) of the piano corpus rendered in ``data`` (name order), each cut to ``samples``: ->
    [(name, real audio (T,) float32, its score (1, channels, F))], the score as a model of ``channels``
    local channels reads it (fastwave.corpora.score.score_features: the roll, or the roll and its
    onset envelope of time constant ``decay``). The scores come from the corpus's plan
    (``held_out_clips``). ``split`` random: random scores 0 .. phrases - 1 (``random_score_clips``),
    their real audio rendered by the corpus's test preset."""
    clips = held_out_clips(data, minutes, phrases, split, samples / rate)
    renderer, gain_db = random_render(data, rate) if split == "random" else (None, 0.0)
    out = []
    for clip in clips:
        if renderer is None:
            real, _ = fastwave.load_audio(os.path.join(data, split, clip.name + ".wav"), sample_rate=rate)
        else:
            real = renderer.render(clip, gain_db=gain_db)
        real = np.asarray(real).reshape(-1)[:samples]
        roll = piano_roll(clip.sources[0].notes, len(real), rate)
        out.append((clip.name, real, torch.from_numpy(score_features(roll, channels, decay))[None]))
    return out


def random_score_clips(phrases: int, seconds: float) -> list:
    """What ``fastwave generate --seconds`` plays on ``--seed`` 0 .. phrases - 1 (random_score), as clips
    of the corpus's test preset (FluidR3_GM's program 1), named random_score_<seed>."""
    program = PIANO_SPLITS["test"][0]
    return [Clip(f"random_score_{seed}", seconds, (Source(program, random_score(seconds, seed)),), ("Piano",), "random")
            for seed in range(phrases)]


def random_render(data: str, rate: int):
    """The piano corpus in ``data`` -> (its renderer, its gain in dB): its corpus.json's SoundFont and
    level, so that the real side of --split random is rendered as the corpus's phrases were."""
    from fastwave.corpora import SoundFontRenderer

    corpus = piano_corpus(data)
    if not corpus.get("soundfont") or "gain_db" not in corpus:
        raise SystemExit(f"{data}/corpus.json names no soundfont or gain_db: --split random renders as the corpus did")
    return SoundFontRenderer([corpus["soundfont"]], sample_rate=rate), float(corpus["gain_db"])


def piano_corpus(data: str) -> dict:
    """The corpus.json of the piano corpus rendered in ``data``; another kind of corpus is refused."""
    with open(os.path.join(data, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    if corpus.get("kind") != "piano":
        raise SystemExit(f"{data} holds a {corpus.get('kind')!r} corpus, not the piano corpus: pass another --data")
    return corpus


def held_out_clips(data: str, minutes: float, phrases: int, split: str = "test", seconds: float = 4.0) -> list:
    """The plan of the first ``phrases`` phrases of ``split`` of the piano corpus rendered in ``data``
    (name order), rebuilt with the seed it was rendered with (its corpus.json), never a caller's sampling
    seed: another plan would pair the WAVs with other notes. ``split`` random: ``random_score_clips``
    of ``seconds``."""
    if split == "random":
        if not 1 <= phrases <= 1000:
            raise SystemExit(f"--phrases must be 1 to 1000 random scores, got {phrases}")
        return random_score_clips(phrases, seconds)
    corpus = piano_corpus(data)
    if split not in ("test", "val"):
        raise SystemExit(f"--split must be test, val (the phrases no model trains on) or random, got {split!r}")
    clips = sorted((c for c in plan_piano(minutes, corpus["seed"]) if c.split == split), key=lambda c: c.name)
    if len(clips) != corpus["clips"].get(split):
        raise SystemExit(f"{data} holds {corpus['clips'].get(split)} {split} phrases, the {minutes:g}-minute plan "
                         f"{len(clips)}: pass the --minutes it was rendered with")
    if not 1 <= phrases <= len(clips):
        raise SystemExit(f"--phrases must be 1 to the corpus's {len(clips)} {split} phrases, got {phrases}")
    return clips[:phrases]


def other_pianos(clips, reals, pianos: list[tuple[str, int]], rate: int) -> list[dict]:
    """The held-out phrases' scores played by other real pianos (SoundFont, program), against the
    real recordings (``reals``, one per clip): what a real piano of another timbre scores on the
    same measures, the ceiling the model's chroma agreement is read against."""
    from fastwave.corpora import SoundFontRenderer

    out = []
    for font, program in pianos:
        renderer = SoundFontRenderer([font], sample_rate=rate)
        played = [renderer.render(dataclasses.replace(clip, sources=tuple(
            dataclasses.replace(source, program=program) for source in clip.sources)))[:len(real)]
                  for clip, real in zip(clips, reals)]
        chroma = [chroma_agreement(audio, real) for audio, real in zip(played, reals)]
        out.append({"soundfont": font, "program": program, "chroma": chroma, "chroma_mean": float(np.mean(chroma)),
                    "median_flatness": float(np.median([spectral_flatness(audio) for audio in played]))})
        print(f"{os.path.basename(font)} program {program}: chroma agreement {np.mean(chroma):.3f}, "
              f"median flatness {out[-1]['median_flatness']:.4f}", flush=True)
    return out


def seed_list(text: str) -> list[int]:
    """--seeds: "0,1,2" -> [0, 1, 2] (distinct non-negative ints)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated ints, got {text!r}") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct non-negative ints, got {text!r}")
    return seeds


def seed_figures(rows: list[dict], seeds: list[int]) -> dict:
    """Each seed's median flatness and mean chroma agreement and RMS over the phrases, and the mean of
    those over the seeds with a 95% t-interval (a draw is a draw: one seed's figures move by more
    than the models compared differ)."""
    by_seed = []
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed]
        by_seed.append({"seed": seed, "median_flatness_generated": float(np.median([r["flatness_generated"] for r in mine])),
                        "chroma_generated": float(np.mean([r["chroma_generated"] for r in mine])),
                        "rms_generated": float(np.mean([r["rms_generated"] for r in mine]))})
    over = {k: json_interval(t_interval([s[k] for s in by_seed])) for k in by_seed[0] if k != "seed"}  # 1 seed: None
    return {"by_seed": by_seed, "over_seeds": over}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=PIANO_WAVENET)
    parser.add_argument("--data", default="data/piano", help="the rendered piano corpus")
    parser.add_argument("--minutes", type=float, default=60.0, help="the corpus's size (to rebuild its plan)")
    parser.add_argument("--phrases", type=int, default=6, help="held-out phrases played")
    parser.add_argument("--split", default="test", choices=("test", "val", "random"),
                        help="whose phrases: test (the figures reported), val (the unheard val preset: choose "
                             "checkpoints there, so the test phrases stay unselected-on), or random (what "
                             "fastwave generate plays: random scores 0, 1, ..., against the test preset's render)")
    parser.add_argument("--seconds", type=float, default=4.0, help="of each phrase")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--figure", default="benchmarks/results/piano_spectrograms.png")
    parser.add_argument("--record", default="benchmarks/results/piano_model_audio.json")
    parser.add_argument("--threads", type=int, default=None,
                        help="of the C++ engine (default: physical cores); recorded, since another count adds the "
                             "threads' partial sums in another order and a long phrase can part at a rounding "
                             "boundary (docs/generation.md)")
    parser.add_argument("--wav-dir", default=None, help="also write the first phrase, real and played, as "
                                                          "piano_real.wav and piano_generated.wav here (docs/audio)")
    parser.add_argument("--seeds", type=seed_list, default=[0],
                        help="sampling seeds, comma-separated (the phrases are the corpus's): each plays every "
                             "phrase; the record has each seed's figures and their interval; the first seed "
                             "draws the figure and the WAV")
    parser.add_argument("--other-pianos", default=None, metavar="FONT:PROGRAM,...",
                        help="also play the phrases' scores with these real pianos (e.g. "
                             "/usr/share/sounds/sf2/TimGM6mb.sf2:0): the ceiling of chroma agreement")
    parser.add_argument("--onset-decay", type=onset_seconds, default=ONSET_DECAY,
                        help="the onset envelope's time constant (seconds) that a model reading it was trained with "
                             "(piano_model.py --onset-envelope)")
    args = parser.parse_args(argv)
    pianos = parse_extra_pianos(args.other_pianos, "--other-pianos")

    started = time.perf_counter()
    model = fastwave.load_model(args.model).eval()
    rate = model.sample_rate
    n = round(args.seconds * rate)
    channels = model.config.local_channels  # the roll, or the roll and its onset envelope
    phrases = held_out_phrases(args.data, args.minutes, args.phrases, n, rate, args.split, channels, args.onset_decay)
    real_measures = []  # of each real phrase, whatever the seed; "another phrase": the next one's, same length cut
    for index, (_, real, _) in enumerate(phrases):
        other = phrases[(index + 1) % len(phrases)][1]
        m = min(len(other), len(real))
        real_measures.append({"flatness_real": spectral_flatness(real), "rms_real": float(real.std()),
                              "chroma_other_phrase": chroma_agreement(other[:m], real[:m])})
    rows, generating = [], 0.0
    for seed in args.seeds:
        for index, (name, real, roll) in enumerate(phrases):
            tick = time.perf_counter()
            tokens = fastwave.generate(model, len(real), cond={"local_cond": roll}, seed=seed, engine="cpu",
                                       temperature=args.temperature, threads=args.threads)
            generating += time.perf_counter() - tick
            rows.append({"seed": seed, "phrase": name, "index": index, "real": real,
                         "generated": model.tokens_to_audio(tokens[0]).numpy()})
    for row in rows:
        row.update(real_measures[row["index"]], flatness_generated=spectral_flatness(row["generated"]),
                   chroma_generated=chroma_agreement(row["generated"], row["real"]),
                   rms_generated=float(row["generated"].std()))
    keys = ["flatness_generated", "flatness_real", "chroma_generated", "chroma_other_phrase", "rms_generated",
            "rms_real"]
    first = args.seeds[0]
    what = "the test preset's render" if args.split == "random" else "held-out phrase"
    panels = [(f"real: {rows[0]['phrase']} ({what})", rows[0]["real"]),
              ("the model playing that phrase's score", rows[0]["generated"])]
    # with --split random the second panel is already a random score played as generate plays it
    if args.split != "random":
        roll = piano_cond(n, [first], rate, ROLL_CHANNELS)["local_cond"].numpy()  # as this model reads it
        cond = {"local_cond": torch.from_numpy(score_features(roll, channels, args.onset_decay))}
        default = model.tokens_to_audio(fastwave.generate(model, n, cond=cond, seed=first,
                                                          engine="cpu", threads=args.threads)[0]).numpy()
        panels.append((f"fastwave generate --seconds {args.seconds:g} (random score {first})", default))
    draw(panels, rate, args.figure)
    if args.wav_dir:  # the first phrase, real and played, for a reader to listen to
        os.makedirs(args.wav_dir, exist_ok=True)
        for name, audio in (("piano_real.wav", rows[0]["real"]), ("piano_generated.wav", rows[0]["generated"])):
            fastwave.save_audio(os.path.join(args.wav_dir, name), audio, rate)
    played = sum(len(r["real"]) for r in rows)
    others = (other_pianos(held_out_clips(args.data, args.minutes, args.phrases, args.split, args.seconds),
                           [p[1] for p in phrases],
                           pianos, rate) if pianos else [])
    record = {"model": os.path.relpath(args.model), "split": args.split, "seeds": args.seeds,
              "local_channels": channels, "onset_decay": args.onset_decay if channels == SCORE_CHANNELS else None,
              "phrases": [{k: r[k] for k in ["seed", "phrase"] + keys} for r in rows],
              # over every phrase of every seed
              "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
              "median_flatness": {k: float(np.median([r[k] for r in rows])) for k in ("flatness_generated", "flatness_real")},
              **seed_figures(rows, args.seeds),
              "speed": {"engine": "cpu", "threads": engine_threads(args.threads), "samples": played,
                        "seconds": round(generating, 2),
                        "real_time_factor": round(played / rate / generating, 2),
                        "load_average_1min_after": round(os.getloadavg()[0], 2)},
              "seconds_per_phrase": args.seconds, "temperature": args.temperature,
              **({"other_pianos": others} if others else {}),
              **run_record(first, "cpu", time.perf_counter() - started)}
    with open(args.record, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record["mean"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
