"""Piano rolls (fastwave.corpora.score): the local conditioning of the shipped piano WaveNet."""
import numpy as np
import pytest

from fastwave.corpora.plans import Note
from fastwave.corpora.score import KEYS, LOWEST_KEY, ROLL_CHANNELS, ROLL_HOP, piano_roll, random_score


def test_roll_marks_held_and_struck_frames_of_each_note():
    notes = [Note(60, 127, 0.0, 0.1), Note(72, 64, 0.05, 0.5)]  # 0.05 s = sample 800 = frame 12.5
    roll = piano_roll(notes, 16000)
    assert roll.shape == (ROLL_CHANNELS, 16000 // ROLL_HOP) and roll.dtype == np.float32
    c4, c5 = 60 - LOWEST_KEY, 72 - LOWEST_KEY
    assert np.flatnonzero(roll[c4]).tolist() == list(range(0, 25))  # samples 0..1599
    assert np.flatnonzero(roll[KEYS + c4]).tolist() == [0] and roll[c4, 0] == 1.0
    assert np.flatnonzero(roll[c5]).tolist() == list(range(12, 138))  # samples 800..8799
    assert np.flatnonzero(roll[KEYS + c5]).tolist() == [12] and roll[KEYS + c5, 12] == pytest.approx(64 / 127)
    assert np.count_nonzero(roll) == 25 + 1 + 126 + 1


def test_roll_covers_a_partial_last_frame_and_clips_notes_at_the_end():
    roll = piano_roll([Note(50, 100, 0.0, 9.0), Note(51, 100, 2.0, 1.0)], 1000)
    assert roll.shape[1] == -(-1000 // ROLL_HOP) and roll[50 - LOWEST_KEY].all()
    assert not roll[51 - LOWEST_KEY].any()  # starts after the clip


@pytest.mark.parametrize("notes, samples, message", [
    ([Note(47, 100, 0.0, 1.0)], 100, "pitch 47 is outside"),
    ([Note(96, 100, 0.0, 1.0)], 100, "pitch 96 is outside"),
    ([], 0, "positive int"),
    ([], 10.0, "positive int"),
])
def test_roll_refuses_bad_input(notes, samples, message):
    with pytest.raises(ValueError, match=message):
        piano_roll(notes, samples)


def test_random_score_fills_the_time_deterministically():
    score = random_score(4.0, seed=3)
    assert score == random_score(4.0, seed=3) != random_score(4.0, seed=4)
    assert min(n.start for n in score) == 0.0 and max(n.start for n in score) < 4.0
    assert all(LOWEST_KEY <= n.pitch < LOWEST_KEY + KEYS for n in score)
    long = random_score(30.0, seed=3)  # several phrases, one after another
    assert long[:len(score)] == score and max(n.start for n in long) > 20
    with pytest.raises(ValueError, match="seconds"):
        random_score(0)
    for seed in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed must be an int >= 0"):
            random_score(1.0, seed)


def test_midi_reading_refuses_what_is_not_a_score(tmp_path):
    from fastwave.corpora.score import notes_from_midi

    pytest.importorskip("mido")
    (tmp_path / "noise.mid").write_bytes(b"not a midi file at all")
    with pytest.raises(ValueError, match="not a readable MIDI file"):
        notes_from_midi(tmp_path / "noise.mid")
    with pytest.raises(FileNotFoundError):
        notes_from_midi(tmp_path / "missing.mid")
    import mido

    empty = mido.MidiFile()
    empty.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    empty.save(tmp_path / "empty.mid")
    with pytest.raises(ValueError, match="holds no notes"):
        notes_from_midi(tmp_path / "empty.mid")
