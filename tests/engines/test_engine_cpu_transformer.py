"""The C++ CPU engine of the sample Transformer (engine="cpu") against the torch reference engine:
logits, tokens, state, streaming, and the native boundary's refusals."""
import copy

import numpy as np
import pytest
import torch
from test_engines import POLICIES
from small_models import CONDITIONED_TRANSFORMER, TINY_TRANSFORMER, make_transformer, rel_error

import fastwave
from fastwave.engines import _native
from fastwave.engines.sampling import SamplingParams
from fastwave.engines.transformer_cpu import CpuTransformerEngine
from fastwave.engines.transformer_torch import TorchTransformerEngine

pytestmark = pytest.mark.usefixtures("one_thread", "uncapped_threads")  # the torch reference on tiny models

ISAS = _native.cpu_isas()
# make_transformer perturbs the init (noise 0.05 on every parameter: biases and norms are nonzero) and
# scales the head, so sampling policies meet real distributions.
# Head size 18 (not a multiple of 16), 40 classes, MLP 162 units and a 20-slot cache (two blocks,
# the second partly padding): every padding path.
ODD = {**TINY_TRANSFORMER, "heads": 3, "width": 54, "mlp_ratio": 3, "context": 20, "classes": 40}
# The conditioned variant with 5 CNN channels, a hop of 5 and dilations (1, 3): patches 9.
COND_ODD = {**ODD, "cond_window": 40, "cond_hop": 5, "cond_channels": 5, "cond_kernel": 3}
# Head size 32, 256 classes, 3 layers, a 33-slot cache (three blocks, one slot in the third).
WIDE = {"layers": 3, "heads": 4, "width": 128, "mlp_ratio": 1, "context": 33, "classes": 256}
SHAPES = [TINY_TRANSFORMER, ODD, CONDITIONED_TRANSFORMER, COND_ODD, WIDE]
SHAPE_IDS = ["tiny", "odd", "conditioned", "conditioned-odd", "wide"]


