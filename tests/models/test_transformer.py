"""The sample Transformer: the model's contract (shapes, causality, the sliding window, the exported
layout read independently in numpy), and its KV-cache engine held to the full forward."""
import math

import numpy as np
import pytest
import torch

import fastwave
from fastwave import SampleTransformer
from fastwave.engines.transformer_torch import TorchTransformerEngine
from small_models import CONDITIONED_TRANSFORMER, TINY_TRANSFORMER, make_transformer, rel_error

POLICIES = [
    dict(temperature=1.0),
    dict(temperature=0.0),
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.3, top_p=0.8),
]


def test_defaults_are_the_papers_three_layer_model():
    model = SampleTransformer()
    c = model.config
    assert (c.layers, c.heads, c.width, c.context, c.classes) == (3, 4, 128, 1600, 256)
    assert model.receptive_field == 3 * 1599 + 1
    conditioned = SampleTransformer.conditioned()
    assert conditioned.config.cond_window == 4000 and conditioned.config.cond_patches * 250 >= 4000
    logits = make_transformer()(torch.randint(0, 32, (3, 20)))
    assert logits.shape == (3, 32, 20)


@pytest.mark.parametrize("bad", [dict(width=30), dict(heads=3), dict(width=8, heads=1), dict(context=0),
                                 dict(classes=1), dict(cond_window=-1), dict(cond_kernel=5), dict(cond_kernel=2.0),
                                 dict(rope_base=float("inf")), dict(dropout=1.0)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        SampleTransformer(**{**TINY_TRANSFORMER, **bad})


@pytest.mark.parametrize("kw", [{}, CONDITIONED_TRANSFORMER])
def test_causal_and_banded(kw):
    """Logits at t ignore tokens after t and, past the context, tokens before t - layers * (context - 1)."""
    model = make_transformer(**kw)
    c = model.config
    t, length = 40, 48
    span = c.layers * (c.context - 1)  # the earliest token the attention chain reaches is t - span
    tokens = torch.randint(0, 32, (1, length))
    with torch.no_grad():
        base = model(tokens)[0, :, t]
        later = tokens.clone()
        later[0, t + 1:] = (later[0, t + 1:] + 1) % 32
        assert torch.equal(model(later)[0, :, t], base)
        if not c.cond_window:  # the conditioned variant reaches further back through its CNN
            early = tokens.clone()
            early[0, :t - span] = (early[0, :t - span] + 1) % 32
            assert torch.allclose(model(early)[0, :, t], base, atol=1e-5)
        edge = tokens.clone()
        edge[0, t - span] = (edge[0, t - span] + 1) % 32
        assert not torch.allclose(model(edge)[0, :, t], base, atol=1e-4)


def test_one_layer_window_equals_a_forward_over_the_window():
    """Rotary positions: the banded forward at t equals a forward over just the last context tokens."""
    model = make_transformer(layers=1)
    tokens = torch.randint(0, 32, (2, 30))
    with torch.no_grad():
        full = model(tokens)[:, :, -1]
        window = model(tokens[:, -model.config.context:])[:, :, -1]
    assert rel_error(window, full) < 1e-5


def test_conditioning_latent_reads_only_the_window_before_its_block():
    model = make_transformer(**CONDITIONED_TRANSFORMER)
    hop, patches = model.config.cond_hop, model.config.cond_patches
    tokens = torch.randint(0, 32, (1, 64))
    q = 10  # block 10 starts at sample 40 and reads samples [40 - 16, 40)
    with torch.no_grad():
        base = model.context_latents(tokens)[0, q]
        changed = tokens.clone()
        changed[0, q * hop:] = (changed[0, q * hop:] + 7) % 32  # its own block and later
        changed[0, :(q - patches) * hop] = (changed[0, :(q - patches) * hop] + 7) % 32  # older than the window
        assert torch.allclose(model.context_latents(changed)[0, q], base, atol=1e-6)
        inside = tokens.clone()
        inside[0, q * hop - 1] = (inside[0, q * hop - 1] + 16) % 32
        assert not torch.allclose(model.context_latents(inside)[0, q], base, atol=1e-6)


def numpy_logits(config, w, tokens):
    """An independent reading of export_weights' layout: the model's forward in float64 numpy over a
    sequence within the context (full causal attention)."""
    def layer_norm(x, g, b):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * g + b

    def gelu(x):
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))

    heads, d, width = config["heads"], config["head_dim"], config["width"]
    length = len(tokens)
    angles = np.arange(length)[:, None] * config["rope_base"] ** (-np.arange(d // 2) * 2.0 / d)
    cos, sin = np.cos(angles), np.sin(angles)

    def rotate(x):  # (T, D)
        a, b = x[:, :d // 2], x[:, d // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=1)

    x = w["embedding"][tokens].astype(np.float64)
    for i in range(config["layers"]):
        p = f"layers.{i}."
        h = layer_norm(x, w[p + "norm1_weight"], w[p + "norm1_bias"])
        qkv = h @ w[p + "qkv_weight"].T + w[p + "qkv_bias"]
        out = np.zeros((length, width))
        for j in range(heads):
            q = rotate(qkv[:, j * d:(j + 1) * d])
            k = rotate(qkv[:, width + j * d:width + (j + 1) * d])
            v = qkv[:, 2 * width + j * d:2 * width + (j + 1) * d]
            scores = q @ k.T / math.sqrt(d) + np.triu(np.full((length, length), -np.inf), 1)
            p_attn = np.exp(scores - scores.max(1, keepdims=True))
            out[:, j * d:(j + 1) * d] = (p_attn / p_attn.sum(1, keepdims=True)) @ v
        x = x + out @ w[p + "out_weight"].T + w[p + "out_bias"]
        h = layer_norm(x, w[p + "norm2_weight"], w[p + "norm2_bias"])
        x = x + gelu(h @ w[p + "fc_weight"].T + w[p + "fc_bias"]) @ w[p + "proj_weight"].T + w[p + "proj_bias"]
    return layer_norm(x, w["norm_weight"], w["norm_bias"]) @ w["head_weight"].T + w["head_bias"]  # (T, A)


def numpy_latents(config, w, tokens):
    """An independent reading of the conditioning CNN's exported layout: block latents (blocks, W)."""
    hop, patches = config["cond_hop"], config["cond_patches"]
    blocks = -(-len(tokens) // hop)
    waveform = np.concatenate([np.zeros(patches * hop), w["context.amplitude"][tokens]])[:(blocks + patches - 1) * hop]
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))
    x = gelu(waveform.reshape(-1, hop) @ w["context.patch_weight"].T + w["context.patch_bias"])  # (n, C)
    for j, dilation in enumerate(config["cond_dilations"]):
        taps = w[f"context.convs.{j}.weight"]  # (K, C, C)
        conv = np.tile(w[f"context.convs.{j}.bias"], (len(x), 1))
        for k in range(len(taps)):
            shift = (len(taps) - 1 - k) * dilation  # tap k reads patch j - shift (zeros before the start)
            shifted = np.concatenate([np.zeros((shift, x.shape[1])), x[:len(x) - shift]])
            conv += shifted @ taps[k].T
        x = x + gelu(conv)
    return (x @ w["context.proj_weight"].T + w["context.proj_bias"])[patches - 1:]


def test_exported_conditioning_layout_read_independently_in_numpy():
    model = make_transformer(**CONDITIONED_TRANSFORMER)
    config, weights = model.export_weights()
    tokens = torch.randint(0, 32, (37,))
    with torch.no_grad():
        expected = model.context_latents(tokens[None])[0].double().numpy()
    got = numpy_latents(config, weights, tokens.numpy())
    assert got.shape == expected.shape == (10, 32)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5


def test_training_leaves_the_conditioning_burn_in_out_of_the_loss():
    from fastwave.training.loop import make_optimizer
    from fastwave.training.sample_models import train_step

    model = make_transformer(**CONDITIONED_TRANSFORMER)
    burn_in = model.burn_in
    assert burn_in == 16 and make_transformer().burn_in == 0
    crops = torch.randint(0, 32, (2, burn_in + 21))
    with torch.no_grad():
        logits = model(crops[:, :-1])
    expected = torch.nn.functional.cross_entropy(logits[:, :, burn_in:], crops[:, burn_in + 1:])
    loss = train_step(model, make_optimizer(model, lr=1e-9, weight_decay=0.0), crops, None, burn_in)
    assert loss == pytest.approx(float(expected), rel=1e-6)


def test_exported_layout_read_independently_in_numpy():
    model = make_transformer()
    config, weights = model.export_weights()
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in weights.values())
    tokens = torch.randint(0, 32, (10,))
    with torch.no_grad():
        expected = model(tokens[None])[0].T.double().numpy()  # (T, A)
    got = numpy_logits(config, weights, tokens.numpy())
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5


@pytest.mark.parametrize("kw", [{}, CONDITIONED_TRANSFORMER])
@pytest.mark.parametrize("prompt_length", [1, 8, 17])
def test_cached_logits_equal_the_full_forward(kw, prompt_length, fp32_exact):
    """Teacher forcing through the KV cache, well past the context (the sliding window), equals the
    banded full forward; prompts shorter and longer than the context, on and off block boundaries."""
    model = make_transformer(**kw)
    batch, length = 3, 4 * model.config.context + 5
    tokens = torch.randint(0, 32, (batch, length))
    with torch.no_grad():
        expected = model(tokens)
        engine = TorchTransformerEngine(model, batch, {})
        steps = [engine.prefill(tokens[:, :prompt_length])]
        steps += [engine.step(tokens[:, t]).clone() for t in range(prompt_length, length)]
    got = torch.stack(steps, dim=2)
    assert rel_error(got, expected[:, :, prompt_length - 1:]) < 1e-5


@pytest.mark.parametrize("policy", POLICIES)
def test_naive_and_cached_engines_give_the_same_tokens(policy):
    model = make_transformer(**CONDITIONED_TRANSFORMER)
    n, batch = 50, 2
    prompt = torch.randint(0, 32, (batch, 7))
    runs = {engine: fastwave.generate(model, n, batch=batch, prompt=prompt, seed=99, engine=engine, **policy)
            for engine in ("naive", "torch")}
    assert runs["torch"].shape == (batch, n)
    assert torch.equal(runs["naive"], runs["torch"])
    if policy["temperature"] > 0:
        assert not torch.equal(runs["torch"][0], runs["torch"][1])


def test_streaming_chunks_do_not_change_the_audio():
    model = make_transformer()
    whole = fastwave.generate(model, 40, batch=2, seed=5, engine="torch")
    chunks = list(fastwave.stream(model, 40, batch=2, seed=5, engine="torch", chunk_size=7))
    assert [c.shape[1] for c in chunks] == [7] * 5 + [5]
    assert torch.equal(torch.cat(chunks, dim=1), whole)


def test_engines_and_refusals():
    model = make_transformer()
    assert fastwave.available_engines(model) == ["naive", "torch", "cpu"]
    with pytest.raises(ValueError, match="precision"):
        fastwave.generate(model, 4, engine="torch", precision="fp16")  # only the C++ engine stores half
    with pytest.raises(ValueError, match="takes no cond"):
        fastwave.generate(model, 4, cond={"global_cond": 1})
    with pytest.raises(ValueError, match="fp32"):
        TorchTransformerEngine(make_transformer().half(), 1, {})
    dropping = make_transformer(dropout=0.1).train()
    with pytest.raises(ValueError, match="model.eval"):
        fastwave.generate(dropping, 4)
    assert fastwave.generate(dropping.eval(), 4).shape == (1, 4)


def test_checkpoint_round_trip(tmp_path):
    model = make_transformer(**CONDITIONED_TRANSFORMER)
    path = tmp_path / "t.safetensors"
    model.save(path)
    loaded = fastwave.load_model(path)
    assert isinstance(loaded, SampleTransformer) and loaded.config == model.config
    tokens = torch.randint(0, 32, (1, 30))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))


