"""The C++ WaveNet engine's fp16 and int8 weights: the int8 arithmetic exactly as
csrc/cpu/int8_weights.h documents it on every ISA, logits near fp32's, tokens independent of threads,
batch and chunking, and refusals."""
import numpy as np
import pytest
import torch

import fastwave
from fastwave.engines import _native
from fastwave.engines import generation
from fastwave.engines.wavenet_cpu import CpuWaveNetEngine
from test_engine_cpu import CPU_SHAPES, ISAS, torch_engine_logits
from small_models import rel_error
from test_engines import make_cond, make_model

pytestmark = pytest.mark.usefixtures("uncapped_threads")  # 3-way splits on any machine


def int8_matmul_reference(x, w, block=None):
    """x @ w by int8_weights.h in numpy: per-column int8 weights, 7-bit inputs per row and block of
    `block` inputs (None: the whole row), exact integer sums per block, then the same float32
    roundings in the same order (block sums added in order, in float64 here)."""
    f32 = np.float32
    w_scale = (np.abs(w).max(axis=0) / f32(127)).astype(f32)
    q_w = np.where(w_scale > 0, np.rint(w / np.where(w_scale > 0, w_scale, f32(1))), 0).clip(-127, 127)
    block = block or x.shape[1]
    total = 0
    for b in range(0, x.shape[1], block):
        xb = x[:, b:b + block]
        top = np.abs(xb).max(axis=1)
        inv = np.where(top > 0, f32(63) / np.where(top > 0, top, f32(1)), f32(0)).astype(f32)
        q_x = np.rint((xb * inv[:, None]).astype(f32))
        assert np.abs(q_x).max() <= 63
        dots = q_x.astype(np.int64) @ q_w[b:b + block].astype(np.int64)
        x_scale = (top / f32(63)).astype(f32)
        part = dots.astype(f32) * (w_scale[None, :] * x_scale[:, None]).astype(f32)
        total = part if block == x.shape[1] else total + part.astype(np.float64)
    return total


@pytest.mark.parametrize("rows,inputs,cols", [(1, 16, 16), (3, 64, 128), (5, 48, 80), (9, 128, 256)])
def test_int8_products_are_exactly_the_documented_arithmetic_on_every_isa(rows, inputs, cols):
    rng = np.random.default_rng(rows * 1000 + inputs)
    x = (rng.standard_normal((rows, inputs)) * rng.uniform(0.01, 100, (rows, 1))).astype(np.float32)
    w = (rng.standard_normal((inputs, cols)) * rng.uniform(1e-3, 10, (1, cols))).astype(np.float32)
    x[0, :] = 0.0             # a silent row: scale 0
    w[:, 1] = 0.0             # a dead output channel: scale 0
    w[:, 2] = rng.choice([-3.0, 3.0], inputs)  # ties on the weights' grid
    expected = int8_matmul_reference(x, w)
    for isa in ISAS:  # the VNNI variant, where the CPU has it, included
        assert np.array_equal(_native.int8_matmul(x, w, isa), expected), isa
    # and it is a product: 7-bit inputs and 8-bit weights stay within a few percent of fp32
    assert np.abs(expected - x @ w).max() <= 0.05 * np.abs(x @ w).max()


