"""causal_attention: the Triton flash-attention kernels (forced; the interpreter on CPU) against
torch's scaled_dot_product_attention in float64, forward and every gradient; causal and windowed
masks and the blocks they skip; layouts; custom-op registration, torch.compile, autocast; bad input."""
import importlib
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from fastwave import ops
from fastwave.ops.causal_attention import causal_attention, causal_attention_reference
from fastwave.ops.verify import TOLERANCE, attention_errors, random_attention, rel_error, worst
from ops_cases import kernel_targets, needs_triton

pytestmark = needs_triton
# the module itself (fastwave.ops exports the function under the module's name)
attention_module = importlib.import_module("fastwave.ops.causal_attention")
ROOT = pathlib.Path(__file__).resolve().parents[2]
DEVICE = kernel_targets()[0][0]  # where the forced kernels run: the interpreter on a CPU, else the GPU

# (batch, heads, length, head dim, window, scale). In the interpreter the forward and dQ kernels take
# 32 queries x 16 keys per step, dK / dV 16 x 32 (kernels/flash_attention.py): these lengths end
# inside, on and past block edges, and the windows are shorter than, equal to and longer than a block.
ATTENTION_SHAPES = [
    (2, 2, 33, 16, None, None),
    (1, 3, 70, 48, None, None),  # D padded to 64 in registers
    (3, 1, 7, 64, None, 0.5),  # one partial block; a larger scale (peakier softmax)
    (1, 2, 75, 16, 16, None),  # window a block long
    (2, 1, 64, 48, 5, None),
    (1, 1, 41, 128, 40, None),
]


@pytest.mark.parametrize("device,dtype", kernel_targets())
@pytest.mark.parametrize("shape", ATTENTION_SHAPES)
def test_attention_forward_and_gradients_match_reference(device, dtype, shape, fp32_exact):
    batch, heads, length, head_dim, window, scale = shape
    q, k, v, do = random_attention(batch, heads, length, head_dim)
    errors = attention_errors(q, k, v, do, dtype, device, scale=scale, window=window)
    assert worst(errors)[1] < TOLERANCE[dtype], errors


def attention_case(batch, heads, length, head_dim, grad=False):
    """random_attention's (q, k, v, d_out) on DEVICE, q, k and v requiring grad if asked."""
    q, k, v, do = (t.to(DEVICE) for t in random_attention(batch, heads, length, head_dim))
    return (*(t.requires_grad_(grad) for t in (q, k, v)), do)


def test_attention_strided_inputs(fp32_exact):
    """q, k, v as views of (B, N, H, D) projections, and one with D not in unit steps (copied)."""
    q, k, v, do = attention_case(2, 3, 37, 32)
    q_t, k_t = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k))  # row stride H * D
    v_t = v.transpose(2, 3).contiguous().transpose(2, 3)  # D strided
    assert not (q_t.is_contiguous() or k_t.is_contiguous() or v_t.stride(-1) == 1)
    errors = attention_errors(q_t, k_t, v_t, do, torch.float32, DEVICE, window=20)
    assert worst(errors)[1] < 1e-5, errors
    with ops.backend("triton"):
        assert torch.equal(causal_attention(q_t, k_t, v_t), causal_attention(q, k, v))


@pytest.mark.parametrize("length,window", [(40, 1), (1, None)])
def test_attention_that_sees_one_key_returns_the_values(length, window, fp32_exact):
    """Each query sees only its own key (a window of 1, or a single step): out = v, dv = d_out, and
    q, k get no gradient (which a relative error cannot measure)."""
    q, k, v, do = attention_case(1, 2, length, 16, grad=True)
    with ops.backend("triton"):
        out = causal_attention(q, k, v, window=window)
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), do)
    torch.testing.assert_close(out, v, rtol=0, atol=1e-6)
    torch.testing.assert_close(dv, do, rtol=0, atol=1e-6)
    assert dq.abs().max() < 1e-5 and dk.abs().max() < 1e-5


