"""Activation memory a WaveNet keeps for its backward: the fused block (fastwave.ops.wavenet_block)
against the torch composition, counted exactly with torch's saved-tensor hooks (parameters left out).

    TRITON_INTERPRET=1 python benchmarks/wavenet_saved_activations.py   # CPU: kernels in the interpreter
    python benchmarks/wavenet_saved_activations.py --device cuda

A count of bytes, not a timing: the same on every machine for a given dtype.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from fastwave import WaveNet, ops  # noqa: E402


def saved_bytes(model, tokens, fused: bool) -> int:
    """Bytes of the distinct non-parameter storages autograd saves during one trunk forward."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.fused = fused
    with ops.backend("triton" if fused else "torch"), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.trunk(tokens)
    return sum(storages.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--length", type=int, default=256, help="time steps (the count scales linearly)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("on the CPU the fused kernels need TRITON_INTERPRET=1 (Triton's interpreter)")
    torch.manual_seed(0)
    model = WaveNet().to(args.device)  # the default: 20 layers, residual 64, gate 128, skip 128
    tokens = torch.randint(0, 256, (1, args.length), device=args.device)
    fused, composition = (saved_bytes(model, tokens, f) / tokens.numel() for f in (True, False))
    result = dict(command="python " + " ".join(sys.argv), model="default WaveNet trunk (20 layers), fp32",
                  fused_bytes_per_step=fused, composition_bytes_per_step=composition, ratio=composition / fused,
                  at_batch8_length16384_mb=dict(fused=fused * 8 * 16384 / 1e6, composition=composition * 8 * 16384 / 1e6))
    print(f"activations saved for the backward, per time step: fused {fused:.0f} B, torch composition "
          f"{composition:.0f} B ({composition / fused:.1f}x); at B=8, T=16384: {result['at_batch8_length16384_mb']['fused']:.0f}"
          f" MB vs {result['at_batch8_length16384_mb']['composition']:.0f} MB")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
