"""The corpora: plans decided from a seed, splits that hold out programs, the files written, the CLI.
Nothing is rendered with the SoundFont here unless tinysoundfont and FluidR3_GM are installed (not in
CI): a stub renderer plays each note as a sine."""
import dataclasses
import json
import os

import numpy as np
import pytest

from fastwave import corpora
from fastwave.cli import main
from fastwave.corpora import gm
from fastwave.corpora.piano import plan_piano
from fastwave.corpora.score import random_score
from fastwave.corpora.plans import NSYNTH_VELOCITIES, SPLITS, Clip, Note, Source, plan_mixtures, plan_notes, plan_phrases
from fastwave.training.data import clips_from_csv


class SineRenderer:
    """Stands in for SoundFontRenderer: each note a sine at its pitch, as loud as its velocity."""

    def __init__(self, sample_rate=8000):
        self.sample_rate, self.soundfont = sample_rate, "stub.sf2"

    def render(self, clip, gain_db=0.0):
        t = np.arange(round(clip.seconds * self.sample_rate)) / self.sample_rate
        out = np.zeros(t.shape, dtype=np.float32)
        for source in clip.sources:
            for n in source.notes:
                on = (t >= n.start) & (t < n.start + n.duration)
                hz = 440.0 * 2 ** ((n.pitch - 69) / 12)
                out += on * source.gain * n.velocity / 127 * 0.3 * np.sin(2 * np.pi * hz * t).astype(np.float32)
        return np.clip(out * 10 ** (gain_db / 20), -0.99, 0.99)


def test_program_splits_hold_out_one_program_per_family_per_split():
    splits = corpora.program_splits(0)
    assert sorted(p for s in SPLITS for p in splits[s]) == list(range(128))  # each program once
    for name in gm.FAMILIES:
        members = set(gm.family_programs(name))
        assert [len(members & set(splits[s])) for s in SPLITS] == [6, 1, 1], name
    assert splits == corpora.program_splits(0) and splits != corpora.program_splits(1)
    assert gm.family(0) == "piano" and gm.family(33) == "bass" and gm.family(127) == "sound_effects"
    with pytest.raises(ValueError, match="program"):
        gm.family(-1)
    with pytest.raises(ValueError, match="family"):
        gm.family_programs("kazoo")



def test_program_folds_test_every_program_once():
    folds = corpora.program_folds(0)
    assert len(folds) == 8 and folds[0] == corpora.program_splits(0)  # a rendered corpus serves every fold
    for split in ("test", "val"):
        assert sorted(p for fold in folds for p in fold[split]) == list(range(128))
    for fold in folds:
        assert sorted(p for s in SPLITS for p in fold[s]) == list(range(128))  # disjoint, complete
        for name in gm.FAMILIES:
            members = set(gm.family_programs(name))
            assert [len(members & set(fold[s])) for s in SPLITS] == [6, 1, 1], name
    assert corpora.program_folds(0, 3) == folds[:3] and corpora.program_folds(1) != folds
    with pytest.raises(ValueError, match="folds"):
        corpora.program_folds(0, 9)


