"""A piano WaveNet on the line between a model and its fine-tune (issue 28): WiSE-FT.

A model fine-tuned from another stays in the same basin of the loss, so the weights on the straight
line between the two are good models too, and often better than either at what the fine-tune lost
(Wortsman et al., 2022, "Robust fine-tuning of zero-shot models"; Wortsman et al., 2022, "Model
soups"). Here the base is an earlier model (one that reads the roll alone is widened with zero
weights for the onset envelope, as ``piano_model.py --init`` widens it) and the fine-tune a later
stage trained from it: the fine-tune plays the score better, the base has the lower noise floor.
The model shipped before stage 17 was such a soup: ``--base`` stage 14's weight average, ``--tuned``
stage 15's, ``--alpha 0.5`` (docs/piano_model.md).

    weights = (1 - alpha) * base + alpha * tuned

for every tensor, and ``--alpha-local`` for the local (score) projections alone, so the fine-tune's
reading of the score can be kept whole while the rest of the network moves back toward the base.
Choose alpha on the val phrases (``piano_eval.py --split val``), not the test ones.

    python benchmarks/experiments/piano_soup.py --tuned runs/piano_stage11/last.safetensors \
        --alpha 0.5 --alpha-local 1 --out runs/soup/a0.5.safetensors
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import number_in  # noqa: E402
from fastwave.pretrained import PIANO_WAVENET  # noqa: E402
from piano_model import widened_local  # noqa: E402


def unit_fraction(text: str) -> float:
    """--alpha / --alpha-local: a number in [0, 1]."""
    return number_in(text, 0, 1, "alpha")


def interpolated(base, tuned, alpha: float, alpha_local: float | None = None) -> dict:
    """Two WaveNets of one shape (``tuned`` may read more local channels: the base's missing ones
    count as zero weights) -> the state dict (1 - a) * base + a * tuned, with a = ``alpha_local``
    for the local projections and ``alpha`` for every other tensor. ValueError for models of
    different configurations."""
    alpha_local = alpha if alpha_local is None else alpha_local
    differ = {k for k, v in tuned.config.to_dict().items() if base.config.to_dict().get(k) != v} - {"local_channels"}
    if base.model_type != tuned.model_type or differ:
        raise ValueError(f"the models differ in {sorted(differ) or 'type'}: only a model and its fine-tune interpolate")
    if base.config.local_channels > tuned.config.local_channels:
        raise ValueError(f"the base reads {base.config.local_channels} local channels, the fine-tune "
                         f"{tuned.config.local_channels}: a fine-tune only adds channels")
    start = widened_local(base.state_dict(), tuned)
    out = {}
    for name, weight in tuned.state_dict().items():
        a = alpha_local if "local_proj" in name else alpha
        out[name] = torch.lerp(start[name], weight, a) if weight.is_floating_point() else weight
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=PIANO_WAVENET, help="the model the fine-tune started from (default: the shipped one)")
    parser.add_argument("--tuned", required=True, help="the fine-tuned model (a later stage's weights)")
    parser.add_argument("--alpha", type=unit_fraction, required=True, help="0: the base, 1: the fine-tune")
    parser.add_argument("--alpha-local", type=unit_fraction, default=None,
                        help="alpha for the local (score) projections (default: --alpha)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    tuned = fastwave.load_model(args.tuned)
    try:
        state = interpolated(fastwave.load_model(args.base), tuned, args.alpha, args.alpha_local)
    except ValueError as err:
        raise SystemExit(f"{args.base} and {args.tuned}: {err}") from None
    tuned.load_state_dict(state)
    fastwave.save_checkpoint(tuned, args.out)
    print(f"{args.out}: {1 - args.alpha:g} x {args.base} + {args.alpha:g} x {args.tuned}"
          + ("" if args.alpha_local is None else f" (local projections {args.alpha_local:g})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
