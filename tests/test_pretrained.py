"""fastwave.pretrained: the shipped piano WaveNet and the scores it plays."""
import numpy as np
import pytest
import torch

from fastwave import pretrained
from fastwave.corpora.score import KEYS, ROLL_CHANNELS, ROLL_HOP, piano_roll, random_score


def test_piano_cond_is_one_random_score_per_seed():
    cond = pretrained.piano_cond(16000, [0, 7])
    rolls = cond["local_cond"]
    assert isinstance(rolls, torch.Tensor) and rolls.dtype == torch.float32
    assert rolls.shape == (2, ROLL_CHANNELS, 16000 // ROLL_HOP)
    assert np.array_equal(rolls[1].numpy(), piano_roll(random_score(1.0, 7), 16000))
    assert not torch.equal(rolls[0], rolls[1])
    assert rolls[0, KEYS:].sum() > 0  # notes are struck
    assert torch.equal(pretrained.piano_cond(16000, 7)["local_cond"][0], rolls[1])


@pytest.mark.parametrize("samples, seeds, message", [(0, [0], "positive int"), (100, [], "at least one")])
def test_piano_cond_refuses_bad_input(samples, seeds, message):
    with pytest.raises(ValueError, match=message):
        pretrained.piano_cond(samples, seeds)


def test_a_missing_shipped_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PIANO_WAVENET", str(tmp_path / "absent.safetensors"))
    with pytest.raises(FileNotFoundError, match="no shipped piano model"):
        pretrained.piano_wavenet()