def test_int8_products_in_blocks_scale_each_block_on_its_own():
    """Blocks of inputs with their own scales (what the engines use where threads split a product's
    inputs): each block's exact integer sum, scaled and added in block order, on every ISA. A block
    whose inputs are all tiny keeps its precision instead of rounding to 0 under a whole-row scale."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 80)).astype(np.float32)
    x[:, 64:] *= 1e-4   # the last block (16 of 80 inputs) is tiny
    w = rng.standard_normal((80, 32)).astype(np.float32)
    expected = int8_matmul_reference(x, w, block=32)
    for isa in ISAS:
        y = _native.int8_matmul(x, w, isa, block=32)
        assert np.abs(y - expected).max() <= 1e-6 * np.abs(expected).max(), isa
    tail = int8_matmul_reference(x, w, block=32) - int8_matmul_reference(x[:, :64], w, block=32)  # its share
    assert np.abs(tail - x[:, 64:] @ w[64:]).max() < 0.05 * np.abs(x[:, 64:] @ w[64:]).max()
    # under one scale for the whole row its inputs would all round to 0
    assert np.all(np.rint(x[:, 64:] * (63 / np.abs(x).max(axis=1, keepdims=True))) == 0)
    with pytest.raises(ValueError, match="block must be 0"):
        _native.int8_matmul(x, w, block=24)


def test_int8_matmul_refuses_shapes_it_cannot_run():
    x, w = np.ones((2, 16), np.float32), np.ones((16, 16), np.float32)
    with pytest.raises(ValueError, match="multiples of 16"):
        _native.int8_matmul(x[:, :8], w[:8])
    with pytest.raises(ValueError, match="matching in"):
        _native.int8_matmul(x, w[:, :8].T.copy())
    with pytest.raises(ValueError, match="finite"):
        _native.int8_matmul(x * np.inf, w)


# Relative error of the logits against fp32 (rel_error: max abs diff / max abs logit). fp16 is
# DESIGN's half-precision tolerance; int8 (no DESIGN entry) is 2.5x the measured 0.014-0.020 of these
# small random models, whose accuracy in bits/sample is measured on the shipped piano model instead.
TOLERANCE = {"fp16": 1e-2, "int8": 0.05}


@pytest.mark.parametrize("shape", [CPU_SHAPES[2], CPU_SHAPES[3]], ids=["conditioned", "odd"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_logits_stay_near_fp32(shape, precision):
    model = make_model(**shape)
    batch, length = 2, 2 * model.receptive_field + 9
    tokens = torch.randint(0, model.config.classes, (batch, length), generator=torch.Generator().manual_seed(6))
    cond = make_cond(model, batch, length)
    expected = torch_engine_logits(model, tokens, cond)
    errors = {}
    for isa in ISAS:
        for threads in (1, 2, 3):
            engine = CpuWaveNetEngine(model, batch, model.prepare_cond(cond, batch, length), threads=threads,
                                      isa=isa, precision=precision)
            assert engine.native.precision == precision
            logits = engine.teacher_forced_logits(tokens)
            errors[isa, threads] = rel_error(logits, expected)
            if threads == 1:
                single = logits
            else:  # threads split channels, never the arithmetic of one output
                assert torch.equal(logits, single), (isa, threads)
    assert all(1e-7 < e < TOLERANCE[precision] for e in errors.values()), errors


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tokens_do_not_depend_on_threads_batch_or_chunks(precision):
    model = make_model(**CPU_SHAPES[0])
    kwargs = dict(seed=9, engine="cpu", precision=precision, top_p=0.95)
    reference = fastwave.generate(model, 700, batch=3, threads=1, **kwargs)
    assert len(torch.unique(reference)) > 8
    for threads, chunk in [(2, 1), (2, 99), (3, 700)]:
        run = torch.cat(list(fastwave.stream(model, 700, batch=3, threads=threads, chunk_size=chunk, **kwargs)), dim=1)
        assert torch.equal(run, reference), (threads, chunk)
    # each stream is quantised on its own: stream 0 alone makes the same tokens as in the batch
    assert torch.equal(fastwave.generate(model, 700, batch=1, threads=2, **kwargs), reference[:1])


def test_precisions_keep_the_state_and_fp32_keeps_parity():
    model = make_model(**CPU_SHAPES[1])
    config, weights = model.export_weights()
    states = {p: _native.WaveNetCpuEngine(config, weights, 2, 1, precision=p).state_bytes for p in ("fp32", "fp16", "int8")}
    assert len(set(states.values())) == 1, states  # the ring buffers stay fp32
    runs = {p: fastwave.generate(model, 400, seed=3, engine="cpu", precision=p) for p in ("fp32", "fp16", "int8")}
    assert torch.equal(runs["fp32"], fastwave.generate(model, 400, seed=3, engine="torch"))
    assert not torch.equal(runs["int8"], runs["fp32"])  # int8 really is lossy over 400 samples


def test_precisions_are_refused_where_they_cannot_run(monkeypatch):
    model = make_model(**CPU_SHAPES[0])
    config, weights = model.export_weights()
    with pytest.raises(ValueError, match="precision must be 'fp32', 'fp16' or 'int8', got 'int4'"):
        _native.WaveNetCpuEngine(config, weights, 1, 1, precision="int4")
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, int8"):
        fastwave.generate(model, 4, engine="cpu", precision="bf16")
    with pytest.raises(ValueError, match="needs engine='cpu'"):
        fastwave.generate(model, 4, engine="torch", precision="int8")
    monkeypatch.setitem(generation.CPU_PRECISIONS, "wavenet", ("fp32", "fp16"))  # an engine without int8
    with pytest.raises(ValueError, match="needs engine='cpu' and a model whose C\\+\\+ engine stores it"):
        fastwave.generate(model, 4, engine="cpu", precision="int8")
    huge = dict(weights)
    huge["layers.0.skip_weight"] = weights["layers.0.skip_weight"] * 0 + 7e4
    with pytest.raises(ValueError, match=r"skip_weight.*beyond half precision's range"):
        _native.WaveNetCpuEngine(config, huge, 1, 1, precision="fp16")
    _native.WaveNetCpuEngine(config, huge, 1, 1, precision="int8")  # int8's scales take any finite weight


def test_multiply_rate_times_each_precision_and_refuses_bad_arguments():
    for precision in ("fp32", "fp16", "int8"):
        assert _native.multiply_rate(precision, 2, 32, 64, threads=1, seconds=0.01) > 1e6  # multiply-adds/s
    with pytest.raises(ValueError, match="precision must be 'fp32', 'fp16' or 'int8'"):
        _native.multiply_rate("int4", 1, 16, 16)
    with pytest.raises(ValueError, match="multiples of 16"):
        _native.multiply_rate("int8", 1, 24, 16)
    with pytest.raises(ValueError, match="rows must be in"):
        _native.multiply_rate("fp32", 0, 16, 16)
    with pytest.raises(ValueError, match="seconds must be in"):
        _native.multiply_rate("fp32", 1, 16, 16, seconds=0)
