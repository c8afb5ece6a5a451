"""The `fastwave` command: the parser and the entry point. Each command group is a module here with
``add_commands(sub, csv_list)`` and ``HANDLERS``: generation (info, generate, bench), codes (the audio
tokenizer and the code LM), tagging (the clip classifiers), corpus, convert (import)."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import codes, convert, corpus, generation, tagging

COMMAND_GROUPS = (generation, codes, tagging, corpus, convert)


def _csv(kind):
    def parse(text):
        try:
            return [kind(item) for item in text.split(",") if item]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastwave", description="Fast generation for sample-level audio models.")
    parser.add_argument("--version", action="version", version=f"fastwave {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    for group in COMMAND_GROUPS:  # in the order --help lists them
        group.add_commands(sub, _csv)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded with benchmark results
    handler = next(group.HANDLERS[args.command] for group in COMMAND_GROUPS if args.command in group.HANDLERS)
    try:
        return handler(args)
    except (ValueError, TypeError) as err:  # bad input: a message, not a traceback
        print(f"fastwave {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
