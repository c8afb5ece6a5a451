"""Writing a corpus: plans rendered to 16-bit WAV files, a CSV of labels and splits, and a JSON
record of how it was made."""
from __future__ import annotations

import json
import os
import time

from .plans import SPLITS, Clip, plan_mixtures, plan_notes, plan_phrases
from .piano import plan_piano
from .._files import open_atomically

KINDS = ("notes", "mixtures", "phrases", "piano")
# FluidR3 plays a piano phrase at a median peak of about 0.2: the piano corpus is rendered 6 dB
# louder so mu-law's 256 levels cover it (the loudest few phrases are then limited to PEAK).
GAIN_DB = {"notes": 0.0, "mixtures": 0.0, "phrases": 0.0, "piano": 6.0}


def plan_corpus(kind: str, *, seed: int = 0, count: int | None = None, minutes: float | None = None,
                seconds: float | None = None) -> list[Clip]:
    """The clips of a corpus. notes / mixtures / phrases: ``count`` clips (default 1,000) of
    ``seconds`` (notes: 1 or 2, default 1; mixtures: default 1; phrases: default 5); piano: phrases
    until ``minutes`` (default 10)."""
    if kind in ("notes", "mixtures", "phrases") and minutes is not None:
        raise ValueError(f"the {kind} corpus is sized by count (and seconds), not minutes")
    if kind == "notes":
        return plan_notes(1000 if count is None else count, seed, 1.0 if seconds is None else seconds)
    if kind == "mixtures":
        return plan_mixtures(1000 if count is None else count, seed, 1.0 if seconds is None else seconds)
    if kind == "phrases":
        return plan_phrases(1000 if count is None else count, seed, 5.0 if seconds is None else seconds)
    if kind == "piano":
        if count is not None or seconds is not None:
            raise ValueError("the piano corpus is sized by minutes, not count / seconds")
        return plan_piano(10.0 if minutes is None else minutes, seed)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def write_corpus(clips: list[Clip], out_dir, renderer, *, kind: str, seed: int, command: str = "",
                 progress: bool = True) -> dict:
    """Renders every clip (GAIN_DB[kind] louder) to ``out_dir/<split>/<name>.wav`` and writes ``out_dir/labels.csv``
    (``fname,labels,split``: fastwave.training.data.clips_from_csv reads it; labels are GM family names) and
    ``out_dir/corpus.json`` (kind, seed, counts and seconds per split, the programs of each split,
    the SoundFont(s), the sample rate, the command and the wall time). Returns that record."""
    from tqdm import tqdm

    from ..audio import save_audio

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out_dir = os.fspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir):  # stale clips would join the split folders
        raise ValueError(f"out_dir {out_dir} is not empty: write a corpus into a new or empty folder")
    soundfonts = list(getattr(renderer, "soundfonts", [renderer.soundfont]))  # a stand-in renderer names one
    beyond = sorted({s.program for clip in clips for s in clip.sources if s.program >= 128 * len(soundfonts)})
    if beyond:  # checked before any clip is written, not halfway through the render
        raise ValueError(f"the plan plays instruments {beyond[:5]}{'...' if len(beyond) > 5 else ''} of a SoundFont "
                         f"this renderer lacks (it has {len(soundfonts)}; instrument = program + 128 x font)")
    started = time.perf_counter()
    rows, counts, seconds, programs = [], dict.fromkeys(SPLITS, 0), dict.fromkeys(SPLITS, 0.0), {s: set() for s in SPLITS}
    for clip in tqdm(clips, desc=f"rendering {kind}", unit="clip", disable=not progress):
        fname = f"{clip.split}/{clip.name}.wav"
        os.makedirs(os.path.join(out_dir, clip.split), exist_ok=True)
        audio = renderer.render(clip, gain_db=GAIN_DB[kind])
        save_audio(os.path.join(out_dir, fname), audio, renderer.sample_rate, subtype="PCM_16")
        rows.append((fname, ",".join(clip.labels), clip.split))
        counts[clip.split] += 1
        seconds[clip.split] += clip.seconds
        programs[clip.split].update(source.program for source in clip.sources)
    with open_atomically(os.path.join(out_dir, "labels.csv")) as f:
        f.write("fname,labels,split\n")
        f.writelines(f'{fname},"{labels}",{split}\n' for fname, labels, split in rows)
    record = {"kind": kind, "seed": seed, "gain_db": GAIN_DB[kind], "clips": counts, "seconds": {s: round(v, 3) for s, v in seconds.items()},
              "programs": {s: sorted(p) for s, p in programs.items()}, "sample_rate": renderer.sample_rate,
              "soundfont": renderer.soundfont, "soundfont_bytes": os.path.getsize(renderer.soundfont)
              if os.path.isfile(renderer.soundfont) else None,
              "soundfonts": soundfonts,
              "command": command, "wall_seconds": round(time.perf_counter() - started, 3)}
    with open_atomically(os.path.join(out_dir, "corpus.json")) as f:
        json.dump(record, f, indent=1)
    return record
