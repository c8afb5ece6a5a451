"""Decode attention: one query per (batch row, head) against its KV cache, split along the cache
(flash-decoding).

- ``_decode_attention_split_kernel``, grid (B * H, splits): program (bh, s) reads one contiguous
  slice of row bh's first ``length`` cache slots, BLOCK_N slots at a time, and keeps an online
  softmax in fp32: running max m (base-2 logits), running sum l and the weighted value sum acc.
  The slices are cut from the row's own (clamped) length, so every split gets an even share of
  the slots that are actually used, whatever the length; a split past the end does nothing. With
  one split it writes acc / l straight to the output; otherwise it writes (acc, m, l).
- ``_decode_attention_combine_kernel``, grid (B * H,): the log-sum-exp combine of the splits.

The scores are a matrix-vector product per head: they are elementwise products summed in fp32 on
the CUDA cores (``tl.dot`` needs 16 query rows; one query would waste the tensor cores, and decode
is bound by reading the cache anyway), so fp32 is exact fp32 here whatever the TF32 setting.

Lengths are read on the device and clamped to [0, L_max]; the grid depends only on shapes (see
``num_splits``), so the launch can be captured in a CUDA graph.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .shifted_matmul import _parallel_programs, tuned

LOG2E = math.log2(math.e)


@triton.jit
def _row_length(lens_ptr, b, stride_lens, L):
    """This batch row's cache length, clamped to [0, L] (int32): never a read outside the cache."""
    length = tl.load(lens_ptr + b * stride_lens)
    return tl.minimum(tl.maximum(length, 0), L).to(tl.int32)


@triton.jit
def _decode_attention_split_kernel(
        q_ptr, k_ptr, v_ptr, lens_ptr, out_ptr, acc_ptr, m_ptr, l_ptr,
        H, L, D, qk_scale, splits,
        stride_qb, stride_qh, stride_qd, stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl,
        stride_lens, stride_ob, stride_oh,
        SINGLE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = bh // H
    h = bh % H
    d = tl.arange(0, BLOCK_D)
    d_in = d < D
    length = _row_length(lens_ptr, b, stride_lens, L)
    chunk = tl.cdiv(tl.cdiv(length, splits), BLOCK_N) * BLOCK_N  # whole tiles per split
    start = split * chunk
    end = tl.minimum(start + chunk, length)

    # qk_scale = scale * log2(e): the softmax runs in base 2 (exp2 is the hardware's exp).
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + d * stride_qd, mask=d_in, other=0.0).to(tl.float32) * qk_scale
    k_ptr += b * stride_kb + h * stride_kh
    v_ptr += b * stride_vb + h * stride_vh
    m = tl.full((), float("-inf"), tl.float32)
    l_sum = tl.zeros((), dtype=tl.float32)
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):  # every tile visited holds at least one slot < end
        n = n0 + tl.arange(0, BLOCK_N)
        n_in = n < end
        rows = n.to(tl.int64)[:, None]
        tile_mask = n_in[:, None] & d_in[None, :]
        k = tl.load(k_ptr + rows * stride_kl + d[None, :], mask=tile_mask, other=0.0).to(tl.float32)
        s = tl.where(n_in, tl.sum(k * q[None, :], axis=1), float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=0))  # finite: the tile has a slot in range
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new)
        v = tl.load(v_ptr + rows * stride_vl + d[None, :], mask=tile_mask, other=0.0).to(tl.float32)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        l_sum = l_sum * alpha + tl.sum(p, axis=0)
        m = m_new

    if SINGLE:  # an empty row has acc = 0 and l = 0: it writes zeros
        out = acc / tl.where(l_sum > 0, l_sum, 1.0)
        tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=d_in)
    else:
        part = bh * splits + split
        tl.store(acc_ptr + part * BLOCK_D + d, acc)
        tl.store(m_ptr + part, m)
        tl.store(l_ptr + part, l_sum)


@triton.jit
def _decode_attention_combine_kernel(acc_ptr, m_ptr, l_ptr, out_ptr, H, D, splits, stride_ob, stride_oh,
                                     BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    h = bh % H
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    s_in = s < splits
    part = bh * splits + s
    m = tl.load(m_ptr + part, mask=s_in, other=float("-inf"))  # -inf: an empty split
    l_sum = tl.load(l_ptr + part, mask=s_in, other=0.0)
    acc = tl.load(acc_ptr + part[:, None] * BLOCK_D + d[None, :], mask=s_in[:, None], other=0.0)
    m_max = tl.max(m, axis=0)
    m_max = tl.where(m_max == float("-inf"), 0.0, m_max)  # an empty row: every weight below is 0
    w = tl.exp2(m - m_max)
    total = tl.sum(w * l_sum, axis=0)
    out = tl.sum(w[:, None] * acc, axis=0) / tl.where(total > 0, total, 1.0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=d < D)


# A split is worth its partial results and the combine only when it reads at least this many slots
# of a full cache; and the combine holds every split's partials in registers.
MIN_SLOTS_PER_SPLIT = 256
MAX_SPLITS = 64


def decode_config(head_dim: int) -> dict:
    """Tiles and warps: BLOCK_N x BLOCK_D fp32 tiles of K and V of about 4096 elements each."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    return tuned("decode_attention",
                 {"BLOCK_N": max(16, min(128, 4096 // block_d)), "BLOCK_D": block_d, "num_warps": 4})


def num_splits(batch_heads: int, max_len: int, device: torch.device) -> int:
    """How many slices each row's cache is read in: enough that batch_heads * splits programs fill
    the device (``_parallel_programs``: a few per SM), no more than one per MIN_SLOTS_PER_SPLIT slots
    of a full cache (short caches: 1), at most MAX_SPLITS. A function of shapes and the device only
    (never of the lengths), so a captured CUDA graph stays valid as the cache fills."""
    if batch_heads <= 0 or max_len <= 0:
        return 1
    wanted = triton.cdiv(_parallel_programs(device), batch_heads)
    return max(1, min(wanted, max_len // MIN_SLOTS_PER_SPLIT, MAX_SPLITS))


def decode_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor, scale: float,
                             splits: int = 0) -> torch.Tensor:
    """q (B, H, D); k, v (B, H, L, D) with unit stride on D; lens (B,) integer -> out (B, H, D)
    contiguous in q's dtype. splits: 0 chooses with ``num_splits``."""
    batch, heads, head_dim = q.shape
    max_len = k.shape[2]
    config = decode_config(head_dim)
    block_d = config["BLOCK_D"]
    if splits <= 0:
        splits = num_splits(batch * heads, max_len, q.device)
    out = torch.empty(batch, heads, head_dim, device=q.device, dtype=q.dtype)
    if splits == 1:
        acc = m = l_sum = out  # not written
    else:
        acc = torch.empty(batch * heads, splits, block_d, device=q.device, dtype=torch.float32)
        m = torch.empty(batch * heads, splits, device=q.device, dtype=torch.float32)
        l_sum = torch.empty_like(m)
    _decode_attention_split_kernel[(batch * heads, splits)](
        q, k, v, lens, out, acc, m, l_sum,
        heads, max_len, head_dim, scale * LOG2E, splits,
        *q.stride(), *k.stride()[:3], *v.stride()[:3], lens.stride(0), out.stride(0), out.stride(1),
        SINGLE=splits == 1, **config)
    if splits > 1:
        _decode_attention_combine_kernel[(batch * heads,)](
            acc, m, l_sum, out, heads, head_dim, splits, out.stride(0), out.stride(1),
            BLOCK_S=triton.next_power_of_2(splits), BLOCK_D=block_d, num_warps=4)
    return out
