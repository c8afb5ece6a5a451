"""Collections of audio files, with or without labels, and deterministic train/val/test splits.

* ``audio_files`` lists the audio under folders (recursively) and/or given files.
* ``LabelledClips`` holds one path and one tuple of label names per clip, with a vocabulary; it
  gives targets as class ids (multi-class) or multi-hot rows (multi-label).
* ``clips_from_csv`` reads FSD50K-style CSVs (``fname,labels[,split]``); ``clips_from_folders``
  takes the labels from sub-folder names (``root/<label>/**/*.wav``).
* ``split_indices`` / ``clip_splits`` give train/val/test index arrays, stratified by class where
  possible, fixed by a seed.

Clips are whole files here: cutting them into fixed-length chunks is left to the caller. Bad input
raises ValueError / TypeError naming the argument, row or file; nothing passed in is modified.
soundfile is not needed here: files are recognised by their extension.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import difflib
import numbers
import os

import numpy as np

from .._checks import MissingFileError, check_file, check_int_arg

__all__ = ["AUDIO_EXTENSIONS", "LabelledClips", "audio_files", "clip_splits", "clips_from_csv",
           "clips_from_folders", "split_indices"]

# Extensions of the containers libsndfile (so load_audio) reads; matched case-insensitively. A fixed
# list rather than soundfile.available_formats(): those are format names, not extensions.
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc",
                    ".au", ".snd", ".caf", ".w64", ".rf64")
SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _is_audio(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _walk_audio(folder: str) -> list[str]:
    """Audio files under ``folder`` (recursive, hidden entries skipped), sorted; [] when none."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders (.git, .cache)
        found += [os.path.join(parent, f) for f in files if not f.startswith(".") and _is_audio(f)]
    return sorted(found)


def _check_dir(path, name: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(2, f"{name}: no such folder", path)
    if not os.path.isdir(path):
        raise ValueError(f"{name} must be a folder, got a file: {path}")
    return path


def audio_files(sources) -> list[str]:
    """The audio files in ``sources``: a folder, a file, or a list/tuple of folders and files.

    Folders are searched recursively for files with an extension in ``AUDIO_EXTENSIONS`` (any case),
    skipping names that start with '.', and their files come sorted; explicit files are kept as given
    (whatever their extension), in order. A path met twice is listed once, at its first place.

    Raises:
        MissingFileError: a source does not exist. ValueError: a folder holds no audio, or
        ``sources`` is empty. TypeError: a source is not a path.
    """
    items = list(sources) if isinstance(sources, (list, tuple)) else [sources]
    if not items:
        raise ValueError("sources is empty: give a folder, a file, or a list of them")
    result, seen = [], set()
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"sources must hold paths (str or os.PathLike), got {type(item).__name__}")
        path = os.fspath(item)
        if not os.path.exists(path):
            raise MissingFileError(2, "sources: no such file or folder", path)
        found = _walk_audio(path) if os.path.isdir(path) else [path]
        if not found:
            raise ValueError(f"sources: folder {path!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS[:5])}, ...)")
        for file in found:
            key = os.path.normcase(os.path.abspath(file))  # 'a/x.wav' and './a/x.wav' are one file
            if key not in seen:
                seen.add(key)
                result.append(file)
    return result


