"""The C++ CPU engine (engine="cpu") against the torch reference engine: logits, tokens, state, memory."""
import math
import os

import numpy as np
import pytest
import torch

import fastwave
from fastwave.engines import _native
from fastwave.engines.sampling import SamplingParams
from fastwave.engines.wavenet_cpu import CpuWaveNetEngine
from fastwave.engines.wavenet_torch import TorchWaveNetEngine
from small_models import rel_error
from test_engines import POLICIES, SHAPES, make_cond, make_model

ISAS = _native.cpu_isas()
pytestmark = pytest.mark.usefixtures("uncapped_threads")  # 3- and 4-way splits on any machine
# Channels that are not multiples of the 16-channel blocks, and a batch-1 case where two threads
# share the layers: every padding and split path of the engine.
CPU_SHAPES = SHAPES + [dict(layers=5, cycles=1, kernel_size=2, residual_channels=20, gate_channels=70,
                            skip_channels=33, classes=40, local_channels=3, cond_hop=4)]


def torch_engine_logits(model, tokens, cond):
    """The torch engine's teacher-forced logits (B, A, T): prefill one token, then step."""
    batch, length = tokens.shape
    with torch.no_grad():
        engine = TorchWaveNetEngine(model, batch, model.prepare_cond(cond, batch, length))
        steps = [engine.prefill(tokens[:, :1])] + [engine.step(tokens[:, t]) for t in range(1, length)]
    return torch.stack(steps, dim=2)


@pytest.mark.parametrize("shape", CPU_SHAPES)
@pytest.mark.parametrize("batch,threads", [(1, 1), (1, 2), (3, 2), (2, 4)])
def test_teacher_forced_logits_match_the_torch_engine(shape, batch, threads):
    model = make_model(**shape)
    length = int(2.5 * model.receptive_field) + 3
    tokens = torch.randint(0, model.config.classes, (batch, length), generator=torch.Generator().manual_seed(3))
    cond = make_cond(model, batch, length)
    expected = torch_engine_logits(model, tokens, cond)
    for isa in ISAS:
        engine = CpuWaveNetEngine(model, batch, model.prepare_cond(cond, batch, length), threads=threads, isa=isa)
        assert engine.native.isa == isa
        assert rel_error(engine.teacher_forced_logits(tokens), expected) < 1e-5, isa


@pytest.mark.parametrize("policy", POLICIES)
def test_free_running_tokens_match_the_torch_engine_for_4000_steps(policy):
    model = make_model(**SHAPES[2])  # kernel 3, global + local conditioning
    n, batch = 4000, 2
    prompt = torch.randint(0, 32, (batch, 7), generator=torch.Generator().manual_seed(5))
    cond = make_cond(model, batch, 7 + n)
    runs = {e: fastwave.generate(model, n, batch=batch, prompt=prompt, seed=77, engine=e, cond=cond,
                                 chunk_size=1500, **policy) for e in ("torch", "cpu")}
    assert torch.equal(runs["cpu"], runs["torch"])
    assert len(torch.unique(runs["cpu"])) > (1 if policy["temperature"] == 0 else 8)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[1], CPU_SHAPES[3]])
@pytest.mark.parametrize("threads", [1, 2])
def test_free_running_tokens_match_at_batch_1(shape, threads):
    model = make_model(**shape)
    cond = make_cond(model, 1, 4000)
    kwargs = dict(seed=123, cond=cond, temperature=0.9, top_k=20)
    torch_run = fastwave.generate(model, 4000, engine="torch", **kwargs)
    assert torch.equal(fastwave.generate(model, 4000, engine="cpu", threads=threads, **kwargs), torch_run)


def test_prompts_longer_than_the_receptive_field_leave_the_same_state():
    """Prefill runs only the last receptive field of a long prompt: the output must not notice."""
    model = make_model(**SHAPES[2])
    prompt = torch.randint(0, 32, (2, 3 * model.receptive_field + 11))
    cond = make_cond(model, 2, prompt.shape[1] + 300)
    runs = [fastwave.generate(model, 300, batch=2, prompt=prompt, seed=2, engine=e, cond=cond) for e in ("torch", "cpu")]
    assert torch.equal(runs[0], runs[1])


