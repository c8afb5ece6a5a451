"""The code LM model: the sample-model contract over codes, embeddings per clip, its checkpoint and
config errors (training and metrics: tests/codes/test_lm_training.py)."""
import pytest
import torch

import fastwave
from fastwave.models.code_lm import CodeLM, CodeLMConfig
from small_models import small_code_lm


def test_forward_shape_and_causality():
    lm = small_code_lm()
    codes = torch.randint(8, (2, 40))
    logits = lm(codes)
    assert logits.shape == (2, 8, 40)
    changed = codes.clone()
    changed[:, 30:] = (changed[:, 30:] + 1) % 8
    torch.testing.assert_close(lm(changed)[:, :, :30], logits[:, :, :30], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(lm(changed)[:, :, 30:], logits[:, :, 30:])


def test_shares_the_sample_transformer_blocks():
    from fastwave.models.blocks import TransformerBlock

    lm = small_code_lm()
    assert all(isinstance(block, TransformerBlock) for block in lm.layers)


def test_embed_is_the_mean_final_state_and_padding_does_not_leak():
    lm = small_code_lm()
    clips = [torch.randint(8, (n,)) for n in (5, 17, 40, 1)]
    vectors = lm.embed(clips, batch_size=3)
    assert vectors.shape == (4, 32) and vectors.dtype == torch.float32
    for clip, vector in zip(clips, vectors):
        alone = lm.hidden(clip[None]).mean(1)[0]
        torch.testing.assert_close(vector, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lm.embed(torch.stack([clips[2], clips[2]])), vectors[[2, 2]], rtol=1e-5, atol=1e-5)


def test_embed_restores_training_mode():
    lm = small_code_lm(dropout=0.1).train()
    first = lm.embed([torch.arange(8)])
    assert lm.training
    torch.testing.assert_close(lm.embed([torch.arange(8)]), first)  # dropout was off


def test_checkpoint_round_trip(tmp_path):
    lm = small_code_lm()
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
    lm = small_code_lm()
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        lm(torch.tensor([[0, 8]]))
    with pytest.raises(ValueError, match="empty"):
        lm.embed([torch.tensor([1, 2]), torch.tensor([], dtype=torch.int64)])


def test_pooled_lengths():
    lm = small_code_lm()
    codes = torch.randint(8, (2, 5))
    with pytest.raises(ValueError, match="lengths"):
        lm.pooled(codes, [0, 5])
    with pytest.raises(ValueError, match="lengths"):
        lm.pooled(codes, [3, 6])


def test_hidden_layers_are_the_residual_stream_after_that_many_blocks():
    lm = small_code_lm().eval()
    codes = torch.randint(8, (2, 12))
    x = lm.embedding(codes)
    torch.testing.assert_close(lm.hidden(codes, 0), x)
    from fastwave.models.blocks import run_blocks

    c = lm.config
    after_one = run_blocks(lm.layers[:1], x, start=0, context=c.context, head_dim=c.head_dim, rope_base=c.rope_base)
    torch.testing.assert_close(lm.hidden(codes, 1), after_one)
    torch.testing.assert_close(lm.hidden(codes, c.layers), lm.hidden(codes))  # the last layer is the normed output
    assert not torch.allclose(lm.hidden(codes, 1), lm.hidden(codes, 0))


def test_poolings_over_each_clip_ignore_padding():
    lm = small_code_lm()
    clips = [torch.randint(8, (n,)) for n in (3, 11, 1)]
    for layer in (0, 1, None):
        states = [lm.hidden(clip[None], layer)[0] for clip in clips]
        mean_max = lm.embed(clips, layer=layer, pooling="mean+max")
        mean_std = lm.embed(clips, layer=layer, pooling="mean+std")
        assert mean_max.shape == mean_std.shape == (3, 64)
        for state, with_max, with_std in zip(states, mean_max, mean_std):
            torch.testing.assert_close(with_max, torch.cat([state.mean(0), state.amax(0)]), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(with_std, torch.cat([state.mean(0), state.std(0, unbiased=False).clamp_min(1e-6)]),
                                       rtol=1e-5, atol=1e-5)


def test_std_pooling_has_finite_gradients_on_a_one_code_clip():
    lm = small_code_lm()
    lm.pooled(torch.tensor([[3]]), pooling="mean+std").sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in lm.parameters() if p.grad is not None)


@pytest.mark.parametrize("kwargs, message", [({"layer": 3}, r"layer must be .*\[0, 2\]"), ({"layer": -1}, "layer"),
                                             ({"layer": True}, "layer"), ({"pooling": "max"}, "pooling must be one of")])
def test_bad_layer_or_pooling(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_code_lm().embed([torch.tensor([1, 2])], **kwargs)