@pytest.mark.parametrize("kw", [{}, CONDITIONED_TRANSFORMER])
def test_trains_with_the_shared_loop_and_evaluation(kw):
    """The same loop and metrics as WaveNet: a periodic pattern is learnt to near-certainty."""
    from fastwave.training.evaluation import evaluate_sample_model
    from fastwave.training.sample_models import train_sample_model

    torch.manual_seed(0)
    model = SampleTransformer(**{**TINY_TRANSFORMER, **kw})
    pattern = torch.tensor([3, 17, 9, 30, 1, 22, 9, 14, 5, 27])
    tokens = pattern.repeat(40)  # 400 tokens
    before = evaluate_sample_model(model, tokens, segment=48)
    history = train_sample_model(model, tokens, steps=120, batch_size=8, segment=24, lr=3e-3, warmup=10,
                                 progress=False)
    after = evaluate_sample_model(model, tokens, segment=48, burn_in=16)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert after["top1"] > 0.95 and after["top5"] >= after["top1"]
    assert after["bits_per_sample"] < 0.2 * before["bits_per_sample"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kw", [{}, CONDITIONED_TRANSFORMER])
def test_cuda_graph_step_gives_the_cpu_tokens(kw):
    """On CUDA the decode step is captured once and replayed; the audio is the CPU engine's."""
    model = make_transformer(**kw)
    prompt = torch.randint(0, 32, (2, 9))
    cpu = fastwave.generate(model, 80, batch=2, prompt=prompt, seed=3, engine="torch")
    engines = []
    original = TorchTransformerEngine.sample_and_step

    def spy(self, logits, u, params):
        engines.append(self)
        return original(self, logits, u, params)

    TorchTransformerEngine.sample_and_step = spy
    try:
        gpu = fastwave.generate(model.cuda(), 80, batch=2, prompt=prompt, seed=3, engine="torch")
    finally:
        TorchTransformerEngine.sample_and_step = original
    assert engines and engines[0].graph is not None
    assert torch.equal(cpu, gpu)


def test_a_long_context_model_generates_like_its_forward():
    """Context 16,384 (ten times the paper's): the cache is preallocated at that size and the cached
    tokens are the full forward's."""
    model = make_transformer(context=16384)
    prompt = torch.randint(0, 32, (1, 300))
    runs = [fastwave.generate(model, 12, prompt=prompt, seed=8, engine=e) for e in ("naive", "torch")]
    assert torch.equal(runs[0], runs[1])


def test_a_long_prompt_prefills_only_its_receptive_field(fp32_exact):
    """A prompt many receptive fields long: the engine runs the forward over the last one only (from
    a block boundary, with the absolute rotary positions), and its logits are the full forward's."""
    model = make_transformer(**CONDITIONED_TRANSFORMER)
    tokens = torch.randint(0, 32, (2, 5 * model.receptive_field + 3))
    calls = []
    original = model.trunk

    def spy(prompt, **kwargs):
        calls.append(prompt.shape[1])
        return original(prompt, **kwargs)

    with torch.no_grad():
        expected = model(tokens)[:, :, -1]
        model.trunk = spy
        engine = TorchTransformerEngine(model, 2, {})
        got = engine.prefill(tokens)
    assert calls and calls[0] <= model.receptive_field + model.frame_hop
    assert rel_error(got, expected) < 1e-5


def test_thousands_of_free_running_steps_agree(fp32_exact):
    """DESIGN's parity: naive (full forward per sample) and KV-cache engines give the same tokens for
    2,000 steps, crossing the context and the conditioning blocks many times."""
    model = make_transformer(**CONDITIONED_TRANSFORMER)
    runs = [fastwave.generate(model, 2000, batch=2, seed=21, engine=e) for e in ("naive", "torch")]
    assert torch.equal(runs[0], runs[1])
