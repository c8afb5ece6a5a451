"""What the experiment scripts share: the corpus they read (rendered when missing), its mu-law
token streams, and the record every result carries (command, seed, machine, wall time)."""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shlex
import shutil
import sys

import torch

import fastwave


def ensure_corpus(kind: str, folder: str, seed: int, **size) -> dict:
    """Renders ``fastwave corpus KIND`` into ``folder`` unless it is there -> its corpus.json."""
    if not os.path.isfile(os.path.join(folder, "corpus.json")):
        from fastwave.cli import main

        flags = [f"--{name}={value}" for name, value in size.items()]
        if main(["corpus", kind, "--out", folder, "--seed", str(seed), *flags]) != 0:
            raise SystemExit(f"could not render the {kind} corpus into {folder}")
    with open(os.path.join(folder, "corpus.json"), encoding="utf-8") as f:
        record = json.load(f)
    clips, seconds = sum(record["clips"].values()), sum(record["seconds"].values())
    if (record["kind"] != kind or record["seed"] != seed or ("count" in size and clips != size["count"])
            or ("minutes" in size and not 0 <= seconds - 60 * size["minutes"] < 30)):
        raise SystemExit(f"{folder} holds a different corpus ({record['kind']}, seed {record['seed']}, {clips} clips, "
                         f"{seconds:.0f} s) than asked for ({kind}, seed {seed}, {size}): pass another --data")
    return record


def render_once(folder: str, plan, make_renderer, *, kind: str, seed: int, command: str) -> str:
    """Renders the clips ``plan()`` returns into ``folder`` with ``make_renderer()`` (built only
    then: loading a SoundFont takes a while) unless a finished render is there -> folder. A render
    cut short (left in folder.partial) is redone, never read."""
    from fastwave.corpora import write_corpus

    if not os.path.isfile(os.path.join(folder, "corpus.json")):
        partial = folder + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        write_corpus(plan(), partial, make_renderer(), kind=kind, seed=seed, command=command, progress=False)
        os.replace(partial, folder)
    return folder


def add_run_flags(parser) -> None:
    """The flags every experiment takes: --scale, --device, --seed."""
    parser.add_argument("--scale", type=float, default=1.0, help="grows the data and the training")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)


def clip_corpus(kind: str, args, clips: int = 2000) -> dict:
    """The notes or mixtures corpus of ``clips`` x ``args.scale`` clips (at least 200) in ``args.data``
    (default data/<kind>_<count>, set on ``args``), rendered if missing -> its corpus.json."""
    count = max(200, round(clips * args.scale))
    args.data = args.data or f"data/{kind}_{count}"
    return ensure_corpus(kind, args.data, args.seed, count=count)


def token_split(folder: str, split: str, classes: int = 256, limit: int | None = None,
                model=None) -> list[torch.Tensor]:
    """The mu-law tokens (int64 (T_i,)) of the split's files, in file order (the first ``limit``);
    with a ``model``, the tokens it reads (``SampleModel.audio_to_tokens``: its classes and
    pre-emphasis)."""
    paths = sorted(glob.glob(os.path.join(folder, split, "*.wav")))[:limit]
    if not paths:
        raise SystemExit(f"no {split} audio under {folder}")
    streams = []
    for path in paths:
        audio, _ = fastwave.load_audio(path, sample_rate=16000)
        audio = torch.as_tensor(audio)
        tokens = fastwave.mulaw_encode(audio, classes=classes) if model is None else model.audio_to_tokens(audio)
        streams.append(tokens.reshape(-1))
    return streams


def number_in(text: str, low: float, high: float, what: str, *, open_low: bool = False) -> float:
    """An argparse type's check: ``text`` as a float in [low, high] ((low, high] with ``open_low``),
    else ArgumentTypeError naming ``what`` (NaN and words are refused too)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not ((low < value) if open_low else (low <= value)) or not value <= high:
        raise argparse.ArgumentTypeError(f"{what} must be in {'(' if open_low else '['}{low:g}, {high:g}], got {text!r}")
    return value


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_record(seed: int, device: str, wall_seconds: float) -> dict:
    """Where and how a result was made."""
    return {"command": shlex.join(["python", *sys.argv]), "seed": seed, "device": device,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "torch": torch.__version__, "fastwave": fastwave.__version__, "wall_seconds": round(wall_seconds, 1)}


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results")  # benchmarks/results


def write_results(stem: str, record: dict, markdown: str) -> None:
    """benchmarks/results/<stem>.json and .md."""
    with open(os.path.join(RESULTS, stem + ".json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    with open(os.path.join(RESULTS, stem + ".md"), "w", encoding="utf-8") as f:
        f.write(markdown)


def cell(interval, spec: str = ".3f") -> str:
    """A markdown cell of (mean, low, high): "m [l, h]", or "m (one seed)" where the bounds are None."""
    mean, low, high = interval
    if mean is None:
        return "–"
    if low is None or high is None:
        return f"{mean:{spec}} (one seed)"
    return f"{mean:{spec}} [{low:{spec}}, {high:{spec}}]"


MORE_SEEDS = 12  # the experiments also project each claim's detectable difference to this many seeds


def more_seeds_cell(claim: dict) -> str:
    """A claim's detectable difference with MORE_SEEDS seeds (``detectable_with_seeds``), or "–"."""
    value = claim.get(f"detectable_with_{MORE_SEEDS}_seeds")
    return "–" if value is None else f"{value:.3f}"


def json_interval(interval) -> list:
    """(mean, low, high) with NaN bounds (one seed) -> a JSON-able list with None for them."""
    return [None if v != v else v for v in interval]
