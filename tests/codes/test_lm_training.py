"""Training and scoring the code LM (fastwave.codes.lm_training): it learns a tiny corpus, its
untrained perplexity, whole-context crops, and refused inputs."""
import math

import pytest
import torch

from fastwave.codes.lm_training import code_lm_metrics, train_code_lm
from small_models import small_code_lm


def test_overfits_a_tiny_code_corpus():
    lm = small_code_lm()
    corpus = [torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 6), torch.tensor([7, 5, 3, 1] * 10)]
    history = train_code_lm(lm, corpus, steps=200, lr=3e-3, batch_size=8, progress=False)
    metrics = code_lm_metrics(lm, corpus)
    # The first code of each pattern and the branch point after 7 are the only uncertain targets.
    assert metrics["top1"] > 0.95, metrics
    assert metrics["perplexity"] < 1.2
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert math.isclose(metrics["perplexity"], math.exp(metrics["nll_nats"]))
    assert math.isclose(metrics["bits_per_code"], metrics["nll_nats"] / math.log(2))


def test_untrained_perplexity_is_near_the_number_of_codes():
    lm = small_code_lm(classes=64, width=32)
    metrics = code_lm_metrics(lm, torch.randint(64, (4, 50)))
    assert 50 < metrics["perplexity"] < 80  # N(0, 0.02) weights: logits near 0, all codes alike


def test_one_short_clip_does_not_shorten_the_crops(monkeypatch):
    import fastwave.training.sample_models

    lengths = []
    real = fastwave.training.sample_models.sample_crops

    def spy(streams, batch_size, length, generator, align=1):
        lengths.append(length)
        return real(streams, batch_size, length, generator, align)

    monkeypatch.setattr(fastwave.training.sample_models, "sample_crops", spy)
    lm = small_code_lm()
    long = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 10)
    history = train_code_lm(lm, [long, long.flip(0), torch.tensor([2, 5])], steps=100, lr=3e-3, progress=False)
    assert set(lengths) == {lm.config.context + 1}  # whole-context crops; the 2-code clip is padded
    assert history["loss"][-1] < 0.5


def test_refuses_clips_too_short_to_score_or_train():
    lm = small_code_lm()
    with pytest.raises(ValueError, match="at least 2"):
        train_code_lm(lm, [torch.tensor([1, 2, 3]), torch.tensor([4])], steps=1, progress=False)
    with pytest.raises(ValueError, match="no clips"):
        code_lm_metrics(lm, [])
    with pytest.raises(ValueError, match="at least 2"):
        code_lm_metrics(lm, [torch.tensor([1])])
