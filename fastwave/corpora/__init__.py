"""Real-instrument corpora rendered from a General MIDI SoundFont, deterministic from a seed.

* ``notes``: NSynth-like single notes (1 s or 2 s, 16 kHz) over the 128 GM programs, labelled by
  instrument family (the 16 GM families): multi-class.
* ``mixtures``: 1 s clips mixing 1-3 notes or short phrases from different families at random
  gains, labelled with every family present: multi-label, an FSD50K-style CSV.
* ``phrases``: 5 s solo melodies (one program each, chords now and then), for pretraining
  unlabelled; ``plan_phrases(programs=...)`` restricts them to a fold's training programs.
* ``piano``: phrases (melodies over chords, dynamics) on the acoustic pianos, for sample models. Its
  test piano (FluidR3_GM's program 1) plays a training piano's samples (``twins``);
  ``plan_piano_phrases`` plays the same generator's phrases on a chosen piano, e.g. another font's.

Splits hold out whole programs (``plans.program_splits``, ``plans.PIANO_SPLITS``): the test set is
instruments no model heard. ``plan_corpus`` decides every note from the seed (no audio, no
SoundFont needed); ``SoundFontRenderer`` plays plans with FluidR3_GM through tinysoundfont;
``write_corpus`` writes the WAVs, ``labels.csv`` (read by ``fastwave.training.data.clips_from_csv``) and
``corpus.json``. The command: ``fastwave corpus {notes,mixtures,phrases,piano} --out DIR``.
"""
from .build import KINDS, plan_corpus, write_corpus
from .gm import FAMILIES, family
from .plans import PIANO_SPLITS, Clip, Note, Source, plan_phrases, program_folds, program_splits
from .piano import plan_piano_phrases
from .render import DEFAULT_SOUNDFONT, SoundFontRenderer

__all__ = ["DEFAULT_SOUNDFONT", "FAMILIES", "KINDS", "PIANO_SPLITS", "Clip", "Note", "SoundFontRenderer", "Source",
           "family", "plan_corpus", "plan_phrases", "plan_piano_phrases", "program_folds", "program_splits", "write_corpus"]