def test_attention_saves_the_log_sum_exp(fp32_exact):
    q, k, v, _ = attention_case(2, 2, 45, 16)
    for window in (None, 7):
        scores = (q.double() @ k.double().transpose(-1, -2)) * 0.3
        lag = torch.arange(45, device=DEVICE)[:, None] - torch.arange(45, device=DEVICE)[None, :]
        visible = (lag >= 0) & (lag < (window or 45))
        expected = torch.logsumexp(scores.masked_fill(~visible, float("-inf")), dim=-1)
        for backend in ("triton", "torch"):
            with ops.backend(backend):
                _, lse = torch.ops.fastwave.causal_attention(q, k, v, 0.3, window, 0.0, None)
            assert lse.dtype == torch.float32 and lse.shape == (2, 2, 45)
            assert (lse.double() - expected).abs().max() < 1e-5, backend


def small_blocks(monkeypatch):
    """16 x 16 blocks in every kernel, so that the tests below know which blocks exist."""
    from fastwave.ops.kernels import flash_attention
    blocks = dict(BLOCK_M=16, BLOCK_N=16)
    monkeypatch.setattr(flash_attention, "TUNING", {"forward": blocks, "dq": blocks, "dkdv": blocks})


def outputs_and_grads(q, k, v, do, window=None):
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    with ops.backend("triton"):
        out = causal_attention(q, k, v, window=window)
        return (out, *torch.autograd.grad(out, (q, k, v), do))


@pytest.mark.filterwarnings("ignore:All-NaN slice")  # the interpreter's max over a poisoned row
@pytest.mark.parametrize("window", [None, 8])
def test_attention_never_loads_skipped_blocks(monkeypatch, window):
    """NaN in the blocks a program skips stays out of its results; a block loaded and masked would
    let it through (0 * NaN is NaN in P V), so this fails where skipping does."""
    small_blocks(monkeypatch)
    q, k, v, do = attention_case(1, 2, 80, 16)
    clean = outputs_and_grads(q, k, v, do, window)
    # keys and values from step 40: query blocks before their block never load them (queries 32..47
    # share the masked diagonal block 32..47 with them, so P V is NaN there)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 40:], v2[:, :, 40:] = float("nan"), float("nan")
    out, dq, _, _ = outputs_and_grads(q, k2, v2, do, window)
    assert torch.equal(out[:, :, :32], clean[0][:, :, :32]) and torch.equal(dq[:, :, :32], clean[1][:, :, :32])
    assert out[:, :, 32:40].isnan().all()  # the poison does reach a block that loads it
    # queries and output gradients of the first 16 steps: dK and dV of later keys never use them
    q2, do2 = q.clone(), do.clone()
    q2[:, :, :16], do2[:, :, :16] = float("nan"), float("nan")
    _, _, dk, dv = outputs_and_grads(q2, k, v, do2, window)
    assert torch.equal(dk[:, :, 16:], clean[2][:, :, 16:]) and torch.equal(dv[:, :, 16:], clean[3][:, :, 16:])
    if window is not None:  # behind the window: keys (forward, dQ) and queries (dK, dV) long past
        k2, v2 = k.clone(), v.clone()
        k2[:, :, :16], v2[:, :, :16] = float("nan"), float("nan")
        out, dq, _, _ = outputs_and_grads(q, k2, v2, do, window)
        assert torch.equal(out[:, :, 32:], clean[0][:, :, 32:]) and torch.equal(dq[:, :, 32:], clean[1][:, :, 32:])
        q2, do2 = q.clone(), do.clone()
        q2[:, :, 48:], do2[:, :, 48:] = float("nan"), float("nan")
        _, _, dk, dv = outputs_and_grads(q2, k, v, do2, window)
        assert torch.equal(dk[:, :, :32], clean[2][:, :, :32]) and torch.equal(dv[:, :, :32], clean[3][:, :, :32])


@pytest.mark.parametrize("window", [None, 6])
def test_attention_output_ignores_keys_it_may_not_see(window):
    q, k, v, _ = attention_case(1, 2, 50, 16)
    k2, v2 = k.clone(), v.clone()
    i = 29
    k2[:, :, i + 1:] += 1.0
    v2[:, :, i + 1:] -= 1.0
    if window is not None:
        k2[:, :, :i - window + 1] *= 3.0
        v2[:, :, :i - window + 1] += 2.0
    with ops.backend("triton"):
        out, out2 = causal_attention(q, k, v, window=window), causal_attention(q, k2, v2, window=window)
    assert torch.equal(out[:, :, i], out2[:, :, i])
    assert not torch.equal(out[:, :, i + 1], out2[:, :, i + 1])


