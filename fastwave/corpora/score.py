"""Piano rolls: the notes a piano phrase plays, as the local conditioning of a WaveNet.

The shipped piano WaveNet (fastwave.pretrained) plays a score, as MIDI-conditioned WaveNets do
(Hawthorne et al., 2019): at every frame of ``ROLL_HOP`` samples it reads, per key of C3..B6 (the
corpus's range, MIDI 48-95), whether the key is held and whether it is struck in that frame, each as
the note's velocity / 127. ``random_score`` draws phrases from the piano corpus's generator, so
``fastwave generate`` can play something new for every seed.

    roll = piano_roll(notes, samples)          # (ROLL_CHANNELS, ceil(samples / ROLL_HOP)) float32
    notes = notes_from_midi("score.mid")      # a MIDI file as Notes (needs mido)
"""
from __future__ import annotations

import numpy as np

from .._checks import check_int_arg
from .piano import phrase_stream
from .plans import Note

LOWEST_KEY, KEYS = 48, 48          # C3 .. B6
ROLL_HOP = 64                      # samples per frame: 4 ms at 16 kHz
ROLL_CHANNELS = 2 * KEYS           # rows [0, KEYS): held; rows [KEYS, 2 KEYS): struck in this frame


def piano_roll(notes, samples: int, sample_rate: int = 16000, hop: int = ROLL_HOP) -> np.ndarray:
    """Notes (fastwave.corpora.plans.Note: pitch, velocity, start, duration in seconds) of a clip of
    ``samples`` samples -> its roll (ROLL_CHANNELS, ceil(samples / hop)) float32.

    A note sounds from sample round(start * sample_rate) (as the renderer plays it) until its
    note-off; its held row is velocity / 127 on every frame that overlaps that span, its struck row
    on the frame of its first sample. Keys outside C3..B6 are refused rather than dropped."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    frames = -(-int(samples) // hop)
    roll = np.zeros((ROLL_CHANNELS, frames), np.float32)
    for note in notes:
        key = note.pitch - LOWEST_KEY
        if not 0 <= key < KEYS:
            raise ValueError(f"pitch {note.pitch} is outside the roll's keys {LOWEST_KEY}..{LOWEST_KEY + KEYS - 1}")
        on = round(note.start * sample_rate)
        off = max(round((note.start + note.duration) * sample_rate), on + 1)
        if on >= samples:
            continue
        level = note.velocity / 127.0
        first, last = on // hop, min((off - 1) // hop, frames - 1)
        roll[key, first:last + 1] = np.maximum(roll[key, first:last + 1], level)
        roll[KEYS + key, first] = max(roll[KEYS + key, first], level)
    return roll


def random_score(seconds: float, seed: int = 0) -> tuple[Note, ...]:
    """Piano phrases from the corpus's generator (fastwave.corpora.piano.phrase_stream), one after
    another until ``seconds`` are filled; notes that would start after the end are left out."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
        raise ValueError(f"seconds must be a number in (0, 3600], got {seconds!r}")
    seed = check_int_arg(seed, "seed", minimum=0)
    stream = phrase_stream(seed)
    notes, offset = [], 0.0
    while offset < seconds:
        phrase, length = next(stream)
        notes += [Note(n.pitch, n.velocity, round(offset + n.start, 4), n.duration)
                  for n in phrase if offset + n.start < seconds]
        offset += length
    return tuple(notes)


def notes_from_midi(path) -> tuple[Note, ...]:
    """The notes of a MIDI file (every track and channel, tempo changes applied; needs ``mido``:
    ``pip install mido``) -> Notes in seconds, sorted by start. A note-on with velocity 0 is a
    note-off; a note still held at the end of the file ends there; a key struck again while held
    ends the held note first (as a piano re-strikes it)."""
    from .._checks import check_file

    path = check_file(path, "path")
    try:
        import mido
    except ImportError as err:
        raise ImportError("reading MIDI needs mido: pip install mido") from err
    try:
        midi = mido.MidiFile(path)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as err:
        raise ValueError(f"{path} is not a readable MIDI file: {err}") from None
    now, held, notes = 0.0, {}, []
    for message in midi:  # merged tracks; .time: seconds since the previous message
        now += message.time
        if message.type not in ("note_on", "note_off"):
            continue
        key = (message.channel, message.note)
        if key in held:
            start, velocity = held.pop(key)
            notes.append(Note(message.note, velocity, round(start, 6), round(max(now - start, 1e-3), 6)))
        if message.type == "note_on" and message.velocity > 0:
            held[key] = (now, message.velocity)
    for (_, pitch), (start, velocity) in held.items():
        notes.append(Note(pitch, velocity, round(start, 6), round(max(now - start, 1e-3), 6)))
    if not notes:
        raise ValueError(f"{path} holds no notes")
    return tuple(sorted(notes, key=lambda n: (n.start, n.pitch)))
