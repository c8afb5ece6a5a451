import numpy as np
import pytest
import torch

import fastwave
from fastwave import WaveNet
from fastwave.engines.step_engine import exact_fp32
from fastwave.engines.wavenet_torch import TorchWaveNetEngine
from small_models import rel_error

SHAPES = [
    dict(layers=6, cycles=2, kernel_size=2),
    dict(layers=4, cycles=1, kernel_size=3),
    dict(layers=6, cycles=3, kernel_size=3, global_classes=3, local_channels=4, cond_hop=5),
]
POLICIES = [
    dict(temperature=1.0),
    dict(temperature=0.0),
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.3, top_p=0.8),
    dict(temperature=1.0, top_k=10, top_p=0.9),
]


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(residual_channels=8, gate_channels=12, skip_channels=10, classes=32)
    args.update(kw)
    model = WaveNet(**args).eval()
    # Larger logits than the default init, so sampling policies meet real distributions.
    with torch.no_grad():
        model.head[1].weight.mul_(8)
    return model


def make_cond(model, batch, positions, seed=1):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    cond = {}
    if c.global_classes:
        cond["global_cond"] = torch.randint(0, c.global_classes, (batch,), generator=g)
    if c.local_channels:
        frames = -(-positions // c.cond_hop)
        cond["local_cond"] = torch.randn(batch, c.local_channels, frames, generator=g)
    return cond


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("prompt_length", [1, 17])
def test_torch_engine_teacher_forced_logits_match_forward(shape, prompt_length):
    model = make_model(**shape)
    batch, length = 2, int(2.5 * model.receptive_field) + 3  # well past two receptive fields
    tokens = torch.randint(0, 32, (batch, length))
    cond = make_cond(model, batch, length)
    with torch.no_grad():
        expected = model(tokens, **cond)  # (B, A, T)
        engine = TorchWaveNetEngine(model, batch, model.prepare_cond(cond, batch, length))
        steps = [engine.prefill(tokens[:, :prompt_length])]
        steps += [engine.step(tokens[:, t]) for t in range(prompt_length, length)]
    got = torch.stack(steps, dim=2)
    assert rel_error(got, expected[:, :, prompt_length - 1:]) < 1e-5


@pytest.mark.parametrize("policy", POLICIES)
def test_naive_and_torch_engines_give_the_same_tokens(policy):
    model = make_model(**SHAPES[2])
    n, batch = 60, 3
    prompt = torch.randint(0, 32, (batch, 9))
    cond = make_cond(model, batch, 9 + n)
    runs = {engine: fastwave.generate(model, n, batch=batch, prompt=prompt, seed=1234, engine=engine,
                                      cond=cond, **policy) for engine in ("naive", "torch")}
    assert runs["torch"].shape == (batch, n) and runs["torch"].dtype == torch.long
    assert torch.equal(runs["naive"], runs["torch"])
    if policy["temperature"] > 0:  # streams draw different uniforms, so they differ
        assert not torch.equal(runs["torch"][0], runs["torch"][1])


def test_engines_agree_over_thousands_of_free_running_steps():
    model = make_model(layers=4, cycles=2, kernel_size=3, global_classes=2)
    cond = {"global_cond": torch.tensor([0, 1])}
    runs = [fastwave.generate(model, 2000, batch=2, seed=11, engine=e, cond=cond, top_p=0.95) for e in ("naive", "torch")]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("prompt_shape", [(1, 3), (1, 40)])  # 40 > receptive field + cond_hop
def test_engines_agree_with_long_and_shared_prompts(prompt_shape):
    model = make_model(**SHAPES[2])
    assert prompt_shape[1] < model.receptive_field or prompt_shape[1] > model.receptive_field + model.config.cond_hop
    prompt = torch.randint(0, 32, prompt_shape)
    cond = make_cond(model, 3, prompt_shape[1] + 80)
    runs = [fastwave.generate(model, 80, batch=3, prompt=prompt, seed=np.int64(4), engine=e, cond=cond)
            for e in ("naive", "torch")]
    assert torch.equal(runs[0], runs[1])


def test_stream_validates_before_the_first_chunk():
    model = make_model(**SHAPES[0])
    with pytest.raises(ValueError, match="n_samples"):
        fastwave.stream(model, 0)  # raised at the call, not when iteration starts


def test_free_running_tokens_match_a_teacher_forced_replay():
    """Generated tokens are exactly what the full forward's logits + the sampling contract give."""
    model = make_model(**SHAPES[0])
    n = 3 * model.receptive_field
    tokens = fastwave.generate(model, n, seed=7, engine="torch", temperature=0)
    silence = fastwave.audio.mulaw_silence(32)
    sequence = torch.cat([torch.tensor([[silence]]), tokens], dim=1)
    with torch.no_grad():
        greedy = model(sequence[:, :-1]).argmax(dim=1)
    assert torch.equal(greedy, tokens)


def test_stream_chunks_do_not_change_the_audio():
    model = make_model(**SHAPES[1])
    whole = fastwave.generate(model, 50, batch=2, seed=3)
    for chunk_size in (1, 7, 50, 64):
        chunks = list(fastwave.stream(model, 50, batch=2, seed=3, chunk_size=chunk_size))
        assert all(c.shape[1] <= chunk_size for c in chunks)
        assert torch.equal(torch.cat(chunks, dim=1), whole)


def test_seed_decides_the_tokens():
    model = make_model(**SHAPES[0])
    a = fastwave.generate(model, 40, seed=5)
    assert torch.equal(a, fastwave.generate(model, 40, seed=5))
    assert not torch.equal(a, fastwave.generate(model, 40, seed=6))
    big = fastwave.generate(model, 40, seed=2 ** 64 - 1)
    assert torch.equal(big, fastwave.generate(model, 40, seed=2 ** 64 - 1))
    assert not torch.equal(big, fastwave.generate(model, 40, seed=2 ** 32 - 1))  # the high word counts


def test_prompt_forms_and_continuation():
    model = make_model(**SHAPES[0])
    prompt = torch.randint(0, 32, (13,))
    one = fastwave.generate(model, 20, prompt=prompt, batch=2, seed=9)
    two = fastwave.generate(model, 20, prompt=prompt.expand(2, -1).numpy(), batch=2, seed=9)
    assert torch.equal(one, two)
    other = fastwave.generate(model, 20, prompt=(prompt + 1) % 32, batch=2, seed=9, temperature=0)
    assert not torch.equal(fastwave.generate(model, 20, prompt=prompt, batch=2, seed=9, temperature=0), other)


def test_progress_bar_reports_the_samples(capsys):
    model = make_model(**SHAPES[0])
    assert fastwave.generate(model, 10, progress=True).shape == (1, 10)
    err = capsys.readouterr().err
    assert "generate (cpu)" in err and "10/10" in err
    fastwave.generate(model, 10)
    assert capsys.readouterr().err == ""


def test_generation_leaves_model_and_inputs_untouched():
    model = make_model(**SHAPES[2])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prompt = torch.randint(0, 32, (2, 5))
    cond = make_cond(model, 2, 30)
    copies = (prompt.clone(), {k: v.clone() for k, v in cond.items()})
    fastwave.generate(model, 25, batch=2, prompt=prompt, cond=cond)
    assert torch.equal(prompt, copies[0]) and all(torch.equal(cond[k], copies[1][k]) for k in cond)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(n_samples=0), ValueError, "n_samples must be an int >= 1"),
    (dict(batch=0), ValueError, "batch must be an int >= 1"),
    (dict(engine="fast"), ValueError, "engine must be one of"),
    (dict(seed=-1), ValueError, "seed must be an int"),
    (dict(prompt=[]), ValueError, "prompt is empty"),
    (dict(seed=2 ** 64), ValueError, "seed must be an int"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(top_k=-2), ValueError, "top_k"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(prompt=torch.tensor([40])), ValueError, r"prompt must lie in \[0, 32\)"),
    (dict(prompt=torch.zeros(3, 4, dtype=torch.long), batch=2), ValueError, "prompt must be"),
    (dict(prompt=torch.zeros(4)), TypeError, "prompt must hold integer"),
    (dict(cond={"speaker": 1}), ValueError, "unknown keys"),
    (dict(cond={"global_cond": 1}), ValueError, "global_classes=0"),
    (dict(cond=[1]), TypeError, "cond must be a dict"),
])
def test_generate_refuses_bad_input(kwargs, error, match):
    model = make_model(**SHAPES[0])
    n = kwargs.pop("n_samples", 5)
    with pytest.raises(error, match=match):
        fastwave.generate(model, n, **kwargs)