def test_reference_backward_in_blocks_matches_autograd(monkeypatch):
    """The written-out reference (fp64 and dropout run it) over several blocks of rows."""
    monkeypatch.setattr(attention_module, "REFERENCE_BLOCK_ELEMENTS", 2 * 3 * 7 * 30)  # 7 rows a block
    q, k, v, do = (t.double() for t in random_attention(2, 3, 30, 16))
    for window in (None, 4):
        got = outputs_and_grads_reference(q, k, v, do, window, fastwave_op=True)
        expected = outputs_and_grads_reference(q, k, v, do, window, fastwave_op=False)
        assert all(rel_error(g, e) < 1e-12 for g, e in zip(got, expected))


def outputs_and_grads_reference(q, k, v, do, window, fastwave_op):
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = (causal_attention if fastwave_op else causal_attention_reference)(q, k, v, window=window)
    return (out, *torch.autograd.grad(out, (q, k, v), do))


def test_gradcheck_in_float64():
    """float64 runs the reference inside the custom ops: this checks their autograd wiring."""
    q, k, v, _ = (t.double().requires_grad_() for t in random_attention(1, 2, 6, 16))
    assert torch.autograd.gradcheck(lambda *a: causal_attention(*a, scale=0.7), (q, k, v), fast_mode=True)
    assert torch.autograd.gradcheck(lambda *a: causal_attention(*a, window=2), (q, k, v), fast_mode=True)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_custom_ops_pass_opcheck(backend):
    """Schema, fake implementations, autograd registration and tracing, as torch checks them."""
    q, k, v, do = attention_case(1, 2, 20, 16)
    q = q.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()  # strided
    k, v = k.requires_grad_(), v.requires_grad_()
    with ops.backend(backend):
        torch.library.opcheck(torch.ops.fastwave.causal_attention, (q, k, v, 0.25, 5, 0.0, None))
        out, lse = torch.ops.fastwave.causal_attention(q, k, v, 0.25, None, 0.0, None)
        torch.library.opcheck(torch.ops.fastwave.causal_attention_backward,
                              (do, q.detach(), k.detach(), v.detach(), out.detach(), lse, 0.25, None, 0.0, None,
                               [True, False, True]))


def test_gradients_only_where_required():
    q, k, v, do = attention_case(1, 2, 21, 16)
    v.requires_grad_()
    with ops.backend("triton"):
        (dv,) = torch.autograd.grad(causal_attention(q, k, v, window=9), v, do)
    v_ref = v.detach().double().requires_grad_()
    (dv_ref,) = torch.autograd.grad(causal_attention_reference(q.double(), k.double(), v_ref, window=9), v_ref,
                                    do.double())
    assert rel_error(dv, dv_ref) < 1e-5


@pytest.mark.parametrize("reduce", [lambda out: out.sum(), lambda out: out.sum(2).square().sum()])
def test_gradient_through_a_sum(reduce):
    """A sum sends back an expanded output gradient: stride 0 everywhere (copied: D must be in unit
    steps), or along the sequence only (read in place)."""
    q, k, v, _ = attention_case(1, 2, 19, 16, grad=True)
    with ops.backend("triton"):
        grads = torch.autograd.grad(reduce(causal_attention(q, k, v)), (q, k, v))
    ref = [t.detach().double().requires_grad_() for t in (q, k, v)]
    grads_ref = torch.autograd.grad(reduce(causal_attention_reference(*ref)), ref)
    assert all(rel_error(g, r) < 1e-5 for g, r in zip(grads, grads_ref))


