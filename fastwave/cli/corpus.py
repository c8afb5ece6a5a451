"""`fastwave corpus`: render a real-instrument corpus from a General MIDI SoundFont.

    fastwave corpus notes --out data/notes --count 4000 [--seconds 2]
    fastwave corpus mixtures --out data/mixtures --count 4000
    fastwave corpus phrases --out data/phrases --count 2000 [--seconds 5]
    fastwave corpus piano --out data/piano --minutes 60
"""
from __future__ import annotations

import json
import shlex


def add_commands(sub, csv_list) -> None:
    corpus = sub.add_parser(
        "corpus", help="render a corpus (notes, mixtures, phrases or piano) from a General MIDI SoundFont",
        description="Render a corpus deterministically from --seed: 'notes' (NSynth-like single notes "
                    "labelled by GM family), 'mixtures' (1-3 families per clip, multi-label), 'phrases' "
                    "(5 s solo melodies, one program each, labelled by family: for pretraining) or 'piano' "
                    "(phrases for sample models). Writes OUT/<split>/<clip>.wav (16-bit), OUT/labels.csv "
                    "(fname,labels,split) and OUT/corpus.json. Splits hold out whole GM programs. Needs "
                    "tinysoundfont (pip install --no-deps tinysoundfont) and a SoundFont (default: "
                    "FluidR3_GM from Debian's fluid-soundfont-gm).")
    corpus.add_argument("kind", choices=["notes", "mixtures", "phrases", "piano"])
    corpus.add_argument("--out", required=True, help="output folder: new or empty")
    corpus.add_argument("--count", type=int, default=None, help="clips, notes / mixtures / phrases (default 1000)")
    corpus.add_argument("--seconds", type=float, default=None,
                        help="clip length: notes 1 or 2 (default 1), mixtures (default 1), phrases 1-30 (default 5)")
    corpus.add_argument("--minutes", type=float, default=None, help="piano: total length (default 10)")
    corpus.add_argument("--soundfont", default=None, help="an .sf2 file (default /usr/share/sounds/sf2/FluidR3_GM.sf2)")
    corpus.add_argument("--sample-rate", type=int, default=16000)
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_corpus(args) -> int:
    from ..corpora import SoundFontRenderer, plan_corpus, write_corpus

    clips = plan_corpus(args.kind, seed=args.seed, count=args.count, minutes=args.minutes, seconds=args.seconds)
    try:
        renderer = SoundFontRenderer(args.soundfont, args.sample_rate)
    except ImportError as err:  # a missing optional dependency: a message, not a traceback
        raise ValueError(str(err)) from err
    record = write_corpus(clips, args.out, renderer, kind=args.kind, seed=args.seed,
                          command=shlex.join(["fastwave", *args.argv]), progress=not args.quiet)
    print(json.dumps({k: record[k] for k in ("kind", "clips", "seconds", "wall_seconds")}))
    return 0


HANDLERS = {"corpus": cmd_corpus}
