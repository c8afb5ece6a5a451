"""Piano rolls: the notes a piano phrase plays, as the local conditioning of a WaveNet.

The shipped piano WaveNet (fastwave.pretrained) plays a score, as MIDI-conditioned WaveNets do
(Hawthorne et al., 2019): at every frame of ``ROLL_HOP`` samples it reads, per key of C3..B6 (the
corpus's range, MIDI 48-95), whether the key is held and whether it is struck in that frame, each as
the note's velocity / 127. ``random_score`` draws phrases from the piano corpus's generator, so
``fastwave generate`` can play something new for every seed.

A model may also read each key's onset envelope (``score_features``, ``SCORE_CHANNELS`` rows): the
level of its last strike, decaying while the key is held. The struck row marks one frame (4 ms), and
a WaveNet's conditioning is read frame by frame, so a model that did not play the attack in that
frame cannot tell afterwards a key struck 10 ms ago from one held for seconds, and plays on what it
already played (docs/piano_model.md: the missed onsets). The envelope says at every frame how
recently and how hard each key was struck, as WaveNet TTS's linguistic features give each frame's
position within its phone. It is derived from the roll, so a score is still the roll. A checkpoint
does not store the envelope's time constant: ``fastwave generate`` and ``piano_cond`` give a model of
SCORE_CHANNELS the envelope of ``ONSET_DECAY``, and a model trained on another
(benchmarks/experiments/piano_model.py --onset-envelope SECONDS, which its record says) is played
with that one (``score_features(decay=)``, piano_eval.py --onset-decay).

    roll = piano_roll(notes, samples)          # (ROLL_CHANNELS, ceil(samples / ROLL_HOP)) float32
    feats = score_features(roll, model.config.local_channels)  # what that model reads: the roll, or + envelope
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
SCORE_CHANNELS = 3 * KEYS          # the roll, then rows [2 KEYS, 3 KEYS): each key's onset envelope
ONSET_DECAY = 0.2                  # seconds: the envelope falls by e in this time (a strike's first decay)


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


def onset_envelope(roll, hop: int = ROLL_HOP, sample_rate: int = 16000, decay: float = ONSET_DECAY) -> np.ndarray:
    """A roll (..., ROLL_CHANNELS, F) -> each key's onset envelope (..., KEYS, F) float32: from the
    frame a key is struck, the strike's level times exp(-seconds since it / ``decay``) while the key
    stays held; 0 while it is not. A strike of a held key starts its envelope again at its level."""
    roll = np.asarray(roll, np.float32)
    if roll.ndim < 2 or roll.shape[-2] != ROLL_CHANNELS:
        raise ValueError(f"a piano roll is (..., {ROLL_CHANNELS}, frames), got shape {roll.shape}")
    if not decay > 0:
        raise ValueError(f"decay must be positive seconds, got {decay!r}")
    held, struck = roll[..., :KEYS, :], roll[..., KEYS:, :]
    factor = np.float32(np.exp(-hop / (sample_rate * decay)))  # per frame
    envelope = np.zeros_like(struck)
    level = np.zeros(struck.shape[:-1], np.float32)
    for f in range(roll.shape[-1]):  # a recursion over frames; each step is vectorised over keys
        level = np.where(held[..., f] > 0, np.where(struck[..., f] > 0, struck[..., f], level * factor), 0)
        envelope[..., f] = level
    return envelope


def score_features(roll, channels: int, decay: float = ONSET_DECAY, sample_rate: int = 16000) -> np.ndarray:
    """A roll (..., ROLL_CHANNELS, F) of ``sample_rate`` audio -> what a piano-score WaveNet of
    ``channels`` local channels reads: the roll itself (ROLL_CHANNELS), or the roll and its onset
    envelope (SCORE_CHANNELS) of time constant ``decay`` seconds (a model reads the envelope it was
    trained on)."""
    roll = np.asarray(roll, np.float32)
    if channels == ROLL_CHANNELS:
        return roll
    if channels == SCORE_CHANNELS:
        return np.concatenate([roll, onset_envelope(roll, sample_rate=sample_rate, decay=decay)], axis=-2)
    raise ValueError(f"a piano-score WaveNet reads {ROLL_CHANNELS} (the roll) or {SCORE_CHANNELS} (roll and onset "
                     f"envelope) local channels, not {channels}")


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