def test_torch_compile_without_graph_breaks():
    q, k, v, _ = attention_case(1, 2, 24, 16, grad=True)
    w = torch.randn(16, 16, device=DEVICE, requires_grad=True)

    def layer(q, k, v, w):
        return causal_attention(q @ w, k, v, window=10).square().sum()

    with ops.backend("triton"):
        expected = torch.autograd.grad(layer(q, k, v, w), (q, k, v, w))
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        got = torch.autograd.grad(compiled(q, k, v, w), (q, k, v, w))
    assert all(rel_error(g, e) < 1e-5 for g, e in zip(got, expected))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_autocast_computes_in_the_autocast_dtype(backend):
    q, k, v, _ = attention_case(1, 2, 17, 16, grad=True)
    expected = causal_attention_reference(q, k, v)
    with ops.backend(backend), torch.autocast(DEVICE, dtype=torch.float16):
        out = causal_attention(q, k, v)
        grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    assert out.dtype == torch.float16 and all(g.dtype == torch.float32 for g in grads)
    assert rel_error(out, expected) < 1e-2


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_attention_of_an_empty_sequence(backend):
    q, k, v = (torch.zeros(2, 3, 0, 16, device=DEVICE, requires_grad=True) for _ in range(3))
    with ops.backend(backend):
        out = causal_attention(q, k, v, window=4)
        grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert out.shape == (2, 3, 0, 16) and all(g.shape == q.shape for g in grads)


@pytest.mark.parametrize("change,error,message", [
    (dict(q="long"), TypeError, "q must be float16, bfloat16, float32 or float64"),
    (dict(k="half"), TypeError, "k has dtype torch.float16"),
    (dict(q=torch.randn(2, 5, 16)), ValueError, "q must have 4 dimensions"),
    (dict(v=torch.randn(2, 3, 6, 16)), ValueError, r"k and v must have one shape"),
    (dict(k=torch.randn(2, 2, 5, 16), v=torch.randn(2, 2, 5, 16)), ValueError, "2 heads, which must divide q's 3"),
    (dict(k=torch.randn(2, 3, 4, 16), v=torch.randn(2, 3, 4, 16)), ValueError, "q has 5 positions but k and v 4"),
    (dict(k=torch.randn(1, 3, 5, 16), v=torch.randn(1, 3, 5, 16)), ValueError, "k must match q's batch"),
    (dict(layout="nhbd"), ValueError, "layout must be one of"),
    (dict(k=torch.randn(2, 3, 5, 16, device="meta")), ValueError, "k is on meta but the input is on cpu"),
    (dict(q=torch.randn(2, 3, 5, 4), k=torch.randn(2, 3, 5, 4), v=torch.randn(2, 3, 5, 4)), ValueError,
     "head dimension .* of 8 to 256, got 4"),
    (dict(q=torch.randn(1, 1, 5, 257), k=torch.randn(1, 1, 5, 257), v=torch.randn(1, 1, 5, 257)), ValueError,
     "8 to 256, got 257"),
    (dict(scale=0.0), ValueError, "scale must be positive and finite"),
    (dict(scale=float("inf")), ValueError, "scale must be positive and finite"),
    (dict(scale=torch.tensor(0.5)), TypeError, "scale must be a float"),
    (dict(window=0), ValueError, "window must be None or an int >= 1"),
    (dict(window=True), ValueError, "window must be None or an int >= 1"),
    (dict(window=2.0), ValueError, "window must be None or an int >= 1"),
    (dict(q=[1.0]), TypeError, "q must be a torch.Tensor"),
])
def test_attention_refuses_bad_arguments(change, error, message):
    args = dict(zip("qkv", random_attention(2, 3, 5, 16)), scale=None, window=None, layout="bhnd")
    for name, value in change.items():
        args[name] = getattr(args[name], value)() if isinstance(value, str) and name in "qkv" else value
    with pytest.raises(error, match=message):
        causal_attention(**args)