@dataclasses.dataclass(repr=False)
class LabelledClips:
    """Audio clips with label names: ``paths[i]`` has labels ``labels[i]`` (names from ``vocabulary``).

    ``splits`` is ``None`` or one of 'train' / 'val' / 'test' per clip. ``force_multi_label`` keeps
    the multi-hot targets when every clip happens to have one label (``subset`` sets it, so that a
    subset of multi-label data keeps its parent's target shape). The lists are copied on construction.
    """

    paths: list[str]
    labels: list[tuple[str, ...]]
    vocabulary: list[str]
    splits: list[str] | None = None
    force_multi_label: bool = False

    def __post_init__(self):
        self.paths = [os.fspath(p) for p in self.paths]
        self.vocabulary = list(self.vocabulary)
        known = set(self.vocabulary)
        if len(known) != len(self.vocabulary) or not all(isinstance(v, str) for v in self.vocabulary):
            raise ValueError("vocabulary must hold distinct label names (str)")
        labels = []
        for i, clip_labels in enumerate(self.labels):
            if isinstance(clip_labels, str):  # tuple('dog') would silently become ('d', 'o', 'g')
                raise TypeError(f"labels[{i}] must be a tuple of label names, got the str {clip_labels!r}")
            clip_labels = tuple(clip_labels)
            unknown = [name for name in clip_labels if name not in known]
            if unknown or len(set(clip_labels)) != len(clip_labels):
                raise ValueError(f"labels[{i}] = {clip_labels} has repeated names or names not in the vocabulary")
            labels.append(clip_labels)
        self.labels = labels
        if len(labels) != len(self.paths):
            raise ValueError(f"labels has {len(labels)} entries but paths has {len(self.paths)}")
        if self.splits is not None:
            self.splits = list(self.splits)
            bad = {s for s in self.splits if s not in SPLITS}
            if len(self.splits) != len(self.paths) or bad:
                raise ValueError(f"splits must hold one of {SPLITS} per clip; got {len(self.splits)} "
                                 f"entries for {len(self.paths)} clips, unknown values {sorted(map(str, bad))}")

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:  # the default would print every path
        kind = "multi-label" if self.multi_label else "multi-class"
        splits = "" if self.splits is None else f", splits={ {s: self.splits.count(s) for s in SPLITS} }"
        return f"LabelledClips({len(self)} clips, {len(self.vocabulary)} labels, {kind}{splits})"

    @property
    def multi_label(self) -> bool:
        """True when some clip has no label or several (or ``force_multi_label``)."""
        return self.force_multi_label or any(len(names) != 1 for names in self.labels)

    def label_ids(self) -> list[list[int]]:
        """Per clip, the indices of its labels in ``vocabulary``."""
        index = {name: i for i, name in enumerate(self.vocabulary)}
        return [[index[name] for name in names] for names in self.labels]

    def targets(self) -> np.ndarray:
        """Multi-class: int64 class ids ``(N,)``. Multi-label: float32 multi-hot ``(N, C)``, C = len(vocabulary)."""
        ids = self.label_ids()
        if not self.multi_label:
            return np.array([clip_ids[0] for clip_ids in ids], dtype=np.int64).reshape(len(ids))
        hot = np.zeros((len(ids), len(self.vocabulary)), dtype=np.float32)
        for row, clip_ids in enumerate(ids):
            hot[row, clip_ids] = 1.0
        return hot

    def subset(self, indices) -> LabelledClips:
        """The clips at ``indices`` (ints in [0, N), repeats allowed, or a boolean mask of length N);
        same vocabulary, and multi-label data stays multi-label."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            if indices.shape != (len(self),):
                raise ValueError(f"a boolean mask for indices must have shape ({len(self)},), got {indices.shape}")
            indices = np.flatnonzero(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise TypeError(f"indices must be a 1-D sequence of ints or a boolean mask, got {indices.dtype} "
                            f"shape {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}), got [{indices.min()}, {indices.max()}]")
        picked = indices.astype(np.int64).tolist()
        return LabelledClips([self.paths[i] for i in picked], [self.labels[i] for i in picked], self.vocabulary,
                             None if self.splits is None else [self.splits[i] for i in picked], self.multi_label)


def _split_labels(field: str) -> tuple[str, ...]:
    names = [name.strip() for name in field.split(",")]
    return tuple(dict.fromkeys(name for name in names if name))  # drop blanks and repeats, keep order


def _check_vocabulary(vocabulary) -> list[str]:
    if isinstance(vocabulary, str) or not isinstance(vocabulary, (list, tuple)):
        raise TypeError(f"vocabulary must be a list or tuple of label names, got {type(vocabulary).__name__}")
    if not vocabulary or not all(isinstance(v, str) and v for v in vocabulary):
        raise ValueError("vocabulary must hold at least one non-empty label name (str)")
    if len(set(vocabulary)) != len(vocabulary):
        raise ValueError("vocabulary holds repeated label names")
    return list(vocabulary)


def clips_from_csv(csv_path, audio_dir, *, vocabulary=None) -> LabelledClips:
    """Clips listed in an FSD50K-style CSV, e.g. ``fname,labels,mids,split`` /
    ``64760,"Bark,Dog",...,train``.

    Columns (others are ignored): ``fname``, the file under ``audio_dir``: an exact relative path,
    else the unique audio file whose path without extension equals it (``64760`` -> ``64760.wav``);
    ``labels``, comma-separated label names (blanks and repeats dropped); optional ``split``:
    'train', 'val' (or 'valid' / 'validation') or 'test', any case.

    ``vocabulary``: if given, every label must be in it and it is kept as given (its order fixes the
    class ids); else the sorted set of labels seen. Rows are named by their line in the file.

    Raises:
        MissingFileError: ``csv_path`` or ``audio_dir`` does not exist. ValueError: missing columns,
        no rows, an empty fname or labels field, a bad split, a label not in ``vocabulary``, a
        repeated file, an ambiguous fname, or files missing from ``audio_dir`` (all are counted).
    """
    csv_path = check_file(csv_path, "csv_path")
    audio_dir = _check_dir(audio_dir, "audio_dir")
    if vocabulary is not None:
        vocabulary = _check_vocabulary(vocabulary)
    by_stem = None  # built on the first fname that is not an exact file name
    paths, labels, splits, missing, rows_of = [], [], [], [], {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a BOM
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        lacking = [c for c in ("fname", "labels") if c not in header]
        if lacking:
            raise ValueError(f"{csv_path} lacks the column(s) {lacking}; its header has {header}")
        col = {name: header.index(name) for name in ("fname", "labels", "split") if name in header}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"row {reader.line_num} of {csv_path}"
            cell = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
            fname = cell["fname"]
            if not fname:
                raise ValueError(f"{where} has an empty fname")
            names = _split_labels(cell["labels"])
            if not names:
                raise ValueError(f"{where} (fname {fname!r}) has no labels")
            for name in names:
                if vocabulary is not None and name not in vocabulary:
                    near = difflib.get_close_matches(name, vocabulary, n=3) or vocabulary[:5]
                    raise ValueError(f"label {name!r} in {where} is not in the vocabulary "
                                     f"({len(vocabulary)} labels, e.g. {near})")
            if "split" in col:
                if cell["split"].lower() not in _SPLIT_NAMES:
                    raise ValueError(f"{where} has split {cell['split']!r}; expected train, val or test")
                splits.append(_SPLIT_NAMES[cell["split"].lower()])
            path = os.path.join(audio_dir, fname)
            if not os.path.isfile(path):
                if by_stem is None:
                    by_stem = {}
                    for file in _walk_audio(audio_dir):
                        stem = os.path.splitext(os.path.relpath(file, audio_dir))[0].replace(os.sep, "/")
                        by_stem.setdefault(stem, []).append(file)
                found = by_stem.get(fname.replace(os.sep, "/"), [])
                if len(found) > 1:
                    raise ValueError(f"fname {fname!r} in {where} matches several files: {found}")
                path = found[0] if found else None
                if path is None:
                    missing.append(fname)
            key = fname if path is None else os.path.normcase(os.path.abspath(path))
            if key in rows_of:
                raise ValueError(f"{where} repeats the file {fname!r} of row {rows_of[key]}")
            rows_of[key] = reader.line_num
            paths.append(path)
            labels.append(names)
    if not paths:
        raise ValueError(f"{csv_path} lists no clips")
    if missing:
        raise ValueError(f"{len(missing)} of {len(paths)} files listed in {csv_path} are not in {audio_dir}: "
                         f"{', '.join(map(repr, missing[:5]))}{', ...' if len(missing) > 5 else ''}")
    if vocabulary is None:
        vocabulary = sorted({name for names in labels for name in names})
    return LabelledClips(paths, labels, vocabulary, splits if "split" in col else None)


def clips_from_folders(root) -> LabelledClips:
    """Multi-class clips labelled by folder: every audio file under ``root/<label>/`` (at any depth)
    gets the label ``<label>``. Sub-folders without audio, hidden entries and non-audio files are
    ignored; one label is accepted (a classifier needs two: check ``len(clips.vocabulary)``).

    Raises:
        MissingFileError: no ``root``. ValueError: audio files directly in ``root`` (they have no
        label), or no sub-folder with audio.
    """
    root = _check_dir(root, "root")
    entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
    loose = [e for e in entries if _is_audio(e) and os.path.isfile(os.path.join(root, e))]
    if loose:
        raise ValueError(f"root {root!r} holds audio files outside a label folder, e.g. {loose[:3]}; "
                         "move them into root/<label>/")
    paths, labels = [], []
    for label in entries:
        if os.path.isdir(os.path.join(root, label)):
            files = _walk_audio(os.path.join(root, label))
            paths += files
            labels += [(label,)] * len(files)
    if not paths:
        raise ValueError(f"root {root!r} has no sub-folder with audio files; expected root/<label>/*.wav")
    return LabelledClips(paths, labels, sorted({names[0] for names in labels}))


def _check_fractions(fractions) -> tuple[float, ...]:
    if isinstance(fractions, (str, bytes)) or not hasattr(fractions, "__len__") or len(fractions) != 3:
        raise ValueError(f"fractions must be 3 numbers (train, val, test), got {fractions!r}")
    if not all(isinstance(f, numbers.Real) and not isinstance(f, bool) and 0 < f < 1 for f in fractions):
        raise ValueError(f"fractions must be positive numbers below 1, got {fractions!r}")
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fractions)})")
    return tuple(float(f) for f in fractions)


def _split(n: int, fractions, rng: np.random.Generator, stratify=None) -> list[np.ndarray]:
    """Split range(n) into len(fractions) parts, each class on its own; sorted int64 arrays."""
    fractions = np.asarray(fractions, dtype=np.float64) / sum(fractions)
    k = len(fractions)
    classes = np.zeros(n, np.int64) if stratify is None else np.unique(stratify, return_inverse=True)[1]
    parts = [[] for _ in range(k)]
    done = 0
    for c in range(int(classes.max()) + 1):
        members = rng.permutation(np.flatnonzero(classes == c))
        counts = np.floor(len(members) * fractions).astype(np.int64)
        done += len(members)
        # The leftover (< k items) goes to the parts furthest below their share of all items so far,
        # so many small classes do not all round into 'train'.
        for _ in range(len(members) - int(counts.sum())):
            have = np.array([len(p) for p in parts]) + counts
            counts[int(np.argmax(done * fractions - have))] += 1
        if len(members) >= k:  # every part gets at least one of this class
            for empty in np.flatnonzero(counts == 0):
                counts[np.argmax(counts)] -= 1
                counts[empty] += 1
        for part, chunk in zip(parts, np.split(members, np.cumsum(counts)[:-1])):
            part.extend(chunk.tolist())
    for empty in [i for i in range(k) if not parts[i]]:  # possible when every class has < k items
        donor = max(range(k), key=lambda i: len(parts[i]))
        counts = collections.Counter(classes[parts[donor]].tolist())  # take from its commonest class
        taken = max(parts[donor], key=lambda j: counts[classes[j]])
        parts[donor].remove(taken)
        parts[empty].append(taken)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def split_indices(n, *, fractions=(0.7, 0.15, 0.15), seed=0, stratify=None) -> dict[str, np.ndarray]:
    """A random split of ``range(n)`` into {'train', 'val', 'test'}: sorted int64 index arrays that are
    disjoint, cover every index, and hold about ``fractions`` of the items each (none is empty).

    ``seed`` (int >= 0) fixes the split (numpy PCG64). ``stratify``: a class id (any sortable value)
    per item; each class is then split on its own, so every split holds its share of every class as
    far as the counts allow (a class of >= 3 items is in every split).

    Raises:
        ValueError: ``n < 3``, fractions not 3 positive numbers summing to 1, a bad seed, or
        ``stratify`` not of length ``n``.
    """
    n = check_int_arg(n, "n", minimum=3)
    fractions = _check_fractions(fractions)
    seed = check_int_arg(seed, "seed", minimum=0)
    if stratify is not None:
        stratify = np.asarray(stratify)
        if stratify.shape != (n,):
            raise ValueError(f"stratify must hold one class per item, shape ({n},); got {stratify.shape}")
    parts = _split(n, fractions, np.random.Generator(np.random.PCG64(seed)), stratify)
    return dict(zip(SPLITS, parts))


def clip_splits(clips: LabelledClips, *, seed=0, fractions=(0.7, 0.15, 0.15)) -> dict[str, np.ndarray]:
    """Train/val/test index arrays (sorted int64) into ``clips``.

    Without ``clips.splits``: ``split_indices`` with ``fractions``, stratified by class for multi-class
    clips (multi-label ones are split at random). With ``clips.splits``: those splits; a missing 'val'
    and/or 'test' (FSD50K's dev.csv has no test) is carved out of 'train', in the ratio of the
    matching ``fractions`` (0.7 : 0.15 gives test 0.15 / 0.85 of train), stratified likewise.
    ``seed`` fixes the random parts. ValueError when there is no 'train' to carve from, or it is
    too small.
    """
    if not isinstance(clips, LabelledClips):
        raise TypeError(f"clips must be a LabelledClips, got {type(clips).__name__}")
    fractions = _check_fractions(fractions)
    classes = None if clips.multi_label else np.array([ids[0] for ids in clips.label_ids()], np.int64)
    if clips.splits is None:
        return split_indices(len(clips), fractions=fractions, seed=seed, stratify=classes)
    seed = check_int_arg(seed, "seed", minimum=0)
    given = np.asarray(clips.splits)
    result = {name: np.flatnonzero(given == name).astype(np.int64) for name in SPLITS}
    if result["train"].size == 0:
        raise ValueError("clips.splits has no 'train' clips; pass clips with splits=None to split them at random")
    absent = [name for name in SPLITS[1:] if result[name].size == 0]
    if absent:
        train = result["train"]
        if train.size < 1 + len(absent):
            raise ValueError(f"clips have no {' or '.join(absent)} split and {train.size} 'train' clips, "
                             f"too few to carve {' and '.join(absent)} from")
        shares = [fractions[0]] + [fractions[SPLITS.index(name)] for name in absent]
        rng = np.random.Generator(np.random.PCG64(seed))
        parts = _split(train.size, shares, rng, None if classes is None else classes[train])
        for name, part in zip(["train"] + absent, parts):
            result[name] = train[part]
    return result


def check_splits(splits, n: int) -> dict[str, np.ndarray]:
    """{"train", "val", "test"} -> int64 index arrays into n items: each non-empty, in range, and no
    item in two splits (a test item seen in training would inflate the score)."""
    if not isinstance(splits, dict) or set(splits) != set(SPLITS):
        raise ValueError(f"splits must be a dict with keys {SPLITS} (fastwave.training.data.clip_splits), got "
                         f"{sorted(splits) if isinstance(splits, dict) else type(splits).__name__}")
    result = {name: np.asarray(splits[name], dtype=np.int64) for name in SPLITS}
    for name, index in result.items():
        if index.ndim != 1 or len(index) == 0 or index.min() < 0 or index.max() >= n:
            raise ValueError(f"splits[{name!r}] must be non-empty indices in [0, {n})")
    every = np.concatenate(list(result.values()))
    if len(np.unique(every)) != len(every):
        raise ValueError("splits overlap (or repeat an index): each item must be in one split once")
    return result
