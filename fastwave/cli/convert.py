"""`fastwave import`: another project's sample model as a fastwave checkpoint.

    fastwave import r9y9 checkpoint_step000100000.pth --hparams hparams.json --out model.safetensors
    fastwave import pytorch-wavenet state_dict.pt --param blocks=4 --out model.safetensors
"""
from __future__ import annotations

import json

from .._files import check_writable


def add_commands(sub, csv_list) -> None:
    imp = sub.add_parser(
        "import", help="import an r9y9/wavenet_vocoder or pytorch-wavenet model (exact, for the fast engines)",
        description="Read another project's WaveNet weights (tensors only: torch.load(weights_only=True)), fold "
                    "its scales and weight norm into fastwave's WaveNet, and save it with model.save(). What "
                    "fastwave cannot represent is refused by name before anything is written. docs/import.md "
                    "says what each project's model becomes.")
    imp.add_argument("kind", choices=["r9y9", "pytorch-wavenet"], help="the source project")
    imp.add_argument("source", help="its state dict or training checkpoint ({'state_dict': ...}), a torch.save file")
    imp.add_argument("--out", required=True, help="the fastwave checkpoint to write (.safetensors)")
    imp.add_argument("--hparams", metavar="JSON", help="its hyper-parameters by its own names, e.g. r9y9's hparams "
                                                       "JSON (r9y9 needs stacks, pytorch-wavenet blocks)")
    imp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="set or override one hyper-parameter (VALUE read as JSON, else as text); repeatable")


def cmd_import(args) -> int:
    from ..convert import import_model

    check_writable(args.out, "--out")
    hparams = {}
    if args.hparams:
        try:
            with open(args.hparams, encoding="utf-8") as f:
                hparams = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"--hparams {args.hparams}: not a readable JSON file ({err})") from None
        if not isinstance(hparams, dict):
            raise ValueError(f"--hparams {args.hparams} holds a {type(hparams).__name__}, not an object of names")
    for item in args.param:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param takes KEY=VALUE, got {item!r}")
        try:
            hparams[key] = json.loads(text)
        except json.JSONDecodeError:
            hparams[key] = text
    model = import_model(args.kind, args.source, hparams)
    model.save(args.out)
    c = model.config
    print(f"imported a {args.kind} WaveNet: {c.layers} layers in {c.cycles} cycles, kernel {c.kernel_size}, "
          f"channels {c.residual_channels}/{c.gate_channels}/{c.skip_channels}, {c.classes} classes, receptive "
          f"field {c.receptive_field}" + (f", {c.global_classes} global ids" if c.global_classes else "")
          + (f", {c.local_channels} local channels per sample" if c.local_channels else "") + f"; wrote {args.out}")
    return 0


HANDLERS = {"import": cmd_import}