@pytest.mark.parametrize("head_dim,group", [(80, 1), (256, 4)])
def test_kernels_compile_for_a_gpu_without_spills(head_dim, group):
    """The kernels as a GPU build compiles them (sm_90, bf16, a head dimension padded in registers or
    the widest, one or four query heads per key / value head, with and without a window and dropout;
    Triton's bundled ptxas, no GPU needed): all build and fit."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "triton_resources.py"), "--attention",
                           "--arch", "90", "--dtype", "bf16", "--head-dim", str(head_dim), "--group", str(group),
                           "--variants"], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "regs" in line]
    assert len(lines) == 13 and all(" spill stack     0 B" in line for line in lines), done.stdout


def naive_attention(q, k, v, scale=None, window=None):
    """Grouped heads, queries as the last N_q of N_k positions, written out with a loop over heads:
    the definition the reference (SDPA with enable_gqa and a mask) is checked against."""
    heads, kv_heads, n_q, n_k = q.shape[1], k.shape[1], q.shape[2], k.shape[2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    position = torch.arange(n_q)[:, None] + n_k - n_q
    lag = position - torch.arange(n_k)[None, :]
    mask = (lag >= 0) & (lag < (window or n_k))
    out = []
    for h in range(heads):
        kv = h // (heads // kv_heads)
        s = (q[:, h] @ k[:, kv].transpose(-1, -2)) * scale
        out.append(torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v[:, kv])
    return torch.stack(out, dim=1)


# (batch, heads, kv heads, N_q, N_k, head dim, window): grouped-query and multi-query attention,
# queries continuing a cache (prefill), head dims 8 (padded to 16) and 256, windows across the offset.
GROUPED_SHAPES = [
    (2, 4, 2, 33, 33, 16, None),
    (1, 6, 1, 20, 57, 32, None),  # multi-query; 20 queries after 37 cached keys
    (2, 2, 2, 40, 72, 16, 24),  # prefill with a window shorter than the cache
    (1, 4, 2, 1, 45, 48, None),  # one query: a decode step through the same op
    (1, 2, 1, 17, 30, 8, 5),
    (1, 2, 2, 19, 35, 256, None),
]


@pytest.mark.parametrize("shape", GROUPED_SHAPES)
def test_reference_matches_the_written_out_definition(shape):
    batch, heads, kv_heads, n_q, n_k, head_dim, window = shape
    q, k, v, _ = (t.double() for t in random_attention(batch, heads, n_q, head_dim, kv_heads=kv_heads, kv_length=n_k))
    expected = naive_attention(q, k, v, window=window)
    assert rel_error(causal_attention_reference(q, k, v, window=window), expected) < 1e-12
    with ops.backend("torch"):
        out, lse = causal_attention(q, k, v, window=window, return_lse=True)
    assert rel_error(out, expected) < 1e-12 and lse.shape == (batch, heads, n_q)


@pytest.mark.parametrize("device,dtype", kernel_targets())
@pytest.mark.parametrize("shape", GROUPED_SHAPES)
def test_grouped_and_prefill_attention_forward_and_gradients_match_reference(device, dtype, shape, fp32_exact):
    batch, heads, kv_heads, n_q, n_k, head_dim, window = shape
    q, k, v, do = random_attention(batch, heads, n_q, head_dim, kv_heads=kv_heads, kv_length=n_k)
    errors = attention_errors(q, k, v, do, dtype, device, window=window)
    assert worst(errors)[1] < TOLERANCE[dtype], errors


def test_prefill_never_loads_keys_past_a_query_block(monkeypatch):
    """Queries 0..15 of 40 sit at positions 32..47 of 72 keys: with 16 x 16 blocks their program
    never loads the key block from 48, so NaN there stays out of their outputs; queries 16.. see it."""
    small_blocks(monkeypatch)
    q, k, v, do = (t.to(DEVICE) for t in random_attention(1, 2, 40, 16, kv_heads=1, kv_length=72))
    clean = outputs_and_grads(q, k, v, do)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 48:], v2[:, :, 48:] = float("nan"), float("nan")
    out, dq, _, _ = outputs_and_grads(q, k2, v2, do)
    assert torch.equal(out[:, :, :16], clean[0][:, :, :16]) and torch.equal(dq[:, :, :16], clean[1][:, :, :16])
    assert out[:, :, 16:].isnan().all()


def test_layouts_and_the_flash_attn_signature():
    """layout "bnhd" is (B, N, H, D) in and out; flash_attn_func takes flash-attn's arguments, its
    left window counting the keys before the query, and returns its (out, lse, None)."""
    q, k, v, _ = random_attention(2, 4, 9, 16, kv_heads=2, kv_length=13)
    expected, lse = causal_attention(q, k, v, window=4, return_lse=True)
    q_t, k_t, v_t = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # (B, N, H, D), as flash-attn takes them
    got = causal_attention(q_t, k_t, v_t, window=4, layout="bnhd")
    assert got.shape == (2, 9, 4, 16) and torch.equal(got.transpose(1, 2), expected)
    out, lse_fa, probs = ops.flash_attn_func(q_t, k_t, v_t, window_size=(3, 0), return_attn_probs=True)
    assert torch.equal(out.transpose(1, 2), expected) and torch.equal(lse_fa, lse) and probs is None
    full = ops.flash_attn_func(q_t, k_t, v_t, 0.0, 0.5)
    assert torch.equal(full.transpose(1, 2), causal_attention(q, k, v, scale=0.5))
    for kwargs, error, message in ((dict(causal=False), ValueError, "causal must be True"),
                                   (dict(window_size=(4, 2)), ValueError, "right must be 0 or -1"),
                                   (dict(window_size=3), ValueError, "pair of ints"),
                                   (dict(dropout_p=1.5), ValueError, "dropout_p must be")):
        with pytest.raises(error, match=message):
            ops.flash_attn_func(q_t, k_t, v_t, **kwargs)
    with pytest.raises(ValueError, match="is the layout right"):  # (B, N, H, D) passed as (B, H, N, D)
        causal_attention(q_t, k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous())


def test_grouped_attention_gradcheck_opcheck_and_compile():
    q, k, v, _ = (t.double().requires_grad_() for t in random_attention(1, 4, 5, 8, kv_heads=2, kv_length=9))
    assert torch.autograd.gradcheck(lambda *a: causal_attention(*a, window=3), (q, k, v), fast_mode=True)
    q, k, v, do = (t.to(DEVICE) for t in random_attention(1, 4, 20, 16, kv_heads=1, kv_length=27))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    for backend in ("torch", "triton"):
        with ops.backend(backend):
            torch.library.opcheck(torch.ops.fastwave.causal_attention, (q, k, v, 0.25, 6, 0.0, None))
            out, lse = torch.ops.fastwave.causal_attention(q, k, v, 0.25, None, 0.0, None)
            torch.library.opcheck(torch.ops.fastwave.causal_attention_backward,
                                  (do, q.detach(), k.detach(), v.detach(), out.detach(), lse, 0.25, None, 0.0, None,
                                   [True, True, True]))
    with ops.backend("triton"):
        def layer(q, k, v):
            return causal_attention(q, k, v, window=10, layout="bnhd").square().sum()

        args = [t.transpose(1, 2) for t in (q, k, v)]
        expected = torch.autograd.grad(layer(*args), (q, k, v))
        got = torch.autograd.grad(torch.compile(layer, fullgraph=True, backend="aot_eager")(*args), (q, k, v))
    assert all(rel_error(g, e) < 1e-5 for g, e in zip(got, expected))


def test_the_attention_page_example_runs_and_matches_sdpa():
    """docs/attention_in_your_model.md's block trains a step, and its layer equals the same layer
    written with scaled_dot_product_attention (k and v repeated per head, a band mask)."""
    import re

    page = (ROOT / "docs" / "attention_in_your_model.md").read_text()
    (example,) = re.findall(r"^```python\n(.*?)^```", page, flags=re.M | re.S)
    namespace = {}
    exec(example, namespace)
    block, x = namespace["block"], namespace["x"]
    assert x.grad is not None and x.grad.abs().sum() > 0
    block.eval()  # no dropout: the layer is then a function to compare
    with torch.no_grad():
        q = block.q(x).view(2, 100, 8, 16).transpose(1, 2)
        k, v = (t.transpose(1, 2).repeat_interleave(4, dim=1)
                for t in block.kv(x).view(2, 100, 2, 2, 16).unbind(2))
        lag = torch.arange(100)[:, None] - torch.arange(100)[None, :]
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=(lag >= 0) & (lag < 64))
        expected = block.proj(y.transpose(1, 2).reshape(2, 100, 128))
        assert rel_error(block(x), expected) < 1e-5


# (batch, heads, kv heads, N_q, N_k, head dim, window, dropout_p)
DROPOUT_SHAPES = [
    (2, 2, 2, 33, 33, 16, None, 0.1),
    (1, 4, 2, 20, 45, 32, 12, 0.5),
    (1, 2, 1, 1, 30, 16, None, 0.3),
]


@pytest.mark.parametrize("device,dtype", kernel_targets())
@pytest.mark.parametrize("shape", DROPOUT_SHAPES)
def test_dropout_forward_and_gradients_match_the_reference_with_the_same_seed(device, dtype, shape, fp32_exact):
    """The kernels and the reference draw the same mask from a seed (Philox at (query, key), (b, h)),
    so the forward and every gradient agree; the backward recomputes the forward's mask."""
    batch, heads, kv_heads, n_q, n_k, head_dim, window, p = shape
    q, k, v, do = random_attention(batch, heads, n_q, head_dim, kv_heads=kv_heads, kv_length=n_k)
    errors = attention_errors(q, k, v, do, dtype, device, window=window, dropout_p=p, dropout_seed=2 ** 40 + 7)
    assert worst(errors)[1] < TOLERANCE[dtype], errors