def kv_slots(context):
    """The key slots the C++ engine's cache holds per stream and head: the context in spans of 128."""
    return -(-context // 128) * 128


def ceil16(n):
    return -(-n // 16) * 16


def torch_engine_logits(model, tokens):
    """The torch engine's teacher-forced logits (B, A, T): prefill one token, then one step each."""
    batch, length = tokens.shape
    with torch.no_grad():
        engine = TorchTransformerEngine(model, batch, {})
        steps = [engine.prefill(tokens[:, :1])] + [engine.step(tokens[:, t]).clone() for t in range(1, length)]
    return torch.stack(steps, dim=2)


# ---- 1. logits --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_teacher_forced_logits_match_the_torch_engine(shape, batch, fp32_exact):
    """Every ISA and thread split (batch 1 on 2-3 threads: the heads, MLP units and classes are
    shared between threads), well past the context (the sliding window) and, conditioned, past
    the CNN's window, across many cond_hop blocks."""
    model = make_transformer(**shape)
    c = model.config
    length = 2 * model.receptive_field + 5
    assert length > 3 * c.context
    tokens = torch.randint(0, c.classes, (batch, length), generator=torch.Generator().manual_seed(3))
    expected = torch_engine_logits(model, tokens)
    assert expected.shape == (batch, c.classes, length)
    for isa in ISAS:
        for threads in (1, 2, 3):
            engine = CpuTransformerEngine(model, batch, {}, threads=threads, isa=isa)
            assert engine.native.isa == isa
            # Threads form min(batch, threads) groups of equal size: batch 2 on 3 threads uses 2.
            groups = min(batch, threads)
            assert engine.native.threads == groups * (threads // groups)
            got = engine.teacher_forced_logits(tokens)
            assert got.shape == expected.shape and got.dtype == torch.float32
            error = rel_error(got, expected)
            assert error < 1e-5, (isa, threads, error)
            assert engine.native.position == length


# ---- 2. free-running tokens ---------------------------------------------------------------------

FREE_MODELS = {"plain": {**TINY_TRANSFORMER, "context": 100}, "conditioned": {**COND_ODD, "context": 64, "cond_hop": 8}}
FREE_RUNS = [(1, 2, POLICIES[0]), (2, 2, POLICIES[4]), (2, 3, POLICIES[3])]


@pytest.mark.parametrize("variant", sorted(FREE_MODELS))
@pytest.mark.parametrize("batch,threads,policy", FREE_RUNS)
def test_free_running_tokens_match_the_torch_engine_for_4000_steps(variant, batch, threads, policy):
    """4,000 samples: the sliding window starts at the context (64-100) and the receptive field,
    so most of the run decodes with a full, wrapping cache; chunks of 1,500 do not divide n."""
    model = make_transformer(**FREE_MODELS[variant])
    n = 4000
    assert n > 20 * model.config.context and n > 10 * model.receptive_field
    prompt = None if batch == 1 else torch.randint(0, model.config.classes, (batch, 7),
                                                   generator=torch.Generator().manual_seed(5))
    kwargs = {"batch": batch, "prompt": prompt, "seed": 77, "chunk_size": 1500, **policy}
    reference = fastwave.generate(model, n, engine="torch", **kwargs)
    got = fastwave.generate(model, n, engine="cpu", threads=threads, **kwargs)
    assert got.shape == (batch, n) and got.dtype == torch.long
    if not torch.equal(got, reference):
        first = (got != reference).nonzero()[0].tolist()
        pytest.fail(f"cpu and torch tokens first differ at (stream, sample) {first}: "
                    f"{(got != reference).sum().item()} of {got.numel()} differ")
    assert len(torch.unique(got)) > 5
    if batch > 1:
        assert not torch.equal(got[0], got[1])


# ---- 3. prompts and state ----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [TINY_TRANSFORMER, COND_ODD], ids=["plain", "conditioned"])
@pytest.mark.parametrize("offset", [0, 3])  # the prompt ends on / off a cond_hop block boundary
def test_prompts_longer_than_the_receptive_field_leave_the_same_state(shape, offset):
    """Prefill runs only the last receptive field of a long prompt (from a block boundary): the
    generated tokens must not notice."""
    model = make_transformer(**shape)
    hop = model.frame_hop if model.config.cond_window else 5
    length = hop * -(-3 * model.receptive_field // hop) + offset
    prompt = torch.randint(0, model.config.classes, (2, length), generator=torch.Generator().manual_seed(9))
    runs = {e: fastwave.generate(model, 300, batch=2, prompt=prompt, seed=2, engine=e, threads=2)
            for e in ("torch", "cpu")}
    assert torch.equal(runs["cpu"], runs["torch"])
    assert len(torch.unique(runs["cpu"])) > 5


@pytest.mark.parametrize("shape", [TINY_TRANSFORMER, COND_ODD], ids=["plain", "conditioned"])
def test_prefill_with_and_without_logits_and_repeated_prefills_leave_the_same_state(shape):
    """A prefill returning every position's logits (the whole prompt run) and one running only the
    last receptive field continue identically; a second prefill on the same engine resets
    everything (caches, the CNN's rings) to what a fresh engine holds."""
    model = make_transformer(**shape)
    config, weights = model.export_weights()
    rng = np.random.default_rng(4)
    long = rng.integers(0, config["classes"], (2, 3 * model.receptive_field + 2), dtype=np.int64)
    short = rng.integers(0, config["classes"], (2, 6), dtype=np.int64)

    def tokens_after(engine, prompt, return_logits):
        engine.prefill(prompt, return_logits=return_logits)
        return engine.generate(250, 13, 0, 1.0, 0, 1.0, False)

    fresh = [tokens_after(_native.TransformerCpuEngine(config, weights, 2, 2), p, False) for p in (long, short)]
    with_logits = _native.TransformerCpuEngine(config, weights, 2, 2)
    assert np.array_equal(tokens_after(with_logits, long, True), fresh[0])
    assert np.array_equal(tokens_after(with_logits, short, False), fresh[1])  # after a long generation
    assert np.array_equal(tokens_after(with_logits, long, False), fresh[0])


# ---- 4. chunks, threads, ISAs ---------------------------------------------------------------------

def test_chunks_threads_and_isas_do_not_change_the_audio():
    model = make_transformer(**COND_ODD)
    reference = fastwave.generate(model, 900, batch=3, seed=8, engine="cpu", threads=1, top_p=0.9)
    assert len(torch.unique(reference)) > 5
    for threads, chunk in [(2, 1), (2, 77), (3, 900), (4, 450)]:
        run = torch.cat(list(fastwave.stream(model, 900, batch=3, seed=8, engine="cpu", threads=threads,
                                             top_p=0.9, chunk_size=chunk)), dim=1)
        assert torch.equal(run, reference), (threads, chunk)
    silence = fastwave.audio.mulaw_silence(model.config.classes)
    for isa in ISAS:
        engine = CpuTransformerEngine(model, 3, {}, threads=2, isa=isa)
        chunks = engine.chunks(torch.full((3, 1), silence), 900, 900, SamplingParams(top_p=0.9), 8)
        assert torch.equal(next(chunks), reference), isa
    assert not torch.equal(fastwave.generate(model, 900, batch=3, seed=9, engine="cpu", top_p=0.9), reference)


# ---- 5. engine choice and properties -------------------------------------------------------------

def test_auto_picks_the_cpu_engine_and_the_properties_describe_the_model():
    model = make_transformer(**ODD)
    assert fastwave.available_engines(model)[-1] == "cpu"
    assert fastwave.available_engines(make_transformer(**CONDITIONED_TRANSFORMER))[-1] == "cpu"
    auto = fastwave.generate(model, 50, seed=1)
    assert torch.equal(auto, fastwave.generate(model, 50, seed=1, engine="cpu"))
    engine = CpuTransformerEngine(model, 1, {})
    assert engine.native.threads == _native.physical_cores() >= 1
    assert engine.native.isa == ISAS[0] and ISAS[-1] == "generic"
    assert engine.native.position == 0 and engine.native.batch == 1
    for shape in (ODD, COND_ODD, WIDE):
        m = make_transformer(**shape)
        c = m.config
        for batch, threads in [(1, 1), (1, 3), (3, 2)]:
            native = CpuTransformerEngine(m, batch, {}, threads=threads).native
            assert native.receptive_field == m.receptive_field
            assert native.context == c.context
            assert native.batch == batch
            # keys (slots in whole spans, head_dim) and values (context, head_dim padded to 16)
            kv_bytes = c.layers * batch * c.heads * (kv_slots(c.context) * c.head_dim + c.context * ceil16(c.head_dim)) * 4
            if c.cond_window:  # the KV caches and the CNN's rings
                assert native.state_bytes > kv_bytes
            else:
                assert native.state_bytes == kv_bytes, (shape, batch, threads)


def test_fastwave_isa_environment_variable_forces_a_variant(monkeypatch):
    model = make_transformer()
    monkeypatch.setenv("FASTWAVE_ISA", "generic")
    assert CpuTransformerEngine(model, 1, {}).native.isa == "generic"
    monkeypatch.setenv("FASTWAVE_ISA", "sse9")
    with pytest.raises(ValueError, match="from FASTWAVE_ISA"):
        CpuTransformerEngine(model, 1, {})


# ---- 6. the native boundary ---------------------------------------------------------------------

def test_native_constructor_refuses_malformed_input():
    model = make_transformer(**CONDITIONED_TRANSFORMER)  # width 32, 2 heads, 32 classes, CNN channels 8, hop 4
    config, weights = model.export_weights()
    config_copy, weights_copy = copy.deepcopy(config), {k: v.copy() for k, v in weights.items()}
    make = _native.TransformerCpuEngine
    make(config, weights, 1, 1)  # the valid call

    def refuses(error, match, **changes):
        args = {"config": config, "weights": weights, "batch": 1, "threads": 1}
        args.update(changes)
        with pytest.raises(error, match=match):
            make(**args)

    def without(mapping, key):
        return {k: v for k, v in mapping.items() if k != key}

    def nonfinite(name, value):
        bad = weights[name].copy()
        bad.flat[1] = value
        return {**weights, name: bad}

    refuses(TypeError, "config must be a dict", config=[1])
    refuses(ValueError, "config is missing 'heads'", config=without(config, "heads"))
    refuses(ValueError, "config is missing 'rope_base'", config=without(config, "rope_base"))
    refuses(ValueError, "config is missing 'cond_dilations'", config=without(config, "cond_dilations"))
    refuses(ValueError, r"config\['model'\] must be 'transformer', got 'wavenet'", config={**config, "model": "wavenet"})
    refuses(TypeError, r"config\['layers'\] must be an integer", config={**config, "layers": 2.5})
    refuses(ValueError, r"config\['layers'\] must be in \[1,", config={**config, "layers": 0})
    refuses(ValueError, r"config\['width'\] \(32\) must split into config\['heads'\] \(5\)", config={**config, "heads": 5})
    refuses(ValueError, r"config\['width'\] \(32\) must split into config\['heads'\] \(32\) heads of an even size",
            config={**config, "heads": 32})
    refuses(ValueError, r"config\['context'\] must be in \[1,", config={**config, "context": 0})
    refuses(ValueError, r"config\['classes'\] must be in \[2,", config={**config, "classes": 1})
    refuses(ValueError, r"config\['rope_base'\] must be a finite number", config={**config, "rope_base": float("inf")})
    refuses(TypeError, r"config\['rope_base'\] must be a number", config={**config, "rope_base": "10000"})
    refuses(ValueError, r"config\['cond_dilations'\] must be 1, cond_kernel", config={**config, "cond_dilations": [1, 3]})
    refuses(ValueError, r"config\['cond_patches'\] must be", config={**config, "cond_patches": 5})
    refuses(ValueError, r"config\['cond_kernel'\] must be in \[2,", config={**config, "cond_kernel": 1})
    refuses(TypeError, "weights must be a dict", weights=[])
    refuses(TypeError, "weights keys must be str", weights={**weights, 3: weights["embedding"]})
    refuses(ValueError, r"weights is missing 'layers\.1\.fc_bias'", weights=without(weights, "layers.1.fc_bias"))
    refuses(ValueError, r"weights is missing 'context\.convs\.1\.weight'", weights=without(weights, "context.convs.1.weight"))
    refuses(ValueError, "unexpected entry 'extra'", weights={**weights, "extra": weights["embedding"]})
    refuses(ValueError, r"weights\['embedding'\] must have shape \(32, 32\)",
            weights={**weights, "embedding": np.zeros((31, 32), np.float32)})
    refuses(ValueError, r"weights\['layers\.0\.qkv_weight'\] must have shape \(96, 32\)",
            weights={**weights, "layers.0.qkv_weight": weights["layers.0.qkv_weight"].reshape(32, 96)})
    refuses(ValueError, r"weights\['head_bias'\] must have shape \(32,\)",
            weights={**weights, "head_bias": weights["head_bias"][None]})
    refuses(ValueError, r"weights\['layers\.1\.out_bias'\] must be finite", weights=nonfinite("layers.1.out_bias", np.nan))
    refuses(ValueError, r"weights\['context\.proj_weight'\] must be finite", weights=nonfinite("context.proj_weight", -np.inf))
    refuses(TypeError, r"weights\['embedding'\] must have dtype float32",
            weights={**weights, "embedding": weights["embedding"].astype(np.float64)})
    refuses(TypeError, r"weights\['norm_bias'\] must be a numpy array", weights={**weights, "norm_bias": weights["norm_bias"].tolist()})
    refuses(ValueError, r"weights\['head_weight'\] must be C-contiguous",
            weights={**weights, "head_weight": np.asfortranarray(weights["head_weight"])})
    refuses(ValueError, r"weights\['layers\.0\.fc_weight'\] must be C-contiguous",
            weights={**weights, "layers.0.fc_weight": np.ascontiguousarray(weights["layers.0.fc_weight"].T).T})
    refuses(ValueError, r"batch must be in \[1, 2\*\*20\], got 0", batch=0)
    refuses(ValueError, r"batch must be an integer in \[1, 2\*\*20\]", batch=-1)
    refuses(TypeError, "batch must be an integer", batch="2")
    refuses(ValueError, r"threads must be in \[1, 1024\], got 0", threads=0)
    refuses(ValueError, r"threads must be an integer in \[1, 1024\]", threads=5000)
    refuses(TypeError, "threads must be an integer", threads=1.5)
    refuses(ValueError, "isa must be 'auto' or one", isa="avx9000")
    # The plain variant's config with the conditioned weights, and the reverse.
    plain_config, plain_weights = make_transformer().export_weights()
    with pytest.raises(ValueError, match=r"unexpected entry 'context\."):
        make(plain_config, weights, 1, 1)
    with pytest.raises(ValueError, match=r"weights is missing 'context\."):
        make(config, plain_weights, 1, 1)
    # A WaveNet's export is refused by name.
    wavenet_config, wavenet_weights = fastwave.WaveNet(layers=2, cycles=1, residual_channels=8, gate_channels=8,
                                                       skip_channels=8, classes=32).export_weights()
    with pytest.raises(ValueError, match=r"config\['model'\] must be 'transformer'"):
        make(wavenet_config, wavenet_weights, 1, 1)
    # Nothing passed in was modified.
    assert config == config_copy
    assert weights.keys() == weights_copy.keys()
    assert all(np.array_equal(weights[k], weights_copy[k]) for k in weights)


def test_native_prefill_and_generate_refuse_malformed_input():
    model = make_transformer(**CONDITIONED_TRANSFORMER)
    config, weights = model.export_weights()
    weights_copy = {k: v.copy() for k, v in weights.items()}
    engine = _native.TransformerCpuEngine(config, weights, 2, 2)
    with pytest.raises(ValueError, match="needs prefill"):
        engine.generate(5, 0, 0, 1.0, 0, 1.0, False)
    prompt_refusals = [
        (np.zeros((2, 3), np.int32), TypeError, "prompt must have dtype int64"),
        (np.zeros((2, 3), np.float32), TypeError, "prompt must have dtype int64"),
        ([[0, 1], [2, 3]], TypeError, "prompt must be a numpy array"),
        (np.zeros((1, 3), np.int64), ValueError, r"prompt must have shape \(batch, P\) = \(2, P >= 1\), got \(1, ?3\)"),
        (np.zeros((2, 0), np.int64), ValueError, r"prompt must have shape \(batch, P\)"),
        (np.zeros((6,), np.int64), ValueError, r"prompt must have shape \(batch, P\)"),
        (np.zeros((2, 3, 1), np.int64), ValueError, r"prompt must have shape \(batch, P\)"),
        (np.full((2, 3), 32, np.int64), ValueError, r"prompt tokens must be in \[0, 32\), got 32"),
        (np.array([[0, 1, 2], [3, -1, 5]], np.int64), ValueError, r"prompt tokens must be in \[0, 32\), got -1 at flat index 4"),
        (np.zeros((3, 2), np.int64).T, ValueError, "prompt must be C-contiguous"),
    ]
    for prompt, error, match in prompt_refusals:
        with pytest.raises(error, match=match):
            engine.prefill(prompt)
        with pytest.raises(error, match=match):
            engine.prefill(prompt, return_logits=True)
    prompt = np.array([[3, 4, 5], [6, 7, 8]], np.int64)
    prompt_copy = prompt.copy()
    engine.prefill(prompt)
    assert np.array_equal(prompt, prompt_copy) and engine.position == 3
    expected = _native.TransformerCpuEngine(config, weights, 2, 2)
    expected.prefill(prompt)
    generate_refusals = [
        ((5, -1, 0, 1.0, 0, 1.0, False), ValueError, "seed must be an integer in"),
        ((5, 2 ** 64, 0, 1.0, 0, 1.0, False), ValueError, "seed must be an integer in"),
        ((5, 0, 2 ** 32, 1.0, 0, 1.0, False), ValueError, "step0 must be an integer in"),
        ((5, 0, 2 ** 32 - 2, 1.0, 0, 1.0, False), ValueError, r"step0 \+ n must be <= 2\*\*32"),
        ((-1, 0, 0, 1.0, 0, 1.0, False), ValueError, "n must be an integer"),
        ((2.5, 0, 0, 1.0, 0, 1.0, False), TypeError, "n must be an integer"),
        ((5, 0, 0, -1.0, 0, 1.0, False), ValueError, "temperature"),
        ((5, 0, 0, float("nan"), 0, 1.0, False), ValueError, "temperature"),
        ((5, 0, 0, float("inf"), 0, 1.0, False), ValueError, "temperature"),
        ((5, 0, 0, 1.0, -3, 1.0, False), ValueError, "top_k must be an integer"),
        ((5, 0, 0, 1.0, 0, 0.0, False), ValueError, "top_p"),
        ((5, 0, 0, 1.0, 0, 1.5, False), ValueError, "top_p"),
        ((5, 0, 0, 1.0, 0, float("nan"), False), ValueError, "top_p"),
        ((5, 0, 0, "hot", 0, 1.0, False), TypeError, "incompatible function arguments"),
    ]
    for args, error, match in generate_refusals:
        with pytest.raises(error, match=match):
            engine.generate(*args)
    with pytest.raises(ValueError, match="prompt tokens must be in"):  # a refused prefill keeps the state
        engine.prefill(np.full((2, 3), 99, np.int64))
    assert engine.position == 3  # nothing was consumed by the refusals
    tokens = engine.generate(40, 6, 0, 1.0, 0, 1.0, True)
    assert tokens.shape == (2, 40) and tokens.dtype == np.int64
    assert np.array_equal(tokens, expected.generate(40, 6, 0, 1.0, 0, 1.0, True))
    assert engine.position == 3 + 39  # the final token is not fed
    with pytest.raises(ValueError, match="needs prefill"):
        engine.generate(1, 0, 40, 1.0, 0, 1.0, False)
    assert all(np.array_equal(weights[k], weights_copy[k]) for k in weights)


def test_generate_and_stream_refuse_bad_arguments_for_the_cpu_engine():
    model = make_transformer()
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        fastwave.generate(model, 5, engine="cpu", threads=0)
    with pytest.raises(ValueError, match="takes no cond"):
        fastwave.generate(model, 5, engine="cpu", cond={"global_cond": 1})
    with pytest.raises(ValueError, match=r"prompt must lie in \[0, 32\)"):
        fastwave.stream(model, 5, engine="cpu", prompt=torch.tensor([32]))
    with pytest.raises(ValueError, match="top_p"):
        fastwave.stream(model, 5, engine="cpu", top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        fastwave.stream(model, 5, engine="cpu", temperature=-0.5)


# ---- 7. streaming across the conditioning blocks ----------------------------------------------------

@pytest.mark.parametrize("prompt_length", [7, 10])  # hop 5: the prompt ends inside / at the end of a block
def test_stream_chunks_straddling_cond_hop_blocks_give_one_calls_tokens(prompt_length):
    model = make_transformer(**COND_ODD)
    hop = model.config.cond_hop
    n = 40 * hop + 3  # 40 block boundaries, most of them inside chunks
    prompt = torch.randint(0, model.config.classes, (2, prompt_length), generator=torch.Generator().manual_seed(1))
    kwargs = {"batch": 2, "prompt": prompt, "seed": 31, "temperature": 0.9, "top_k": 12}
    whole = fastwave.generate(model, n, engine="cpu", threads=2, **kwargs)
    assert torch.equal(whole, fastwave.generate(model, n, engine="torch", **kwargs))
    assert len(torch.unique(whole)) > 5
    for chunk_size in (1, 3, hop - 1, hop, hop + 1, 2 * hop + 3, 64):
        chunks = list(fastwave.stream(model, n, engine="cpu", threads=2, chunk_size=chunk_size, **kwargs))
        assert [c.shape[1] for c in chunks] == [chunk_size] * (n // chunk_size) + ([n % chunk_size] if n % chunk_size else [])
        assert torch.equal(torch.cat(chunks, dim=1), whole), chunk_size


# ---- fp16 storage ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [ODD, CONDITIONED_TRANSFORMER], ids=["odd", "conditioned"])
def test_fp16_storage_stays_within_the_half_precision_tolerance(shape, fp32_exact):
    """precision="fp16" stores the matrices and the KV cache as IEEE half and computes in fp32:
    DESIGN's fp16 tolerance (rel. error < 1e-2) against the torch engine, on every ISA and thread
    split, and the cache takes half the bytes."""
    model = make_transformer(**shape)
    c = model.config
    tokens = torch.randint(0, c.classes, (2, 2 * model.receptive_field + 5), generator=torch.Generator().manual_seed(4))
    expected = torch_engine_logits(model, tokens)
    for isa in ISAS:
        for threads in (1, 2, 3):
            engine = CpuTransformerEngine(model, 2, {}, threads=threads, isa=isa, precision="fp16")
            assert engine.native.precision == "fp16"
            error = rel_error(engine.teacher_forced_logits(tokens), expected)
            assert 1e-6 < error < 1e-2, (isa, threads, error)  # lossy, but within half's tolerance
    full = CpuTransformerEngine(model, 2, {}, threads=1).native.state_bytes
    half = CpuTransformerEngine(model, 2, {}, threads=1, precision="fp16").native.state_bytes
    cnn = full - 2 * c.layers * c.heads * (kv_slots(c.context) * c.head_dim + c.context * ceil16(c.head_dim)) * 4
    assert half - cnn == (full - cnn) // 2


def test_fp16_is_chosen_through_generate_and_refused_where_it_cannot_run():
    model = make_transformer(**TINY_TRANSFORMER)
    run = fastwave.generate(model, 300, seed=5, engine="cpu", precision="fp16", temperature=0.7)
    assert run.shape == (1, 300) and len(torch.unique(run)) > 3
    with pytest.raises(ValueError, match="precision must be one of"):
        fastwave.generate(model, 4, engine="cpu", precision="bf16")
    with pytest.raises(ValueError, match="needs engine='cpu'"):
        fastwave.generate(model, 4, engine="torch", precision="fp16")
    config, weights = model.export_weights()
    with pytest.raises(ValueError, match="precision must be 'fp32', 'fp16' or 'int8', got 'int4'"):
        _native.TransformerCpuEngine(config, weights, 1, 1, precision="int4")
    huge = dict(weights)
    huge["layers.0.fc_weight"] = weights["layers.0.fc_weight"] * 0 + 7e4
    with pytest.raises(ValueError, match=r"fc_weight.*beyond half precision's range"):
        _native.TransformerCpuEngine(config, huge, 1, 1, precision="fp16")
    _native.TransformerCpuEngine(config, huge, 1, 1)  # fp32 takes it
    _native.TransformerCpuEngine(config, huge, 1, 1, precision="int8")  # and int8: its scales take any finite weight


# ---- int8 storage ---------------------------------------------------------------------------------

# Relative error of int8's logits against the torch engine: about 2x the 0.014-0.036 measured on these
# small random models (the cost in bits/sample of a trained model is in docs/generation.md).
INT8_TOLERANCE = 0.08


@pytest.mark.parametrize("shape", [ODD, COND_ODD, WIDE], ids=["odd", "conditioned-odd", "wide"])
def test_int8_storage_stays_near_fp32_and_threads_do_not_change_it(shape, fp32_exact):
    """precision="int8": int8 matrices and an int8 KV cache (transformer_plan.h). Near the torch
    engine's logits on every ISA, well past the context; a thread split changes no bit (threads
    split heads, units and classes, never the arithmetic of one output); and the cache takes a
    quarter of fp32's bytes plus a scale per slot."""
    model = make_transformer(**shape)
    c = model.config
    tokens = torch.randint(0, c.classes, (2, 2 * model.receptive_field + 5), generator=torch.Generator().manual_seed(4))
    expected = torch_engine_logits(model, tokens)
    for isa in ISAS:
        single = None
        for threads in (1, 2, 3):
            engine = CpuTransformerEngine(model, 2, {}, threads=threads, isa=isa, precision="int8")
            assert engine.native.precision == "int8"
            logits = engine.teacher_forced_logits(tokens)
            if single is None:
                single = logits
                error = rel_error(logits, expected)
                assert 1e-4 < error < INT8_TOLERANCE, (isa, error)  # lossy, and near
            else:
                assert torch.equal(logits, single), (isa, threads)
    full = CpuTransformerEngine(model, 2, {}, threads=1).native.state_bytes
    int8 = CpuTransformerEngine(model, 2, {}, threads=1, precision="int8").native.state_bytes
    fp32_cache = 2 * c.layers * c.heads * (kv_slots(c.context) * c.head_dim + c.context * ceil16(c.head_dim)) * 4
    dq = ceil16(c.head_dim)  # int8 keys are stored over the padded features, in groups of four
    int8_cache = 2 * c.layers * c.heads * ((kv_slots(c.context) + c.context) * (dq + 4))
    assert int8 - int8_cache == full - fp32_cache  # the conditioned variant's CNN state stays fp32


def test_int8_tokens_do_not_depend_on_batch_threads_or_chunks():
    """Each stream's inputs and cache rows are quantised on their own, so its audio is the same
    alone or in a batch, with its rows on any thread and in any chunking."""
    model = make_transformer(**ODD)
    kwargs = dict(seed=9, engine="cpu", precision="int8", top_p=0.95)
    reference = fastwave.generate(model, 90, batch=3, threads=1, **kwargs)
    assert len(torch.unique(reference)) > 8
    for threads, chunk in [(2, 1), (2, 7), (3, 90)]:
        run = torch.cat(list(fastwave.stream(model, 90, batch=3, threads=threads, chunk_size=chunk, **kwargs)), dim=1)
        assert torch.equal(run, reference), (threads, chunk)
    assert torch.equal(fastwave.generate(model, 90, batch=1, threads=1, **kwargs), reference[:1])
    assert not torch.equal(reference, fastwave.generate(model, 90, batch=3, seed=9, engine="cpu", top_p=0.95))


def test_int8_threads_sharing_a_stream_quantise_it_as_one_thread_does():
    """Threads that share a stream split the attention heads and the MLP's hidden units, whose
    activations int8 quantises per head and per kSplitBlock units: blocks no split cuts, so the
    split changes no scale, only the order in which the threads' partial sums are added (as in
    fp32; int8's re-quantisation can amplify that, docs/generation.md). Quantised with one scale per thread's
    share instead (the first version), the median position's logits of this model moved by 2.9%."""
    model = make_transformer(**{**WIDE, "mlp_ratio": 4, "context": 40})
    tokens = torch.randint(0, 256, (1, 300), generator=torch.Generator().manual_seed(2))
    one, two = (CpuTransformerEngine(model, 1, {}, threads=t, precision="int8").teacher_forced_logits(tokens)
                for t in (1, 2))
    difference = (one - two).abs().amax(dim=1) / one.abs().max()  # per position
    assert difference.median() < 1e-5 and difference.max() < INT8_TOLERANCE
