"""The pipeline on generated tones, built once for the code tests: tokenizer -> codes -> code LM."""
import pytest
import torch

from fastwave.codes.lm_training import train_code_lm
from fastwave.codes.tokenizer import CodeTokenizer
from fastwave.models.code_lm import CodeLM
from fastwave.training.data import split_indices
from small_models import TINY_CODE_LM
from synthetic_audio import timbre_clips


@pytest.fixture(scope="package")
def corpus():
    clips, labels = timbre_clips(per_class=20, seconds=0.5, seed=1)
    tokenizer = CodeTokenizer(n_mels=32, hidden=(64, 32), bottleneck=16, codes=16)
    tokenizer.fit(clips, steps=300, batch_size=32, progress=False)
    codes = [tokenizer.encode(clip) for clip in clips]
    splits = split_indices(len(clips), stratify=labels, seed=0)
    torch.manual_seed(0)
    lm = CodeLM(classes=16, **TINY_CODE_LM)
    train_code_lm(lm, [codes[i] for i in splits["train"]], steps=200, lr=3e-3, progress=False)
    return clips, labels, tokenizer, codes, splits, lm