def test_dropout_is_deterministic_for_a_seed_and_drops_the_share_asked():
    q, k, v, _ = (t.to(DEVICE) for t in random_attention(1, 2, 64, 16))
    v = torch.ones_like(v)  # out = the kept probability mass: 1 without dropout
    with ops.backend("triton"):
        a = causal_attention(q, k, v, dropout_p=0.25, dropout_seed=5)
        b = causal_attention(q, k, v, dropout_p=0.25, dropout_seed=5)
        c = causal_attention(q, k, v, dropout_p=0.25, dropout_seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with ops.backend("torch"):
        assert rel_error(causal_attention(q, k, v, dropout_p=0.25, dropout_seed=5), a) < 1e-5
    keep = attention_module.dropout_keep_scale(5, 0.25, 1, 2, 64, torch.arange(64), torch.arange(64))
    assert abs(float((keep > 0).float().mean()) - 0.75) < 0.02  # the share kept
    torch.manual_seed(0)
    d1 = causal_attention(q, k, v, dropout_p=0.25)
    torch.manual_seed(0)
    assert torch.equal(causal_attention(q, k, v, dropout_p=0.25), d1)  # torch's generator seeds it by default
    assert abs(float(a.mean()) - 1.0) < 0.05  # 1 / (1 - p) keeps the expectation
    for bad, message in ((dict(dropout_p=1.0), "dropout_p must be"), (dict(dropout_p=0.1, dropout_seed=-1), "dropout_seed"),
                         (dict(dropout_p=0.1, dropout_seed=torch.tensor([1.0])), "dropout_seed")):
        with pytest.raises(ValueError, match=message):
            causal_attention(q, k, v, **bad)


def test_dropout_gradcheck_opcheck_and_compile():
    q, k, v, _ = (t.double().requires_grad_() for t in random_attention(1, 4, 6, 8, kv_heads=2, kv_length=9))
    assert torch.autograd.gradcheck(lambda *a: causal_attention(*a, dropout_p=0.3, dropout_seed=11), (q, k, v),
                                    fast_mode=True)
    q, k, v, do = (t.to(DEVICE) for t in random_attention(1, 2, 20, 16, kv_heads=1, kv_length=24))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    seed = torch.tensor([123], dtype=torch.int64, device=DEVICE)
    for backend in ("torch", "triton"):
        with ops.backend(backend):
            torch.library.opcheck(torch.ops.fastwave.causal_attention, (q, k, v, 0.25, 6, 0.2, seed))
            out, lse = torch.ops.fastwave.causal_attention(q, k, v, 0.25, None, 0.2, seed)
            torch.library.opcheck(torch.ops.fastwave.causal_attention_backward,
                                  (do, q.detach(), k.detach(), v.detach(), out.detach(), lse, 0.25, None, 0.2, seed,
                                   [True, True, True]))
    with ops.backend("triton"):
        def layer(q, k, v, seed):
            return causal_attention(q, k, v, dropout_p=0.2, dropout_seed=seed).square().sum()

        expected = torch.autograd.grad(layer(q, k, v, seed), (q, k, v))
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        got = torch.autograd.grad(compiled(q, k, v, seed), (q, k, v))
    assert all(rel_error(g, e) < 1e-5 for g, e in zip(got, expected))
