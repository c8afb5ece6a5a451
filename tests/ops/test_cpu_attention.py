"""causal_attention off the kernels: fp16 / bf16 / fp32 without dropout run torch's CPU flash
attention (forward and backward), the rest the written-out reference. Both against the float64
reference, forward, log-sum-exp and every gradient; and which of the two runs (the reference's
backward was 7x slower per training step, so taking it by mistake would be a silent regression)."""
import importlib

import pytest
import torch

from fastwave.ops.causal_attention import causal_attention, causal_attention_reference
from fastwave.ops.verify import TOLERANCE, random_attention, rel_error

attention_module = importlib.import_module("fastwave.ops.causal_attention")

# (batch, heads, kv heads, N_q, N_k, head dim, window): plain causal, a band, grouped and multi-query
# heads, queries continuing a cache with and without a band, one query.
SHAPES = [
    (2, 4, 4, 33, 33, 16, None),
    (2, 2, 2, 64, 64, 32, 9),
    (2, 4, 2, 40, 40, 16, None),
    (1, 6, 1, 20, 57, 32, None),
    (2, 2, 2, 40, 72, 16, 24),
    (1, 4, 2, 1, 45, 48, None),
    (1, 2, 2, 1, 45, 16, 6),  # a decode step with a band
]


def outputs_lse_and_grads(q, k, v, do, window, dtype):
    inputs = [t.to(dtype).detach().requires_grad_() for t in (q, k, v)]
    out, lse = causal_attention(*inputs, window=window, return_lse=True)
    return (out, lse, *torch.autograd.grad(out, inputs, do.to(dtype)))


def reference_lse(q, k, window):
    n_q, n_k = q.shape[2], k.shape[2]
    scores = (q @ k.repeat_interleave(q.shape[1] // k.shape[1], dim=1).transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.logsumexp(scores.masked_fill(~attention_module.visible_keys(n_q, n_k, window), float("-inf")), -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_flash_matches_the_float64_reference(shape, dtype):
    batch, heads, kv_heads, n_q, n_k, head_dim, window = shape
    q, k, v, do = random_attention(batch, heads, n_q, head_dim, kv_heads=kv_heads, kv_length=n_k)
    assert attention_module._use_cpu_flash(q.to(dtype), 0.0)  # the path under test
    got = outputs_lse_and_grads(q, k, v, do, window, dtype)
    ref = [t.double().requires_grad_() for t in (q, k, v)]
    out = causal_attention_reference(*ref, window=window)
    expected = (out, reference_lse(*ref[:2], window), *torch.autograd.grad(out, ref, do.double()))
    for name, g, e in zip(("out", "lse", "dq", "dk", "dv"), got, expected):
        assert g.shape == e.shape and g.is_contiguous(), name
        assert g.dtype == (torch.float32 if name == "lse" else dtype), name
        assert rel_error(g, e) < TOLERANCE[dtype], (name, rel_error(g, e))


def test_strided_inputs_and_the_bnhd_layout():
    q, k, v, do = random_attention(2, 3, 30, 16)
    expected = outputs_lse_and_grads(q, k, v, do, None, torch.float32)
    # D not in unit steps (aten's kernel reads it as if it were, unchecked): made contiguous first
    columns = [t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in (q, k, v)]
    assert columns[1].stride(-1) != 1
    for window in (None, 7):
        got = outputs_lse_and_grads(*columns, do, window, torch.float32)
        want = expected if window is None else outputs_lse_and_grads(q, k, v, do, window, torch.float32)
        assert all(rel_error(g, e) < 1e-6 for g, e in zip(got, want))
    views = [t.transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v)]  # (B, N, H, D)
    out = causal_attention(*views, layout="bnhd")
    grads = torch.autograd.grad(out, views, do.transpose(1, 2))
    assert rel_error(out.transpose(1, 2), expected[0]) < 1e-6
    assert all(rel_error(g.transpose(1, 2), e) < 1e-6 for g, e in zip(grads, expected[2:]))


def test_the_written_out_reference_runs_only_where_flash_cannot(monkeypatch):
    calls = []

    def spy(name):
        original = getattr(attention_module, name)

        def wrapped(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        monkeypatch.setattr(attention_module, name, wrapped)

    for name in ("_reference_lse", "causal_attention_reference_backward"):
        spy(name)
    q, k, v, do = random_attention(1, 2, 24, 16)
    outputs_lse_and_grads(q, k, v, do, None, torch.float32)
    outputs_lse_and_grads(q, k, v, do, 5, torch.float32)
    assert calls == []  # fp32, no dropout: flash both ways, with and without a band
    outputs_lse_and_grads(q, k, v, do, None, torch.float64)  # fp64: the reference (gradcheck)
    assert calls == ["_reference_lse", "causal_attention_reference_backward"]
    calls.clear()
    inputs = [t.detach().requires_grad_() for t in (q, k, v)]
    causal_attention(*inputs, dropout_p=0.2, dropout_seed=1).sum().backward()  # dropout: the reference's draw
    assert calls == ["_reference_lse", "causal_attention_reference_backward"]


@pytest.mark.parametrize("shape", [(2, 2, 2, 50, 50, 16, 7), (1, 4, 2, 30, 61, 16, None), (1, 2, 1, 26, 40, 32, 11)])
def test_band_and_cache_masks_go_in_blocks_of_rows(monkeypatch, shape):
    """A long crop's band mask (or a cache's) is passed in blocks of query rows; each block sees
    every key its queries may, and the blocks' key gradients add up to the whole's."""
    batch, heads, kv_heads, n_q, n_k, head_dim, window = shape
    q, k, v, do = random_attention(batch, heads, n_q, head_dim, kv_heads=kv_heads, kv_length=n_k)
    whole = outputs_lse_and_grads(q, k, v, do, window, torch.float32)
    monkeypatch.setattr(attention_module, "FLASH_MASK_ELEMENTS", 150)
    blocks = list(attention_module._cpu_flash_blocks(q, n_k, window))
    assert all(i1 - i0 <= 512 for i0, i1, *_ in blocks)  # every row sees a key in aten's first split
    assert len(blocks) >= 3 and all(mask.numel() <= 150 or i1 - i0 == 1 for i0, i1, _, _, _, mask in blocks)
    starts, ends = [b[0] for b in blocks], [b[1] for b in blocks]
    assert starts == [0, *ends[:-1]] and ends[-1] == n_q  # the blocks tile the rows
    for name, g, e in zip(("out", "lse", "dq", "dk", "dv"), outputs_lse_and_grads(q, k, v, do, window, torch.float32),
                          whole):
        assert rel_error(g, e) < 1e-6, name


def test_a_long_band_goes_in_blocks_of_at_most_512_rows():
    """Rows past aten's first 512-key split that see no key in it came out NaN on torch 2.4.0
    (pytorch#127055): blocks stop at 512 rows, and the result is the reference's."""
    q, k, v, do = random_attention(1, 1, 1100, 8)
    blocks = list(attention_module._cpu_flash_blocks(q, 1100, 600))
    assert len(blocks) == 3 and max(i1 - i0 for i0, i1, *_ in blocks) == 512
    out = causal_attention(q, k, v, window=600)
    assert torch.isfinite(out).all()
    assert rel_error(out, causal_attention_reference(q.double(), k.double(), v.double(), window=600)) < 1e-5