@pytest.mark.parametrize("k", [2, 4])
def test_program_folds_with_fewer_folds_test_every_program_once(k):
    folds = corpora.program_folds(0, k=k)
    assert len(folds) == k and sorted(p for fold in folds for p in fold["test"]) == list(range(128))
    for fold in folds:
        assert sorted(p for s in SPLITS for p in fold[s]) == list(range(128))
        for name in gm.FAMILIES:
            members = set(gm.family_programs(name))
            assert [len(members & set(fold[s])) for s in SPLITS] == [7 - 8 // k, 1, 8 // k], name
    assert corpora.program_folds(0, 1, k=k) == folds[:1]
    for bad in (3, 16, True):
        with pytest.raises(ValueError, match="k must"):
            corpora.program_folds(0, k=bad)
    with pytest.raises(ValueError, match="folds"):
        corpora.program_folds(0, k + 1, k=k)

@pytest.mark.parametrize("k", [4, 8])
def test_program_folds_over_two_soundfonts_keep_a_programs_renditions_together(k):
    folds = corpora.program_folds(0, k=k, soundfonts=2)
    assert len(folds) == k and sorted(p for fold in folds for p in fold["test"]) == list(range(256))
    for fold, one_font in zip(folds, corpora.program_folds(0, k=k)):
        assert sorted(p for s in SPLITS for p in fold[s]) == list(range(256))
        for split in SPLITS:  # the one-font folds, each program with its rendition in the second font
            assert fold[split] == tuple(sorted(one_font[split] + tuple(p + 128 for p in one_font[split])))
        heard = {p % 128 for p in fold["train"]}
        assert not heard & {p % 128 for p in fold["test"]}  # a test program is heard in no font
    for bad in (0, 5, True, 1.0):
        with pytest.raises(ValueError, match="soundfonts must"):
            corpora.program_folds(0, k=8, soundfonts=bad)
    mixtures = plan_mixtures(200, seed=0, splits=folds[1])
    assert all(source.program in folds[1][clip.split] for clip in mixtures for source in clip.sources)
    assert any(source.program >= 128 for clip in mixtures for source in clip.sources)


def test_notes_over_two_soundfonts_play_each_program_in_both():
    one, two = plan_notes(400, seed=1), plan_notes(400, seed=1, soundfonts=2)
    assert plan_notes(400, seed=1, soundfonts=1) == one  # one font: the plans of before
    fonts = [clip.sources[0].program // 128 for clip in two]
    assert set(fonts) == {0, 1} and 150 < sum(fonts) < 250
    splits = corpora.program_splits(1)
    assert all(clip.sources[0].program % 128 in splits[clip.split] for clip in two)  # the program's split
    with pytest.raises(ValueError, match="soundfonts must"):
        plan_notes(3, soundfonts=9)


def test_an_instrument_is_a_program_of_a_soundfont():
    assert gm.family(152) == gm.family(24) == "guitar" and gm.family_index(128 * 3 + 127) == 15
    assert gm.family_programs("bass", 2) == tuple(range(32, 40)) + tuple(range(160, 168))
    for bad in (-1, 128 * gm.MAX_SOUNDFONTS, True, 1.5):
        with pytest.raises(ValueError, match="program must be an int"):
            gm.family(bad)


def test_notes_are_single_labelled_notes_of_their_splits_programs():
    clips = plan_notes(400, seed=3, seconds=2.0)
    splits = corpora.program_splits(3)
    assert len(clips) == 400 and clips == plan_notes(400, seed=3, seconds=2.0)
    assert len({c.name for c in clips}) == 400
    for clip in clips:
        (source,) = clip.sources
        (note,) = source.notes
        assert source.program in splits[clip.split] and clip.labels == (gm.family(source.program),)
        low, high = gm.PITCH_RANGES[clip.labels[0]]
        assert low <= note.pitch <= high and note.velocity in NSYNTH_VELOCITIES
        assert clip.seconds == 2.0 and note.start == 0.0 and note.duration == 1.5
    assert {c.split for c in clips} == set(SPLITS)
    assert len({c.labels for c in clips}) == 16  # every family appears in 400 clips
    for bad in [dict(count=0), dict(count=2.0), dict(count=3, seconds=1.5), dict(count=3, seconds=True)]:
        with pytest.raises(ValueError):
            plan_notes(**bad)


def test_mixtures_label_every_family_they_mix():
    clips = plan_mixtures(300, seed=5)
    splits = corpora.program_splits(5)
    sizes = set()
    for clip in clips:
        families = [gm.family(s.program) for s in clip.sources]
        sizes.add(len(families))
        assert len(set(families)) == len(families) and clip.labels == tuple(sorted(families))
        for source in clip.sources:
            assert source.program in splits[clip.split]
            assert 10 ** (-12 / 20) - 1e-4 <= source.gain <= 1.0
            for n in source.notes:
                assert 0.0 <= n.start and n.start + n.duration <= clip.seconds + 1e-6 and 1 <= n.velocity <= 127
    assert sizes == {1, 2, 3} and clips == plan_mixtures(300, seed=5) and clips != plan_mixtures(300, seed=6)
    assert plan_mixtures(300, seed=5, splits=splits) == clips  # the default split, given


def test_mixtures_of_a_fold_play_only_its_splits_programs():
    fold = corpora.program_folds(0, k=4)[2]
    clips = plan_mixtures(300, seed=0, splits=fold)
    for clip in clips:
        assert all(source.program in fold[clip.split] for source in clip.sources)
    assert {c.split for c in clips} == set(SPLITS)
    with pytest.raises(ValueError, match="splits"):
        plan_mixtures(3, splits={"train": fold["train"], "val": fold["val"]})
    with pytest.raises(ValueError, match="splits"):
        plan_mixtures(3, splits={**fold, "test": (0,)})  # one family only


def test_mixtures_of_one_split_play_only_its_programs_and_cover_its_families():
    fold = corpora.program_folds(0, k=8, soundfonts=2)[3]
    clips = plan_mixtures(400, seed=1, splits=fold, only="test")
    assert {c.split for c in clips} == {"test"} and len(clips) == 400
    assert all(source.program in fold["test"] for clip in clips for source in clip.sources)
    assert {label for clip in clips for label in clip.labels} == set(gm.FAMILIES)
    assert {source.program for clip in clips for source in clip.sources} == set(fold["test"])  # both fonts heard
    assert clips == plan_mixtures(400, seed=1, splits=fold, only="test")
    with pytest.raises(ValueError, match="only"):
        plan_mixtures(3, only="tests")


def test_phrases_are_melodies_of_their_splits_or_the_given_programs():
    clips = plan_phrases(200, seed=2)
    splits = corpora.program_splits(2)
    assert clips == plan_phrases(200, seed=2) and clips != plan_phrases(200, seed=3)
    assert {c.split for c in clips} == set(SPLITS) and all(c.seconds == 5.0 for c in clips)
    for clip in clips:
        (source,) = clip.sources
        assert source.program in splits[clip.split] and clip.labels == (gm.family(source.program),)
        low, high = gm.PITCH_RANGES[gm.family(source.program)]
        assert len(source.notes) >= 4  # a melody: the next code is not a copy of the last
        for n in source.notes:
            assert low <= n.pitch <= high and 30 <= n.velocity <= 127
            assert 0.0 <= n.start and 0.0 < n.duration and n.start + n.duration <= clip.seconds + 1e-6
    pool = (0, 9, 100)
    held_out = plan_phrases(60, seed=2, seconds=2.0, programs=pool)
    assert {c.split for c in held_out} == {"train"} and {c.sources[0].program for c in held_out} == set(pool)
    assert corpora.plan_corpus("phrases", seed=2, count=200) == clips
    for bad in ({"seconds": 0.5}, {"seconds": True}, {"programs": ()}, {"programs": (512,)}, {"programs": (True,)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            plan_phrases(3, **bad)


def test_piano_phrases_fill_the_minutes_on_the_split_pianos():
    clips = plan_piano(3.0, seed=1)
    assert sum(c.seconds for c in clips) >= 180.0 and clips == plan_piano(3.0, seed=1)
    for clip in clips:
        (source,) = clip.sources
        assert source.program in corpora.PIANO_SPLITS[clip.split] and clip.labels == ("piano",)
        assert len(source.notes) >= 8
        for n in source.notes:
            assert 21 <= n.pitch <= 108 and 1 <= n.velocity <= 127
            assert n.start + n.duration <= clip.seconds
    assert len({len(c.sources[0].notes) for c in clips}) > 3  # phrases differ
    with pytest.raises(ValueError, match="minutes"):
        plan_piano(0)
    with pytest.raises(ValueError, match="minutes"):
        corpora.plan_corpus("piano", count=3)
    with pytest.raises(ValueError, match="kind"):
        corpora.plan_corpus("drums")
    with pytest.raises(ValueError, match="count"):
        corpora.plan_corpus("mixtures", minutes=2)
    with pytest.raises(ValueError, match="seconds"):
        plan_mixtures(2, seconds=True)


def test_piano_phrases_on_one_chosen_piano_are_new_phrases():
    clips = corpora.plan_piano_phrases(40, instrument=128, seed=0)
    assert clips == corpora.plan_piano_phrases(40, instrument=128, seed=0) and len(clips) == 40
    assert {c.sources[0].program for c in clips} == {128} and {c.split for c in clips} == {"test"}
    assert len({c.name for c in clips}) == 40
    # Not the piano corpus's phrases of the same seed; the random scores of that seed, in order.
    corpus_notes = {c.sources[0].notes for c in plan_piano(10.0, seed=0)}
    assert not corpus_notes & {c.sources[0].notes for c in clips}
    first, second = (c.sources[0].notes for c in clips[:2])
    score = random_score(clips[0].seconds + clips[1].seconds, seed=0)
    assert score[:len(first)] == first and [n.pitch for n in score[len(first):len(first) + len(second)]] == [n.pitch for n in second]
    assert corpora.plan_piano_phrases(3, instrument=1, split="val")[0].split == "val"
    for bad, match in (({"count": 0}, "count"), ({"instrument": 8}, "instrument"), ({"instrument": 128 * 4}, "instrument"),
                       ({"instrument": True}, "instrument"), ({"split": "dev"}, "split")):
        with pytest.raises(ValueError, match=match):
            corpora.plan_piano_phrases(**{"count": 2, "instrument": 0, **bad})


def test_write_corpus_writes_wavs_labels_and_a_record(tmp_path):
    clips = corpora.plan_corpus("mixtures", seed=2, count=40)
    record = corpora.write_corpus(clips, tmp_path, SineRenderer(), kind="mixtures", seed=2, command="test",
                                  progress=False)
    read = clips_from_csv(tmp_path / "labels.csv", tmp_path)
    assert len(read.paths) == 40 and set(read.vocabulary) <= set(gm.FAMILIES)
    assert sum(record["clips"].values()) == 40 and record["seed"] == 2 and record["sample_rate"] == 8000
    assert json.loads((tmp_path / "corpus.json").read_text())["clips"] == record["clips"]
    for split in SPLITS:
        held = set(record["programs"][split])
        assert held <= set(corpora.program_splits(2)[split])
        assert len(os.listdir(tmp_path / split)) == record["clips"][split]
    with pytest.raises(ValueError, match="kind"):
        corpora.write_corpus(clips, tmp_path / "new", SineRenderer(), kind="drums", seed=2)
    with pytest.raises(ValueError, match="not empty"):  # stale clips would mix into a new corpus
        corpora.write_corpus(clips[:3], tmp_path, SineRenderer(), kind="mixtures", seed=2)
    assert len(read.paths) == 40
    two_fonts = plan_mixtures(30, seed=0, splits=corpora.program_folds(0, k=8, soundfonts=2)[0])
    with pytest.raises(ValueError, match=r"of a SoundFont this renderer lacks \(it has 1"):
        corpora.write_corpus(two_fonts, tmp_path / "two", SineRenderer(), kind="mixtures", seed=0)
    assert not (tmp_path / "two").exists()  # refused before anything was written


def test_corpus_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpora, "SoundFontRenderer", lambda soundfont, rate: SineRenderer(rate))
    assert main(["corpus", "piano", "--out", str(tmp_path / "p"), "--minutes", "0.5", "--quiet",
                 "--sample-rate", "8000"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "piano" and sum(summary["seconds"].values()) >= 30.0
    record = json.loads((tmp_path / "p" / "corpus.json").read_text())
    assert record["command"].startswith("fastwave corpus piano") and record["gain_db"] == 6.0
    assert main(["corpus", "piano", "--out", str(tmp_path / "q"), "--count", "3"]) == 2
    assert "minutes" in capsys.readouterr().err
    assert main(["corpus", "notes", "--out", str(tmp_path / "n"), "--minutes", "3"]) == 2

    def no_tinysoundfont(soundfont, rate):
        raise ImportError("rendering corpora needs tinysoundfont: pip install --no-deps tinysoundfont")

    monkeypatch.setattr(corpora, "SoundFontRenderer", no_tinysoundfont)
    capsys.readouterr()
    assert main(["corpus", "notes", "--out", str(tmp_path / "n"), "--count", "2"]) == 2
    assert "pip install --no-deps tinysoundfont" in capsys.readouterr().err


def test_renderer_explains_what_is_missing(tmp_path):
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install --no-deps tinysoundfont"):
            corpora.SoundFontRenderer()
        return
    with pytest.raises(FileNotFoundError, match="soundfont"):
        corpora.SoundFontRenderer(tmp_path / "missing.sf2")


@pytest.mark.skipif(not os.path.isfile(corpora.DEFAULT_SOUNDFONT), reason="FluidR3_GM is not installed")
def test_soundfont_rendering_is_deterministic_and_audible():
    pytest.importorskip("tinysoundfont")
    renderer = corpora.SoundFontRenderer()
    clip = plan_piano(0.1, seed=0)[0]
    audio = renderer.render(clip)
    assert audio.dtype == np.float32 and audio.shape == (round(clip.seconds * 16000),)
    assert np.array_equal(audio, corpora.SoundFontRenderer().render(clip))
    assert 0.01 < np.abs(audio).max() <= 0.99 and audio.std() > 1e-3
    note = plan_notes(1, seed=0)[0]
    assert np.abs(renderer.render(note)).max() > 0.01
    # a clip rendered after another opens as on a fresh renderer: none of the last one's tail
    after = plan_piano(0.1, seed=1)[0]
    renderer.render(dataclasses.replace(clip, seconds=0.5))  # cut while its notes still sound
    assert np.array_equal(renderer.render(after), corpora.SoundFontRenderer().render(after))


SECOND_SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"  # Debian's timgm6mb-soundfont


def test_a_renderer_checks_every_soundfont_and_instrument(tmp_path):
    pytest.importorskip("tinysoundfont")
    (tmp_path / "not_loaded.sf2").write_bytes(b"RIFF")  # not a SoundFont: loading it would fail otherwise
    with pytest.raises(FileNotFoundError, match="missing.sf2"):  # every path is checked before any loads
        corpora.SoundFontRenderer([tmp_path / "not_loaded.sf2", tmp_path / "missing.sf2"])
    with pytest.raises(ValueError, match="list of 1 to"):
        corpora.SoundFontRenderer([])
    if not os.path.isfile(corpora.DEFAULT_SOUNDFONT):
        return
    clip = Clip("x", 0.5, (Source(130, (Note(60, 100, 0.0, 0.3),)),), ("piano",), "train")
    with pytest.raises(ValueError, match="instrument 130 is program 2 of the SoundFont at index 1 .* this renderer has 1"):
        corpora.SoundFontRenderer().render(clip)


@pytest.mark.skipif(not (os.path.isfile(corpora.DEFAULT_SOUNDFONT) and os.path.isfile(SECOND_SOUNDFONT)),
                    reason="FluidR3_GM and TimGM6mb are not both installed")
def test_two_soundfonts_play_the_same_program_as_two_instruments():
    pytest.importorskip("tinysoundfont")
    renderer = corpora.SoundFontRenderer([corpora.DEFAULT_SOUNDFONT, SECOND_SOUNDFONT])
    assert renderer.soundfonts == [corpora.DEFAULT_SOUNDFONT, SECOND_SOUNDFONT]
    note = lambda program: Clip("x", 0.5, (Source(program, (Note(64, 100, 0.0, 0.3),)),), ("strings",), "train")  # noqa: E731
    first, second = renderer.render(note(40)), renderer.render(note(40 + 128))
    assert np.array_equal(first, corpora.SoundFontRenderer().render(note(40)))  # font 0 is the default's
    assert np.abs(second).max() > 0.01 and not np.allclose(first, second, atol=1e-3)