def test_conditioning_is_required_and_must_cover_the_run():
    model = make_model(**SHAPES[2])
    with pytest.raises(ValueError, match="global_cond is required"):
        fastwave.generate(model, 5)
    cond = make_cond(model, 1, 10)  # covers 10 positions: prompt 1 + 9 samples
    assert fastwave.generate(model, 10, cond=cond).shape == (1, 10)
    with pytest.raises(ValueError, match="local_cond has 2 frames"):
        fastwave.generate(model, 11, cond=cond)


def test_generate_refuses_non_finite_weights():
    model = make_model(**SHAPES[0])
    with torch.no_grad():
        model.layers[2].skip.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layers\.2\.skip\.weight.*non-finite"):
        fastwave.generate(model, 5)


def test_half_models_skip_the_fp32_torch_engine():
    model = make_model(**SHAPES[0]).to(torch.bfloat16)
    assert fastwave.available_engines(model) == ["naive", "cpu"]  # cpu computes in fp32 from the export
    with pytest.raises(ValueError, match="cannot run this WaveNet"):
        fastwave.stream(model, 5, engine="torch")  # refused at the call, not at the first chunk
    assert fastwave.generate(model, 5, engine="auto").shape == (1, 5)
    with pytest.raises(ValueError, match="fp32"):
        TorchWaveNetEngine(model, 1, {})


def test_non_fastwave_models_are_refused():
    with pytest.raises(TypeError, match="fastwave sample model"):
        fastwave.generate(torch.nn.Linear(2, 2), 5)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("shape", SHAPES)
def test_torch_engine_on_cuda_matches_forward(shape):
    model = make_model(**shape).cuda()
    batch, length = 3, 2 * model.receptive_field + 5
    tokens = torch.randint(0, 32, (batch, length), device="cuda")
    cond = {k: v.cuda() for k, v in make_cond(model, batch, length).items()}
    with torch.no_grad(), exact_fp32():
        expected = model(tokens, **cond)
        engine = TorchWaveNetEngine(model, batch, model.prepare_cond(cond, batch, length))
        steps = [engine.prefill(tokens[:, :4])] + [engine.step(tokens[:, t]) for t in range(4, length)]
    assert rel_error(torch.stack(steps, dim=2), expected[:, :, 3:]) < 1e-5
    runs = [fastwave.generate(model, 300, batch=batch, cond=cond, seed=1, engine=e) for e in ("naive", "torch")]
    assert runs[0].device.type == "cpu" and runs[0].shape == (batch, 300)
    assert torch.equal(runs[0], runs[1])
