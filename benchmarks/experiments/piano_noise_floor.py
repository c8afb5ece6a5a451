"""What the piano model's flatness target asks of its sampling (issue 28), on the phrases piano_eval.py plays.

Spectral flatness (fastwave.audio.measures) of each held-out phrase (the test preset, cut as
piano_eval cuts it):
- as rendered, and after the 8-bit mu-law round trip that the model's tokens impose;
- with every token moved by uniform noise of +-k levels (log2(2k + 1) bits a sample): the noise a
  model's sampling adds, without its other errors; in plain mu-law and in the pre-emphasised domain
  played back through de-emphasis (LPCNet's noise shaping, --pre-emphasis). In plain mu-law also
  its chroma agreement with the phrase (piano_eval's measure): what that much noise alone costs it.
And for a model (default: the shipped one) playing each phrase's score with the C++ engine, as
piano_eval does:
- the mean entropy of its next-sample distributions over what it played (bits / sample: how widely it
  draws; one teacher-forced pass over its own tokens gives the distributions it sampled from, up
  to float rounding);
- its bits / sample on the real phrase (teacher forced, every target on its whole receptive field),
  and the flatness and chroma agreement of what it played.

    python benchmarks/experiments/piano_noise_floor.py [--model PATH] [--record benchmarks/results/piano_noise_floor.json]
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
from _common import run_record  # noqa: E402
from fastwave.audio import de_emphasis, mulaw_decode, mulaw_encode, pre_emphasis  # noqa: E402
from fastwave.audio.measures import chroma_agreement, spectral_flatness  # noqa: E402
from fastwave.engines.cpu_native import engine_threads  # noqa: E402
from fastwave.pretrained import PIANO_WAVENET  # noqa: E402
from fastwave.training.evaluation import evaluate_sample_model  # noqa: E402
from piano_eval import held_out_phrases  # noqa: E402

NOISE_LEVELS = (1, 2, 3, 4, 6, 8)


def noisy_round_trip(real: np.ndarray, k: int, emphasis: float, rng) -> np.ndarray:
    """real (T,) -> its 8-bit mu-law tokens (of the pre-emphasised audio when ``emphasis``), each moved
    by a uniform draw of -k..k levels (k = 0: none), decoded back to audio (T,)."""
    tokens = np.asarray(mulaw_encode(pre_emphasis(real, emphasis)))
    if k:
        tokens = np.clip(tokens + rng.integers(-k, k + 1, size=tokens.shape), 0, 255)
    return np.asarray(de_emphasis(np.asarray(mulaw_decode(tokens)), emphasis))


def model_playing(model, real: np.ndarray, roll: torch.Tensor, seed: int, threads) -> dict:
    """The model plays ``roll`` for len(real) samples -> its entropy over its own draws, its bits on the
    real phrase, and the flatness and chroma agreement of what it played."""
    played = fastwave.generate(model, len(real), cond={"local_cond": roll}, seed=seed, engine="cpu",
                               threads=threads)
    with torch.no_grad():
        logp = torch.log_softmax(model(played, local_cond=roll).double(), dim=1)  # (1, classes, T)
    entropy_bits = float(-(logp.exp() * logp).sum(1).mean()) / np.log(2)
    real_tokens = torch.as_tensor(np.asarray(model.audio_to_tokens(real)))
    # burn-in = receptive field: every target scored on its whole past window (and a multiple of the
    # roll's hop, so that windows start on a frame)
    hop = model.config.cond_hop
    burn_in = -(-model.receptive_field // hop) * hop
    real_bits = evaluate_sample_model(model, real_tokens, segment=2 * burn_in, burn_in=burn_in,
                                      cond={"local_cond": [roll[0]]})["bits_per_sample"]
    audio = model.tokens_to_audio(played[0]).numpy()
    return {"entropy_bits_own_draws": entropy_bits, "bits_on_real": real_bits,
            "flatness_played": spectral_flatness(audio), "chroma_played": chroma_agreement(audio, real)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=PIANO_WAVENET)
    parser.add_argument("--data", default="data/piano", help="the rendered piano corpus")
    parser.add_argument("--minutes", type=float, default=60.0, help="the corpus's size (to rebuild its plan)")
    parser.add_argument("--phrases", type=int, default=6, help="held-out phrases (piano_eval's)")
    parser.add_argument("--seconds", type=float, default=4.0, help="of each phrase")
    parser.add_argument("--pre-emphasis", type=float, default=0.85, help="the shaped domain's coefficient")
    parser.add_argument("--threads", type=int, default=None, help="of the C++ engine (default: physical cores)")
    parser.add_argument("--record", default="benchmarks/results/piano_noise_floor.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = fastwave.load_model(args.model).eval()
    rate = model.sample_rate
    phrases = held_out_phrases(args.data, args.minutes, args.phrases, round(args.seconds * rate), rate, "test",
                               model.config.local_channels)
    rng = np.random.default_rng(args.seed)
    rows = []
    for name, real, roll in phrases:
        row = {"phrase": name, "real": spectral_flatness(real)}
        for domain, emphasis in (("mulaw", 0.0), ("pre_emphasis", args.pre_emphasis)):
            for k in (0,) + NOISE_LEVELS:
                noisy = noisy_round_trip(real, k, emphasis, rng)
                row[f"{domain}_pm{k}"] = spectral_flatness(noisy)
                if not emphasis:
                    row[f"chroma_{domain}_pm{k}"] = chroma_agreement(noisy, real)
        row.update(model_playing(model, real, roll, args.seed, args.threads))
        rows.append(row)
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
    keys = [k for k in rows[0] if k != "phrase"]
    record = {"model": os.path.relpath(args.model), "phrases": rows,
              "median": {k: float(np.median([r[k] for r in rows])) for k in keys},
              "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
              "noise_bits": {f"pm{k}": float(np.log2(2 * k + 1)) for k in NOISE_LEVELS},
              "seconds_per_phrase": args.seconds, "pre_emphasis": args.pre_emphasis,
              "threads": engine_threads(args.threads),
              **run_record(args.seed, "cpu", time.perf_counter() - started)}
    os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
    with open(args.record, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record["median"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
