"""The code LM: the sample-model contract over codes, embeddings per clip, training and metrics."""
import math

import pytest
import torch

import fastwave
from fastwave.models.code_lm import CodeLM, CodeLMConfig, code_lm_metrics, train_code_lm


def small_lm(**overrides):
    torch.manual_seed(0)
    return CodeLM(**{"classes": 8, "layers": 2, "heads": 2, "width": 32, "context": 16, **overrides}).eval()


def test_forward_shape_and_causality():
    lm = small_lm()
    codes = torch.randint(8, (2, 40))
    logits = lm(codes)
    assert logits.shape == (2, 8, 40)
    changed = codes.clone()
    changed[:, 30:] = (changed[:, 30:] + 1) % 8
    torch.testing.assert_close(lm(changed)[:, :, :30], logits[:, :, :30], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(lm(changed)[:, :, 30:], logits[:, :, 30:])


def test_shares_the_sample_transformer_blocks():
    from fastwave.models.blocks import TransformerBlock

    lm = small_lm()
    assert all(isinstance(block, TransformerBlock) for block in lm.layers)


def test_embed_is_the_mean_final_state_and_padding_does_not_leak():
    lm = small_lm()
    clips = [torch.randint(8, (n,)) for n in (5, 17, 40, 1)]
    vectors = lm.embed(clips, batch_size=3)
    assert vectors.shape == (4, 32) and vectors.dtype == torch.float32
    for clip, vector in zip(clips, vectors):
        alone = lm.hidden(clip[None]).mean(1)[0]
        torch.testing.assert_close(vector, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lm.embed(torch.stack([clips[2], clips[2]])), vectors[[2, 2]], rtol=1e-5, atol=1e-5)


def test_embed_restores_training_mode():
    lm = small_lm(dropout=0.1).train()
    first = lm.embed([torch.arange(8)])
    assert lm.training
    torch.testing.assert_close(lm.embed([torch.arange(8)]), first)  # dropout was off


def test_overfits_a_tiny_code_corpus():
    lm = small_lm()
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
    lm = small_lm(classes=64, width=32)
    metrics = code_lm_metrics(lm, torch.randint(64, (4, 50)))
    assert 50 < metrics["perplexity"] < 80  # N(0, 0.02) weights: logits near 0, all codes alike


def test_checkpoint_round_trip(tmp_path):
    lm = small_lm()
    lm.save(tmp_path / "lm.safetensors")
    loaded = fastwave.load_model(tmp_path / "lm.safetensors")
    assert isinstance(loaded, CodeLM) and loaded.config == lm.config
    codes = torch.randint(8, (1, 30))
    torch.testing.assert_close(loaded(codes), lm(codes))


@pytest.mark.parametrize("overrides, message", [
    ({"classes": 1}, "classes"), ({"width": 24, "heads": 2}, "head size"), ({"layers": 0}, "layers"),
    ({"dropout": 1.0}, "dropout"), ({"context": True}, "context")])
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        CodeLMConfig(**overrides)


def test_bad_codes():
    lm = small_lm()
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        lm(torch.tensor([[0, 8]]))
    with pytest.raises(ValueError, match="empty"):
        lm.embed([torch.tensor([1, 2]), torch.tensor([], dtype=torch.int64)])
    with pytest.raises(ValueError, match="at least 2"):
        train_code_lm(lm, [torch.tensor([1, 2, 3]), torch.tensor([4])], steps=1, progress=False)


def test_one_short_clip_does_not_shorten_the_crops(monkeypatch):
    import fastwave.train

    lengths = []
    real = fastwave.train.sample_crops

    def spy(streams, batch_size, length, generator, align=1):
        lengths.append(length)
        return real(streams, batch_size, length, generator, align)

    monkeypatch.setattr(fastwave.train, "sample_crops", spy)
    lm = small_lm()
    long = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 10)
    history = train_code_lm(lm, [long, long.flip(0), torch.tensor([2, 5])], steps=100, lr=3e-3, progress=False)
    assert set(lengths) == {lm.config.context + 1}  # whole-context crops; the 2-code clip is padded
    assert history["loss"][-1] < 0.5


def test_pooled_lengths_and_empty_inputs():
    lm = small_lm()
    codes = torch.randint(8, (2, 5))
    with pytest.raises(ValueError, match="lengths"):
        lm.pooled(codes, [0, 5])
    with pytest.raises(ValueError, match="lengths"):
        lm.pooled(codes, [3, 6])
    with pytest.raises(ValueError, match="no clips"):
        code_lm_metrics(lm, [])
    with pytest.raises(ValueError, match="at least 2"):
        code_lm_metrics(lm, [torch.tensor([1])])