def test_chunks_threads_and_isas_do_not_change_the_audio():
    model = make_model(**SHAPES[0])
    reference = fastwave.generate(model, 900, batch=3, seed=8, engine="cpu", threads=1, top_p=0.9)
    for threads, chunk in [(2, 1), (2, 77), (3, 900), (4, 450)]:
        run = torch.cat(list(fastwave.stream(model, 900, batch=3, seed=8, engine="cpu", threads=threads,
                                             top_p=0.9, chunk_size=chunk)), dim=1)
        assert torch.equal(run, reference), (threads, chunk)
    for isa in ISAS:
        engine = CpuWaveNetEngine(model, 3, {}, threads=2, isa=isa)
        chunks = engine.chunks(torch.full((3, 1), 16), 900, 900, SamplingParams(top_p=0.9), 8)
        assert torch.equal(next(chunks), reference), isa


def test_auto_picks_the_cpu_engine_and_threads_default_to_physical_cores():
    model = make_model(**SHAPES[0])
    assert fastwave.available_engines(model)[-1] == "cpu"
    engine = CpuWaveNetEngine(model, 1, {})
    assert engine.native.threads == _native.physical_cores() >= 1
    assert engine.native.isa == ISAS[0] and ISAS[-1] == "generic"
    assert engine.native.receptive_field == model.receptive_field
    c = model.config
    ring_floats = sum((c.kernel_size - 1) * d for d in c.dilations) * 16  # residual 8 padded to 16
    assert engine.native.state_bytes == 4 * ring_floats


