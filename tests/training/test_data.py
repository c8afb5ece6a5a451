"""Tests for fastwave.training.data: audio file listing, labelled clip collections and splits."""
import os

import numpy as np
import pytest

from fastwave import save_audio
from fastwave._checks import MissingFileError
from fastwave.training.data import (
    LabelledClips,
    audio_files,
    clip_splits,
    clips_from_csv,
    clips_from_folders,
    split_indices,
)

RATE = 16000
TONE = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE // 10) / RATE)).astype(np.float32)


def wav(path):
    """Write 0.1 s of a 440 Hz sine at ``path`` (parents created) and return it as a str."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_audio(path, TONE, RATE)
    return str(path)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as handle:
        handle.write(text)
    return str(path)


# --------------------------------------------------------------------------------------------------
# audio_files
# --------------------------------------------------------------------------------------------------


def test_audio_files_recursive_sorted_and_filtered(tmp_path):
    expected = [wav(tmp_path / "a" / "x.wav"), wav(tmp_path / "a" / "y.WAV"), wav(tmp_path / "b" / "deep" / "z.flac"),
                wav(tmp_path / "c.wav")]
    write(tmp_path / "notes.txt", "not audio")
    wav(tmp_path / ".hidden.wav")
    wav(tmp_path / ".cache" / "skipped.wav")
    assert audio_files(tmp_path) == sorted(expected)
    assert audio_files(str(tmp_path)) == audio_files(tmp_path)


def test_audio_files_mixed_sources_keep_order_without_duplicates(tmp_path):
    folder = [wav(tmp_path / "d" / "1.wav"), wav(tmp_path / "d" / "2.wav")]
    single = wav(tmp_path / "solo.ogg")
    explicit_hidden = wav(tmp_path / ".kept.wav")  # explicit files are kept as given
    sources = [single, tmp_path / "d", folder[0], explicit_hidden]
    before = list(sources)
    assert audio_files(sources) == [single, *folder, explicit_hidden]
    assert sources == before


def test_audio_files_errors(tmp_path):
    with pytest.raises(MissingFileError):
        audio_files(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        audio_files([wav(tmp_path / "ok.wav"), tmp_path / "nope.wav"])
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty" / "readme.txt", "x")
    with pytest.raises(ValueError, match="empty"):
        audio_files(tmp_path / "empty")
    with pytest.raises(ValueError, match="sources is empty"):
        audio_files([])
    with pytest.raises(TypeError):
        audio_files([3])


# --------------------------------------------------------------------------------------------------
# clips_from_csv
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fsd(tmp_path):
    """A tiny FSD50K-style set: files named by id, a dev.csv with fname,labels,mids,split."""
    audio = tmp_path / "dev_audio"
    for name in ("101", "102", "103", "104"):
        wav(audio / f"{name}.wav")
    csv_path = write(tmp_path / "dev.csv", "fname,labels,mids,split\n"
                                           '101,"Bark,Dog",/m/1,train\n'
                                           "102,Cat,/m/2,train\n"
                                           '103,"Dog,Cat",/m/3,val\n'
                                           "104.wav,Bark,/m/4,TRAIN\n")
    return csv_path, str(audio)


def test_clips_from_csv_multi_label(fsd):
    csv_path, audio = fsd
    clips = clips_from_csv(csv_path, audio)
    assert len(clips) == 4
    assert clips.paths == [os.path.join(audio, f"{n}.wav") for n in ("101", "102", "103", "104")]
    assert clips.labels == [("Bark", "Dog"), ("Cat",), ("Dog", "Cat"), ("Bark",)]
    assert clips.vocabulary == ["Bark", "Cat", "Dog"]
    assert clips.splits == ["train", "train", "val", "train"]
    assert clips.multi_label
    assert clips.label_ids() == [[0, 2], [1], [2, 1], [0]]
    targets = clips.targets()
    assert targets.dtype == np.float32
    np.testing.assert_array_equal(targets, [[1, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0]])


def test_clips_from_csv_given_vocabulary_keeps_its_order(fsd):
    csv_path, audio = fsd
    vocabulary = ["Dog", "Cat", "Bark", "Unused"]
    clips = clips_from_csv(csv_path, audio, vocabulary=vocabulary)
    assert clips.vocabulary == vocabulary
    assert vocabulary == ["Dog", "Cat", "Bark", "Unused"]
    np.testing.assert_array_equal(clips.targets()[0], [1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"label 'Bark' in row 2 .* not in the vocabulary.*'Dog'"):
        clips_from_csv(csv_path, audio, vocabulary=["Dog", "Cat"])


def test_clips_from_csv_multi_class_and_subset(tmp_path):
    audio = tmp_path / "a"
    for name in ("x", "y", "z"):
        wav(audio / f"{name}.flac")
    csv_path = write(tmp_path / "c.csv", "labels,fname\ncat,x\ndog,y\ncat,z.flac\n")
    clips = clips_from_csv(csv_path, audio)
    assert not clips.multi_label and clips.splits is None
    targets = clips.targets()
    assert targets.dtype == np.int64
    np.testing.assert_array_equal(targets, [0, 1, 0])
    sub = clips.subset([2, 0])
    assert sub.paths == [clips.paths[2], clips.paths[0]] and sub.vocabulary == clips.vocabulary
    np.testing.assert_array_equal(clips.subset(np.array([False, True, False])).targets(), [1])


def test_subset_of_multi_label_stays_multi_label(fsd):
    clips = clips_from_csv(*fsd)
    sub = clips.subset([1, 3])  # both single-label clips
    assert sub.multi_label and sub.splits == ["train", "train"]
    np.testing.assert_array_equal(sub.targets(), [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="indices"):
        clips.subset([4])


@pytest.mark.parametrize("rows, match", [
    ('101,"Bark,Dog",train\n105,Cat,train\n106,Cat,val\n', r"2 of 3 files .* '105', '106'"),
    ('101,"",train\n', "row 2 .* no labels"),
    ("101,Bark,holdout\n", "row 2 .* split 'holdout'"),
    ("101,Bark,train\n102,Cat,train\n101.wav,Dog,val\n", "row 4 .* repeats .* row 2"),
    ("101,Bark,train\n,Dog,val\n", "row 3 .* empty fname"),
])
def test_clips_from_csv_row_errors(fsd, tmp_path, rows, match):
    _, audio = fsd
    with pytest.raises(ValueError, match=match):
        clips_from_csv(write(tmp_path / "bad.csv", "fname,labels,split\n" + rows), audio)


def test_clips_from_csv_file_errors(fsd, tmp_path):
    csv_path, audio = fsd
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['labels'\].*'fname', 'tags'"):
        clips_from_csv(write(tmp_path / "cols.csv", "fname,tags\n101,Bark\n"), audio)
    with pytest.raises(ValueError, match="no clips"):
        clips_from_csv(write(tmp_path / "none.csv", "fname,labels\n"), audio)
    with pytest.raises(MissingFileError):
        clips_from_csv(tmp_path / "absent.csv", audio)
    with pytest.raises(MissingFileError):
        clips_from_csv(csv_path, tmp_path / "absent")
    wav(tmp_path / "amb" / "7.wav")
    wav(tmp_path / "amb" / "7.flac")
    with pytest.raises(ValueError, match="several files"):
        clips_from_csv(write(tmp_path / "amb.csv", "fname,labels\n7,Bark\n"), tmp_path / "amb")


# --------------------------------------------------------------------------------------------------
# clips_from_folders
# --------------------------------------------------------------------------------------------------


def test_clips_from_folders(tmp_path):
    files = {"dog": [wav(tmp_path / "dog" / "a.wav"), wav(tmp_path / "dog" / "sub" / "b.wav")],
             "cat": [wav(tmp_path / "cat" / "c.wav")]}
    (tmp_path / "no_audio").mkdir()
    write(tmp_path / "README.txt", "ignored")
    clips = clips_from_folders(tmp_path)
    assert clips.vocabulary == ["cat", "dog"]
    assert clips.paths == files["cat"] + files["dog"]
    assert clips.labels == [("cat",), ("dog",), ("dog",)]
    assert not clips.multi_label
    np.testing.assert_array_equal(clips.targets(), [0, 1, 1])

    wav(tmp_path / "loose.wav")
    with pytest.raises(ValueError, match="outside a label folder"):
        clips_from_folders(tmp_path)
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValueError, match="no sub-folder with audio"):
        clips_from_folders(tmp_path / "bare")


def test_labelled_clips_validation():
    with pytest.raises(TypeError, match="str"):
        LabelledClips(["a.wav"], ["dog"], ["dog"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        LabelledClips(["a.wav"], [("cow",)], ["dog"])
    with pytest.raises(ValueError, match="splits"):
        LabelledClips(["a.wav"], [("dog",)], ["dog"], ["dev"])
    assert "1 clips" in repr(LabelledClips(["a.wav"], [("dog",)], ["dog"]))


# --------------------------------------------------------------------------------------------------
# split_indices and clip_splits
# --------------------------------------------------------------------------------------------------


def check_partition(parts, n):
    assert list(parts) == ["train", "val", "test"]
    assert all(p.dtype == np.int64 and p.size > 0 and np.all(np.diff(p) > 0) for p in parts.values())
    np.testing.assert_array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(n))


def test_split_indices_deterministic_partition():
    parts = split_indices(1000, seed=3)
    check_partition(parts, 1000)
    assert [p.size for p in parts.values()] == [700, 150, 150]
    again = split_indices(1000, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = split_indices(1000, seed=4)
    assert not np.array_equal(parts["val"], other["val"])
    assert [p.size for p in split_indices(10, fractions=(0.5, 0.25, 0.25)).values()] == [5, 3, 2]
    check_partition(split_indices(3), 3)


def test_split_indices_stratified():
    classes = np.repeat([0, 1, 2, 3], [50, 10, 3, 7])
    parts = split_indices(len(classes), stratify=classes, seed=1)
    check_partition(parts, len(classes))
    for name, fraction in zip(parts, (0.7, 0.15, 0.15)):
        assert set(classes[parts[name]]) == {0, 1, 2, 3}
        assert abs(np.sum(classes[parts[name]] == 0) - 50 * fraction) <= 1
    # Many classes of one or two items must not all round into train.
    small = np.repeat(np.arange(20), 2)
    sizes = [p.size for p in split_indices(40, stratify=small).values()]
    assert abs(sizes[0] - 28) <= 2 and min(sizes) >= 4
    check_partition(split_indices(4, stratify=["a", "b", "c", "d"]), 4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=2), "n must be"),
    (dict(n=10, fractions=(0.5, 0.5)), "3 numbers"),
    (dict(n=10, fractions=(0.8, 0.2, 0.0)), "positive"),
    (dict(n=10, fractions=(0.7, 0.2, 0.2)), "sum to 1"),
    (dict(n=10, stratify=[0, 1]), "stratify"),
    (dict(n=10, seed=-1), "seed"),
])
def test_split_indices_errors(kwargs, match):
    n = kwargs.pop("n")
    with pytest.raises(ValueError, match=match):
        split_indices(n, **kwargs)


def test_clip_splits_without_split_column_is_stratified(tmp_path):
    labels = [("dog",)] * 20 + [("cat",)] * 10
    clips = LabelledClips([f"{i}.wav" for i in range(30)], labels, ["cat", "dog"])
    parts = clip_splits(clips, seed=5)
    check_partition(parts, 30)
    targets = clips.targets()
    assert all(set(targets[p]) == {0, 1} for p in parts.values())
    assert all(np.array_equal(parts[k], clip_splits(clips, seed=5)[k]) for k in parts)


def test_clip_splits_uses_and_completes_given_splits():
    n = 40
    splits = ["train"] * 34 + ["val"] * 6
    clips = LabelledClips([f"{i}.wav" for i in range(n)], [("a", "b")] * n, ["a", "b"], splits)
    parts = clip_splits(clips)
    check_partition(parts, n)
    np.testing.assert_array_equal(parts["val"], np.arange(34, 40))  # the given val is kept
    assert parts["test"].size == round(34 * 0.15 / 0.85)  # test is carved from train
    assert np.all(parts["test"] < 34)

    full = LabelledClips(["a.wav", "b.wav", "c.wav"], [("x",)] * 3, ["x"], ["test", "train", "val"])
    assert {k: v.tolist() for k, v in clip_splits(full).items()} == {"train": [1], "val": [2], "test": [0]}
    with pytest.raises(ValueError, match="too few"):
        clip_splits(LabelledClips(["a.wav", "b.wav"], [("x",)] * 2, ["x"], ["train", "val"]))
    with pytest.raises(ValueError, match="no 'train'"):
        clip_splits(LabelledClips(["a.wav", "b.wav"], [("x",)] * 2, ["x"], ["val", "test"]))
