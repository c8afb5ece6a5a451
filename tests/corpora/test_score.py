"""Piano rolls (fastwave.corpora.score): the local conditioning of the shipped piano WaveNet."""
import numpy as np
import pytest

from fastwave.corpora.plans import Note
from fastwave.corpora.score import (KEYS, LOWEST_KEY, ONSET_DECAY, ROLL_CHANNELS, ROLL_HOP, SCORE_CHANNELS,
                                   onset_envelope, piano_roll, random_score, score_features)


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


def test_onset_envelope_decays_from_each_strike_while_the_key_is_held():
    # C4 struck at full velocity for 0.5 s, struck again at half velocity at 0.3 s (still held: the
    # held row merges them); E4 struck at 0.1 s for 0.05 s.
    notes = [Note(60, 127, 0.0, 0.5), Note(60, 64, 0.3, 0.5), Note(64, 100, 0.1, 0.05)]
    roll = piano_roll(notes, 16000)
    envelope = onset_envelope(roll)
    assert envelope.shape == (KEYS, roll.shape[1]) and envelope.dtype == np.float32
    c4, e4 = 60 - LOWEST_KEY, 64 - LOWEST_KEY
    per_frame = np.exp(-ROLL_HOP / (16000 * ONSET_DECAY))
    restrike = round(0.3 * 16000) // ROLL_HOP
    assert envelope[c4, 0] == 1.0
    assert envelope[c4, 1:restrike] == pytest.approx(per_frame ** np.arange(1, restrike), rel=1e-5)
    assert envelope[c4, restrike] == pytest.approx(64 / 127)  # a new strike starts it again, lower
    assert envelope[c4, roll[c4] == 0].max() == 0  # released: nothing
    onset, released = round(0.1 * 16000) // ROLL_HOP, np.flatnonzero(roll[e4]).max() + 1
    assert envelope[e4, onset] == pytest.approx(100 / 127) and envelope[e4, released:].max() == 0
    assert envelope[e4, :onset].max() == 0
    # batched rolls give each stream's own envelope
    other = piano_roll([Note(70, 90, 0.2, 0.1)], 16000)
    assert np.array_equal(onset_envelope(np.stack([roll, other])), np.stack([envelope, onset_envelope(other)]))


def test_score_features_are_the_roll_or_the_roll_and_its_envelope():
    roll = piano_roll(random_score(1.0, seed=2), 16000)
    assert np.array_equal(score_features(roll, ROLL_CHANNELS), roll)
    feats = score_features(roll[None], SCORE_CHANNELS)
    assert feats.shape == (1, SCORE_CHANNELS, roll.shape[1])
    assert np.array_equal(feats[0, :ROLL_CHANNELS], roll) and np.array_equal(feats[0, ROLL_CHANNELS:], onset_envelope(roll))
    slow = score_features(roll, SCORE_CHANNELS, decay=1.0)  # the time constant a model was trained with
    assert np.array_equal(slow[ROLL_CHANNELS:], onset_envelope(roll, decay=1.0))
    assert (slow[ROLL_CHANNELS:] >= feats[0, ROLL_CHANNELS:]).all() and not np.array_equal(slow, feats[0])
    with pytest.raises(ValueError, match="reads 96 .* or 144 .* not 100"):
        score_features(roll, 100)
    with pytest.raises(ValueError, match="a piano roll is"):
        onset_envelope(roll[:KEYS])
    with pytest.raises(ValueError, match="decay must be positive"):
        onset_envelope(roll, decay=0)


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