def test_fastwave_isa_environment_variable_forces_a_variant(monkeypatch):
    model = make_model(**SHAPES[0])
    monkeypatch.setenv("FASTWAVE_ISA", "generic")
    assert CpuWaveNetEngine(model, 1, {}).native.isa == "generic"
    monkeypatch.setenv("FASTWAVE_ISA", "sse9")
    with pytest.raises(ValueError, match="from FASTWAVE_ISA"):
        CpuWaveNetEngine(model, 1, {})


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_ten_minutes_of_audio_keep_memory_flat():
    """9.6 M samples (10 min at 16 kHz) streamed at batch 1: the state is the rings, nothing grows."""
    torch.manual_seed(0)
    model = fastwave.WaveNet(layers=4, cycles=2, residual_channels=16, gate_channels=32, skip_channels=16,
                             classes=16).eval()
    chunks = fastwave.stream(model, 10 * 60 * 16000, engine="cpu", threads=1, temperature=0, chunk_size=160000)
    rss = []
    for i, chunk in enumerate(chunks):
        assert chunk.shape == (1, 160000)
        rss.append(_rss_bytes())
    assert i == 59
    assert max(rss[5:]) - rss[5] < 4 * 2 ** 20, [r // 2 ** 20 for r in rss]


def test_native_constructor_refuses_malformed_input():
    model = make_model(**SHAPES[2])  # global and local conditioning
    config, weights = model.export_weights()
    g = np.array([1], dtype=np.int64)
    local = np.zeros((1, 4, 10), dtype=np.float32)
    make = _native.WaveNetCpuEngine
    make(config, weights, 1, 1, global_cond=g, local_cond=local)  # the valid call

    def refuses(error, match, **changes):
        args = dict(config=config, weights=weights, batch=1, threads=1, global_cond=g, local_cond=local)
        args.update(changes)
        with pytest.raises(error, match=match):
            make(**args)

    refuses(TypeError, "config must be a dict", config=[1])
    refuses(ValueError, "config is missing 'layers'", config={k: v for k, v in config.items() if k != "layers"})
    refuses(ValueError, r"config\['model'\] must be 'wavenet'", config={**config, "model": "gpt"})
    refuses(TypeError, r"config\['classes'\] must be an integer", config={**config, "classes": 2.5})
    refuses(ValueError, r"config\['kernel_size'\] must be in \[1, 8\]", config={**config, "kernel_size": 9})
    refuses(ValueError, r"gate_channels'\] must be even", config={**config, "gate_channels": 13})
    refuses(ValueError, "one dilation per layer", config={**config, "dilations": [1, 2]})
    refuses(ValueError, r"dilations'\] must be in", config={**config, "dilations": [0] * 6})
    refuses(TypeError, "weights must be a dict", weights=[])
    refuses(TypeError, "weights keys must be str", weights={**weights, 3: weights["embedding"]})
    refuses(ValueError, "missing 'head.1.bias'", weights={k: v for k, v in weights.items() if k != "head.1.bias"})
    refuses(ValueError, "unexpected entry 'extra'", weights={**weights, "extra": weights["embedding"]})
    refuses(ValueError, r"weights\['embedding'\] must have shape \(32, 8\)",
            weights={**weights, "embedding": np.zeros((31, 8), np.float32)})
    refuses(TypeError, "must have dtype float32", weights={**weights, "embedding": weights["embedding"].astype(np.float64)})
    refuses(TypeError, "must be a numpy array", weights={**weights, "embedding": weights["embedding"].tolist()})
    refuses(ValueError, "C-contiguous", weights={**weights, "embedding": np.asfortranarray(weights["embedding"])})
    bad = weights["layers.3.conv_bias"].copy()
    bad[2] = np.inf
    refuses(ValueError, r"layers\.3\.conv_bias'\] must be finite", weights={**weights, "layers.3.conv_bias": bad})
    refuses(ValueError, r"batch must be in \[1, 2\*\*20\], got 0", batch=0)
    refuses(ValueError, r"threads must be an integer in \[1, 1024\]", threads=5000)
    refuses(ValueError, r"threads must be in \[1, 1024\]", threads=0)
    refuses(TypeError, "batch must be an integer", batch="2")
    refuses(ValueError, "global_cond is required", global_cond=None)
    refuses(ValueError, r"global_cond must be in \[0, 2\]", global_cond=np.array([3], np.int64))
    refuses(ValueError, r"global_cond must have shape \(batch,\)", global_cond=np.array([1, 1], np.int64))
    refuses(TypeError, "global_cond must have dtype int64", global_cond=np.array([1], np.int32))
    refuses(ValueError, "local_cond is required", local_cond=None)
    refuses(ValueError, r"local_cond must have shape \(batch, local_channels, frames\)", local_cond=np.zeros((1, 3, 10), np.float32))
    refuses(ValueError, "local_cond must be finite", local_cond=np.full((1, 4, 10), np.nan, np.float32))
    refuses(ValueError, "isa must be 'auto' or one", isa="avx9000")
    plain = make_model(**SHAPES[0])
    config0, weights0 = plain.export_weights()
    with pytest.raises(ValueError, match="no global conditioning"):
        make(config0, weights0, 1, 1, global_cond=g)
    with pytest.raises(ValueError, match="no local conditioning"):
        make(config0, weights0, 1, 1, local_cond=local)


def test_native_prefill_and_generate_refuse_malformed_input():
    model = make_model(**SHAPES[2])
    config, weights = model.export_weights()
    engine = _native.WaveNetCpuEngine(config, weights, 2, 2, global_cond=np.array([0, 1], np.int64),
                                      local_cond=np.zeros((2, 4, 4), np.float32))  # 4 frames x hop 5 = 20 positions
    with pytest.raises(ValueError, match="needs prefill"):
        engine.generate(5, 0, 0, 1.0, 0, 1.0, False)
    with pytest.raises(TypeError, match="prompt must have dtype int64"):
        engine.prefill(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match=r"prompt must have shape \(batch, P\)"):
        engine.prefill(np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match=r"prompt must have shape"):
        engine.prefill(np.zeros((2, 0), np.int64))
    with pytest.raises(ValueError, match=r"prompt tokens must be in \[0, 32\), got 32"):
        engine.prefill(np.full((2, 3), 32, np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        engine.prefill(np.zeros((3, 2), np.int64).T)
    with pytest.raises(ValueError, match="local_cond covers 20"):
        engine.prefill(np.zeros((2, 21), np.int64))
    engine.prefill(np.zeros((2, 3), np.int64))
    for args, error, match in [
        ((5, -1, 0, 1.0, 0, 1.0, False), ValueError, "seed must be an integer in"),
        ((5, 0, 2 ** 32, 1.0, 0, 1.0, False), ValueError, "step0 must be an integer in"),
        ((5, 0, 2 ** 32 - 2, 1.0, 0, 1.0, False), ValueError, r"step0 \+ n must be <= 2\*\*32"),
        ((-1, 0, 0, 1.0, 0, 1.0, False), ValueError, "n must be an integer"),
        ((5, 0, 0, -1.0, 0, 1.0, False), ValueError, "temperature"),
        ((5, 0, 0, float("nan"), 0, 1.0, False), ValueError, "temperature"),
        ((5, 0, 0, 1.0, -3, 1.0, False), ValueError, "top_k must be an integer"),
        ((5, 0, 0, 1.0, 0, 0.0, False), ValueError, "top_p"),
        ((5, 0, 0, "hot", 0, 1.0, False), TypeError, "incompatible function arguments"),
        ((18, 0, 0, 1.0, 0, 1.0, False), ValueError, "local_cond covers 20"),
    ]:
        with pytest.raises(error, match=match):
            engine.generate(*args)
    assert engine.position == 3  # nothing was consumed by the refusals
    tokens = engine.generate(17, 0, 0, 1.0, 0, 1.0, True)  # positions 3..19: exactly covered
    assert tokens.shape == (2, 17) and tokens.dtype == np.int64 and engine.position == 19
    with pytest.raises(ValueError, match="needs prefill"):
        engine.generate(1, 0, 17, 1.0, 0, 1.0, False)


def test_native_helpers_refuse_malformed_input():
    assert _native.physical_cores() >= 1 and "generic" in _native.cpu_isas()
    assert _native.read_bandwidth(1 << 16, 1, seconds=0.01) > 1e8  # bytes/s: far above 100 MB/s
    with pytest.raises(ValueError, match="bytes_per_thread"):
        _native.read_bandwidth(10, 1)
    with pytest.raises(ValueError, match="threads"):
        _native.read_bandwidth(1 << 16, 0)
    with pytest.raises(ValueError, match="seconds"):
        _native.read_bandwidth(1 << 16, 1, seconds=-1.0)
    with pytest.raises(ValueError, match="isa"):
        _native.read_bandwidth(1 << 16, 1, isa="mmx")


def ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between float64 arrays of one sign (or zeros)."""
    return np.abs(a.view(np.int64) - b.view(np.int64))


def libm_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


@pytest.mark.parametrize("isa", ISAS)
def test_sampling_exp_is_within_an_ulp_of_libm(isa):
    # The engines' sampler exponentiates with this (common/sampling.h): the contract allows it to
    # differ from std::exp / torch.exp in the last bit only.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-750.0, 712.0, 100_000), rng.uniform(-40.0, 0.0, 100_000),
                        rng.uniform(-1e-3, 1e-3, 10_000), -rng.exponential(5.0, 100_000),
                        [0.0, -0.0, -745.2, -745.1, -708.4, -700.0, -1e-300, 709.77, 1.0, -1.0]])
    expected = np.array([libm_exp(v) for v in x])
    got = _native.cpu_exp(x, isa)
    assert got.shape == x.shape and got.dtype == np.float64
    assert ulps_apart(got, expected).max() <= 1
    ends = np.array([-np.inf, -1e6, -746.0, 710.0, 1e6])
    assert _native.cpu_exp(ends, isa).tolist() == [0.0, 0.0, 0.0, math.inf, math.inf]
    assert np.isnan(_native.cpu_exp(np.array([np.nan]), isa)[0])
    assert _native.cpu_exp(x[::7], isa).tolist() == got[::7].tolist()  # strided input: copied
    assert _native.cpu_exp(x[:13].reshape(13, 1), isa).shape == (13, 1)
    with pytest.raises(TypeError, match="float64"):
        _native.cpu_exp(x.astype(np.float32), isa)


def test_generate_refuses_bad_threads():
    model = make_model(**SHAPES[0])
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        fastwave.generate(model, 5, engine="cpu", threads=0)
