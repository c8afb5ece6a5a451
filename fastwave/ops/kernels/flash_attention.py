"""Causal (optionally sliding-window) attention without the N x N score matrix: FlashAttention-2.

Per (batch, head), with s = scale * q_i . k_j over the keys query i sees: the queries are the last
N_q of N_k positions (query i sits at p = i + N_k - N_q, the offset) and see keys j <= p (and
p - j < window for a window). Query head h reads key / value head h // GROUP (grouped-query
attention, GROUP = H / H_kv) in place:

- forward, one program per query block: an online softmax over the key blocks, rescaling the fp32
  accumulator whenever the row maximum grows; it writes O and the log-sum-exp of each row (natural
  log, fp32), never P.
- backward: ``delta_i = sum_d dO_id O_id`` (a small kernel), then P is recomputed from the saved
  log-sum-exp as ``exp(s - lse)``. One kernel per key block (of a key / value head) loops over the
  heads of its group and the query blocks that see it (dK, dV), another per query block over its key
  blocks (dQ): each output is written by exactly one program, so there are no atomics and the result
  is deterministic.

Attention dropout (DROPOUT) drops the probability of query i for key j where
``dropout_keep`` says, from Philox4x32-10 keyed by the seed at counter (i * N_k + j, b * H + h, 0,
0): the forward, dK / dV and dQ kernels draw the same bits for the same pair, so the backward sees
the forward's mask without storing it (``causal_attention.dropout_keep_scale`` is the torch twin).
The log-sum-exp is of the probabilities before dropout.

Softmax exponentials are ``exp2`` with log2(e) folded into the scale. Key (or query) blocks that a
program's queries (keys) never meet -- above the diagonal, or below the window -- are never loaded;
the loops split each program's range into blocks that need a mask (on the diagonal, at the window's
lower edge, past N) and blocks that need none. Head dimensions that are not a power of two are
padded to one in registers (masked loads, zeros; D from 8 to 256). Tensors are (B, H, N, D) with any
batch / head / row strides and unit stride along D; batch and head offsets, and each block's start, are int64, the
offsets within a block int32.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .._backend import interpreting

LOG2E = math.log2(math.e)
_LOG2E = tl.constexpr(LOG2E)  # the kernels read module constants only as constexprs
_LN2 = tl.constexpr(math.log(2.0))


@triton.jit
def head_and_block(H, n_blocks, BLOCK: tl.constexpr, HEAVIEST_FIRST: tl.constexpr):
    """This program's (batch, head) pair and block start. Block-major order on grid axis 0 (no 65,535
    limit): the programs of every head for one block run together, and with HEAVIEST_FIRST the blocks
    with the most work (the last query blocks of a causal mask) are launched first, so that the short
    ones fill the tail of the launch instead of the long ones."""
    pid = tl.program_id(0)
    n_heads = tl.num_programs(0) // n_blocks
    block = pid // n_heads
    if HEAVIEST_FIRST:
        block = n_blocks - 1 - block
    bh = (pid % n_heads).to(tl.int64)
    return bh // H, bh % H, bh, block * BLOCK


@triton.jit
def load_tile(ptr, start, rows, cols, stride, n_rows,
              CHECK_ROWS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rows ``start + rows`` of an (n_rows, HEAD_DIM) matrix at ``ptr`` (row stride ``stride``, unit
    column stride), columns ``cols``; ``rows`` and ``cols`` are aranges that broadcast to the tile
    ([:, None] / [None, :] in either order: a transposed load is the same call). Zero past HEAD_DIM
    and, with CHECK_ROWS, past n_rows. The block's start offset is int64, the rest int32."""
    ptr += tl.cast(start, tl.int64) * stride
    offsets = rows * stride + cols
    if CHECK_ROWS:
        if HEAD_DIM == BLOCK_D:
            tile = tl.load(ptr + offsets, mask=start + rows < n_rows, other=0.0)
        else:
            tile = tl.load(ptr + offsets, mask=(start + rows < n_rows) & (cols < HEAD_DIM), other=0.0)
    else:
        if HEAD_DIM == BLOCK_D:
            tile = tl.load(ptr + offsets)
        else:
            tile = tl.load(ptr + offsets, mask=cols < HEAD_DIM, other=0.0)
    return tile


@triton.jit
def store_tile(ptr, start, rows, cols, stride, n_rows, value, HEAD_DIM: tl.constexpr):
    ptr += tl.cast(start, tl.int64) * stride
    tl.store(ptr + rows * stride + cols, value.to(ptr.dtype.element_ty),
             mask=(start + rows < n_rows) & (cols < HEAD_DIM))


@triton.jit
def visible(m, n, N_Q, offset, window, WINDOWED: tl.constexpr):
    """Whether query m (at position m + offset) sees key n (index tensors that broadcast to a tile):
    n <= m + offset, m < N_Q, and within the window. Queries past N_Q see nothing (padding rows)."""
    mask = (n <= m + offset) & (m < N_Q)
    if WINDOWED:
        mask = mask & (m + offset - n < window)
    return mask


@triton.jit
def dropout_keep(seed, bh, m, n, N_K, dropout_p):
    """Whether the probability of query m for key n (index tensors that broadcast to a tile) of
    (batch, head) row ``bh`` survives dropout: u >= dropout_p, u the top 24 bits of the first Philox
    word at counter ((m * N_K + n) mod 2**32, bh, 0, 0) under the 64-bit ``seed``."""
    counter = (m * N_K + n).to(tl.uint32)
    zero = tl.zeros_like(counter)
    word, _, _, _ = tl.philox(seed, counter, zero + bh.to(tl.uint32), zero, zero)
    return (word >> 8).to(tl.float32) * (1.0 / 16777216.0) >= dropout_p


@triton.jit
def key_blocks(start_m, N_Q, offset, window, WINDOWED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """For the queries [start_m, start_m + BLOCK_M) (at positions from start_m + offset): the starts
    of the key blocks they see, as three ranges [lo, full_lo) (masked: the window's lower edge),
    [full_lo, diag_lo) (no mask: every query sees every key, all keys < N_K) and [diag_lo, hi)
    (masked: the diagonal, N_K)."""
    first = start_m + offset  # the first query's position
    hi = tl.minimum(start_m + BLOCK_M, N_Q) + offset
    diag_lo = (first + 1) // BLOCK_N * BLOCK_N  # the first block with a key past the first query
    if WINDOWED:
        lo = tl.maximum(first - window + 1, 0) // BLOCK_N * BLOCK_N  # holds the first query's oldest key
        # the first block inside the last query's window
        full_lo = tl.minimum(tl.cdiv(tl.maximum(first + BLOCK_M - window, 0), BLOCK_N) * BLOCK_N, diag_lo)
    else:
        lo = 0
        full_lo = 0
    return lo, full_lo, diag_lo, hi


@triton.jit
def query_blocks(start_n, N_Q, offset, window, WINDOWED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """For the keys [start_n, start_n + BLOCK_N): the starts of the query blocks that see them (query
    m at position m + offset), as [lo, full_lo) (masked: the diagonal), [full_lo, full_hi) (no mask:
    all queries < N_Q see every key) and [full_hi, hi) (masked: the window's upper edge, N_Q)."""
    lo = tl.maximum(start_n - offset, 0) // BLOCK_M * BLOCK_M
    if WINDOWED:
        # past the last key's newest query
        hi = tl.minimum(N_Q, tl.maximum(start_n + BLOCK_N - 1 + window - offset, 0))
        full_hi = tl.minimum(N_Q // BLOCK_M * BLOCK_M, tl.maximum(start_n + window - offset, 0) // BLOCK_M * BLOCK_M)
    else:
        hi = N_Q
        full_hi = N_Q // BLOCK_M * BLOCK_M
    # the first query block whose queries are all at or past the last key
    full_lo = tl.minimum(tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - offset, 0), BLOCK_M) * BLOCK_M, hi)
    full_hi = tl.maximum(full_hi, full_lo)
    return lo, full_lo, full_hi, hi


@triton.jit
def _forward_blocks(acc, l_i, m_i, q, k_ptr, v_ptr, start_m, lo, hi, N_Q, N_K, offset, window, qk_scale,
                    stride_kn, stride_vn, seed, bh, dropout_p, keep_scale,
                    MASKED: tl.constexpr, DROPOUT: tl.constexpr, WINDOWED: tl.constexpr, PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The online softmax over key blocks [lo, hi); scores in log2 units (qk_scale = scale * log2 e)."""
    m = start_m + tl.arange(0, BLOCK_M)
    rows = tl.arange(0, BLOCK_N)
    d = tl.arange(0, BLOCK_D)
    for start_n in range(lo, hi, BLOCK_N):
        k_t = load_tile(k_ptr, start_n, rows[None, :], d[:, None], stride_kn, N_K, MASKED, HEAD_DIM, BLOCK_D)
        s = tl.dot(q, k_t, input_precision=PRECISION) * qk_scale
        if MASKED:
            s = tl.where(visible(m[:, None], start_n + rows[None, :], N_Q, offset, window, WINDOWED), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        if MASKED:  # a row that has seen no key yet stays at -inf: subtract 0 instead (exp2(-inf) = 0, no NaN)
            m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_shift = m_new
        p = tl.math.exp2(s - m_shift[:, None])
        alpha = tl.math.exp2(m_i - m_shift)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = load_tile(v_ptr, start_n, rows[:, None], d[None, :], stride_vn, N_K, MASKED, HEAD_DIM, BLOCK_D)
        if DROPOUT:  # after l_i: the normaliser is of the probabilities before dropout
            p = tl.where(dropout_keep(seed, bh, m[:, None], start_n + rows[None, :], N_K, dropout_p), p * keep_scale, 0.0)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attention_forward_kernel(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, seed_ptr, H, N_Q, N_K, window, n_blocks, qk_scale,
                              dropout_p, keep_scale,
                              stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                              stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on,
                              GROUP: tl.constexpr, DROPOUT: tl.constexpr, WINDOWED: tl.constexpr,
                              PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    b, h, bh, start_m = head_and_block(H, n_blocks, BLOCK_M, True)
    offset = N_K - N_Q
    seed = tl.load(seed_ptr) if DROPOUT else 0
    q_ptr += b * stride_qb + h * stride_qh
    k_ptr += b * stride_kb + (h // GROUP) * stride_kh
    v_ptr += b * stride_vb + (h // GROUP) * stride_vh
    rows = tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    q = load_tile(q_ptr, start_m, rows[:, None], d[None, :], stride_qn, N_Q, True, HEAD_DIM, BLOCK_D)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    lo, full_lo, diag_lo, hi = key_blocks(start_m, N_Q, offset, window, WINDOWED, BLOCK_M, BLOCK_N)
    if WINDOWED:
        acc, l_i, m_i = _forward_blocks(acc, l_i, m_i, q, k_ptr, v_ptr, start_m, lo, full_lo, N_Q, N_K, offset, window,
                                        qk_scale, stride_kn, stride_vn, seed, bh, dropout_p, keep_scale, True, DROPOUT,
                                        WINDOWED, PRECISION, HEAD_DIM,
                                        BLOCK_M, BLOCK_N, BLOCK_D)
    acc, l_i, m_i = _forward_blocks(acc, l_i, m_i, q, k_ptr, v_ptr, start_m, full_lo, diag_lo, N_Q, N_K, offset,
                                    window, qk_scale, stride_kn, stride_vn, seed, bh, dropout_p, keep_scale, False,
                                    DROPOUT, WINDOWED, PRECISION, HEAD_DIM,
                                    BLOCK_M, BLOCK_N, BLOCK_D)
    acc, l_i, m_i = _forward_blocks(acc, l_i, m_i, q, k_ptr, v_ptr, start_m, diag_lo, hi, N_Q, N_K, offset, window,
                                    qk_scale, stride_kn, stride_vn, seed, bh, dropout_p, keep_scale, True, DROPOUT,
                                    WINDOWED, PRECISION, HEAD_DIM,
                                    BLOCK_M, BLOCK_N, BLOCK_D)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # only padding rows past N_Q have seen nothing
    store_tile(o_ptr + b * stride_ob + h * stride_oh, start_m, rows[:, None], d[None, :], stride_on, N_Q,
               acc / l_safe[:, None], HEAD_DIM)
    m = start_m + rows
    tl.store(lse_ptr + bh * N_Q + m, (m_i + tl.math.log2(l_safe)) * _LN2, mask=m < N_Q)


@triton.jit
def _attention_backward_delta_kernel(o_ptr, do_ptr, delta_ptr, H, N, n_blocks,
                                     stride_ob, stride_oh, stride_on, stride_db, stride_dh, stride_dn,
                                     HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """delta = rowsum(dO * O), fp32 (B * H, N)."""
    b, h, bh, start_m = head_and_block(H, n_blocks, BLOCK_M, False)
    rows = tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    o = load_tile(o_ptr + b * stride_ob + h * stride_oh, start_m, rows[:, None], d[None, :], stride_on, N,
                  True, HEAD_DIM, BLOCK_D)
    do = load_tile(do_ptr + b * stride_db + h * stride_dh, start_m, rows[:, None], d[None, :], stride_dn, N,
                   True, HEAD_DIM, BLOCK_D)
    m = start_m + rows
    tl.store(delta_ptr + bh * N + m, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1), mask=m < N)


@triton.jit
def _dkdv_blocks(dk, dv, k, v, q_ptr, do_ptr, lse_ptr, delta_ptr, start_n, lo, hi, N_Q, N_K, offset, window, qk_scale,
                 stride_qn, stride_dn, seed, bh, dropout_p, keep_scale,
                 MASKED: tl.constexpr, DROPOUT: tl.constexpr, WINDOWED: tl.constexpr, PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """dV += P^T dO and dK += dS^T Q over query blocks [lo, hi), in the transposed orientation (keys
    along rows) so that neither P nor dS is transposed in registers."""
    n = start_n + tl.arange(0, BLOCK_N)
    rows = tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    for start_m in range(lo, hi, BLOCK_M):
        q_t = load_tile(q_ptr, start_m, rows[None, :], d[:, None], stride_qn, N_Q, MASKED, HEAD_DIM, BLOCK_D)
        m = start_m + rows
        if MASKED:
            lse = tl.load(lse_ptr + m, mask=m < N_Q, other=0.0)
        else:
            lse = tl.load(lse_ptr + m)
        p_t = tl.math.exp2(tl.dot(k, q_t, input_precision=PRECISION) * qk_scale - lse[None, :] * _LOG2E)
        if MASKED:
            p_t = tl.where(visible(m[None, :], n[:, None], N_Q, offset, window, WINDOWED), p_t, 0.0)
        do = load_tile(do_ptr, start_m, rows[:, None], d[None, :], stride_dn, N_Q, MASKED, HEAD_DIM, BLOCK_D)
        if DROPOUT:
            keep_t = dropout_keep(seed, bh, m[None, :], n[:, None], N_K, dropout_p)
            dv = tl.dot(tl.where(keep_t, p_t * keep_scale, 0.0).to(do.dtype), do, dv, input_precision=PRECISION)
        else:
            dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)
        if MASKED:
            delta = tl.load(delta_ptr + m, mask=m < N_Q, other=0.0)
        else:
            delta = tl.load(delta_ptr + m)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        if DROPOUT:
            dp_t = tl.where(keep_t, dp_t * keep_scale, 0.0)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q_t.dtype), tl.trans(q_t), dk, input_precision=PRECISION)
    return dk, dv


@triton.jit
def _attention_backward_dkdv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, seed_ptr,
                                    H_KV, N_Q, N_K, window, n_blocks, scale, qk_scale, dropout_p, keep_scale,
                                    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                                    stride_vb, stride_vh, stride_vn, stride_db, stride_dh, stride_dn,
                                    GROUP: tl.constexpr, DROPOUT: tl.constexpr, WINDOWED: tl.constexpr,
                                    PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """dK, dV (contiguous (B, H_kv, N_k, D)) for one key block of one key / value head, summed over
    the query heads of its group; the first key blocks meet the most queries, so natural order is
    heaviest first."""
    b, kv_head, bh_kv, start_n = head_and_block(H_KV, n_blocks, BLOCK_N, False)
    offset = N_K - N_Q
    seed = tl.load(seed_ptr) if DROPOUT else 0
    rows = tl.arange(0, BLOCK_N)
    d = tl.arange(0, BLOCK_D)
    k = load_tile(k_ptr + b * stride_kb + kv_head * stride_kh, start_n, rows[:, None], d[None, :], stride_kn, N_K,
                  True, HEAD_DIM, BLOCK_D)
    v = load_tile(v_ptr + b * stride_vb + kv_head * stride_vh, start_n, rows[:, None], d[None, :], stride_vn, N_K,
                  True, HEAD_DIM, BLOCK_D)
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    lo, full_lo, full_hi, hi = query_blocks(start_n, N_Q, offset, window, WINDOWED, BLOCK_M, BLOCK_N)
    for member in range(0, GROUP):
        h = kv_head * GROUP + member
        bh = b * (H_KV * GROUP) + h
        q_h = q_ptr + b * stride_qb + h * stride_qh
        do_h = do_ptr + b * stride_db + h * stride_dh
        lse_h = lse_ptr + bh * N_Q
        delta_h = delta_ptr + bh * N_Q
        dk, dv = _dkdv_blocks(dk, dv, k, v, q_h, do_h, lse_h, delta_h, start_n, lo, full_lo, N_Q, N_K, offset,
                              window, qk_scale, stride_qn, stride_dn, seed, bh, dropout_p, keep_scale, True, DROPOUT,
                              WINDOWED, PRECISION, HEAD_DIM,
                              BLOCK_M, BLOCK_N, BLOCK_D)
        dk, dv = _dkdv_blocks(dk, dv, k, v, q_h, do_h, lse_h, delta_h, start_n, full_lo, full_hi, N_Q, N_K,
                              offset, window, qk_scale, stride_qn, stride_dn, seed, bh, dropout_p, keep_scale, False,
                              DROPOUT, WINDOWED, PRECISION, HEAD_DIM,
                              BLOCK_M, BLOCK_N, BLOCK_D)
        dk, dv = _dkdv_blocks(dk, dv, k, v, q_h, do_h, lse_h, delta_h, start_n, full_hi, hi, N_Q, N_K, offset,
                              window, qk_scale, stride_qn, stride_dn, seed, bh, dropout_p, keep_scale, True, DROPOUT,
                              WINDOWED, PRECISION, HEAD_DIM,
                              BLOCK_M, BLOCK_N, BLOCK_D)
    out = bh_kv * N_K * HEAD_DIM  # dk and dv are contiguous
    store_tile(dk_ptr + out, start_n, rows[:, None], d[None, :], HEAD_DIM, N_K, dk * scale, HEAD_DIM)
    store_tile(dv_ptr + out, start_n, rows[:, None], d[None, :], HEAD_DIM, N_K, dv, HEAD_DIM)


@triton.jit
def _dq_blocks(dq, q, do, lse, delta, k_ptr, v_ptr, start_m, lo, hi, N_Q, N_K, offset, window, qk_scale, stride_kn,
               stride_vn, seed, bh, dropout_p, keep_scale,
               MASKED: tl.constexpr, DROPOUT: tl.constexpr, WINDOWED: tl.constexpr, PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """dQ += dS K over key blocks [lo, hi)."""
    m = start_m + tl.arange(0, BLOCK_M)
    rows = tl.arange(0, BLOCK_N)
    d = tl.arange(0, BLOCK_D)
    for start_n in range(lo, hi, BLOCK_N):
        k_t = load_tile(k_ptr, start_n, rows[None, :], d[:, None], stride_kn, N_K, MASKED, HEAD_DIM, BLOCK_D)
        v_t = load_tile(v_ptr, start_n, rows[None, :], d[:, None], stride_vn, N_K, MASKED, HEAD_DIM, BLOCK_D)
        p = tl.math.exp2(tl.dot(q, k_t, input_precision=PRECISION) * qk_scale - lse[:, None])
        if MASKED:
            p = tl.where(visible(m[:, None], start_n + rows[None, :], N_Q, offset, window, WINDOWED), p, 0.0)
        dp = tl.dot(do, v_t, input_precision=PRECISION)
        if DROPOUT:
            dp = tl.where(dropout_keep(seed, bh, m[:, None], start_n + rows[None, :], N_K, dropout_p), dp * keep_scale, 0.0)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k_t.dtype), tl.trans(k_t), dq, input_precision=PRECISION)
    return dq


@triton.jit
def _attention_backward_dq_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, seed_ptr,
                                  H, N_Q, N_K, window, n_blocks, scale, qk_scale, dropout_p, keep_scale,
                                  stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
                                  stride_vb, stride_vh, stride_vn, stride_db, stride_dh, stride_dn,
                                  GROUP: tl.constexpr, DROPOUT: tl.constexpr, WINDOWED: tl.constexpr,
                                  PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """dQ (contiguous (B, H, N_q, D)) for one query block."""
    b, h, bh, start_m = head_and_block(H, n_blocks, BLOCK_M, True)
    offset = N_K - N_Q
    seed = tl.load(seed_ptr) if DROPOUT else 0
    k_ptr += b * stride_kb + (h // GROUP) * stride_kh
    v_ptr += b * stride_vb + (h // GROUP) * stride_vh
    rows = tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    m = start_m + rows
    q = load_tile(q_ptr + b * stride_qb + h * stride_qh, start_m, rows[:, None], d[None, :], stride_qn, N_Q,
                  True, HEAD_DIM, BLOCK_D)
    do = load_tile(do_ptr + b * stride_db + h * stride_dh, start_m, rows[:, None], d[None, :], stride_dn, N_Q,
                   True, HEAD_DIM, BLOCK_D)
    lse = tl.load(lse_ptr + bh * N_Q + m, mask=m < N_Q, other=0.0) * _LOG2E
    delta = tl.load(delta_ptr + bh * N_Q + m, mask=m < N_Q, other=0.0)
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    lo, full_lo, diag_lo, hi = key_blocks(start_m, N_Q, offset, window, WINDOWED, BLOCK_M, BLOCK_N)
    if WINDOWED:
        dq = _dq_blocks(dq, q, do, lse, delta, k_ptr, v_ptr, start_m, lo, full_lo, N_Q, N_K, offset, window, qk_scale,
                        stride_kn, stride_vn, seed, bh, dropout_p, keep_scale, True, DROPOUT, WINDOWED, PRECISION, HEAD_DIM,
                        BLOCK_M, BLOCK_N, BLOCK_D)
    dq = _dq_blocks(dq, q, do, lse, delta, k_ptr, v_ptr, start_m, full_lo, diag_lo, N_Q, N_K, offset, window, qk_scale,
                    stride_kn, stride_vn, seed, bh, dropout_p, keep_scale, False, DROPOUT, WINDOWED, PRECISION, HEAD_DIM,
                    BLOCK_M, BLOCK_N, BLOCK_D)
    dq = _dq_blocks(dq, q, do, lse, delta, k_ptr, v_ptr, start_m, diag_lo, hi, N_Q, N_K, offset, window, qk_scale,
                    stride_kn, stride_vn, seed, bh, dropout_p, keep_scale, True, DROPOUT, WINDOWED, PRECISION, HEAD_DIM,
                    BLOCK_M, BLOCK_N, BLOCK_D)
    store_tile(dq_ptr + bh * N_Q * HEAD_DIM, start_m, rows[:, None], d[None, :], HEAD_DIM, N_Q, dq * scale, HEAD_DIM)


# Per-kernel overrides of the configs below ({"forward": {"BLOCK_M": 64, "num_warps": 4}, ...}; keys
# "forward", "dkdv", "dq", "delta"), for tuning sweeps on a GPU.
TUNING: dict[str, dict] = {}


def tuned(kernel: str, config: dict) -> dict:
    return {**config, **TUNING.get(kernel, {})}


def head_block(head_dim: int) -> int:
    """The head dimension padded to a power of two (tl.dot needs edges >= 16; D is 8..256)."""
    return max(16, triton.next_power_of_2(head_dim))


def attention_config(kernel: str, head_dim: int, itemsize: int, group: int = 1) -> dict:
    """Tiles, warps and pipeline stages per kernel ("forward", "delta", "dkdv", "dq").

    GPU (FlashAttention-2's shapes): a program's own rows (queries in the forward and dQ, keys in
    dK / dV) form the long edge, so that each block streamed past them is used against many rows; the
    streamed edge is short, which keeps the fp32 score tile and the pipeline's shared-memory buffers
    small. 8 warps share the fp32 accumulators. Above D = 64 the accumulators and operand tiles
    double, so one edge of each tile halves (the forward's key block, as FlashAttention-2 does for
    D = 128); fp32 operands take twice the registers and shared memory of bf16 / fp16, so their tiles
    are smaller still and pipelined 2 deep. These are the largest such tiles that compile without
    spills for sm_80 and sm_90 in bf16 / fp16, and for sm_90 in fp32 with TF32
    (benchmarks/triton_resources.py --attention); exact-fp32 dots, which Triton runs on FMA units
    rather than tensor cores, spill at D = 128. They have not been timed against each other yet.

    With grouped heads (``group`` > 1) the dK / dV kernel loops over the group's query heads around
    its loops over query blocks, which costs registers: its key block halves (without, it spills at
    D = 128 on sm_90).

    The interpreter runs one program at a time at numpy speed: small tiles, unequal on the two edges
    so that the tests cross several blocks of each kind with short sequences."""
    if interpreting():
        config = {"forward": dict(BLOCK_M=32, BLOCK_N=16), "dq": dict(BLOCK_M=32, BLOCK_N=16),
                  "dkdv": dict(BLOCK_M=16, BLOCK_N=32), "delta": dict(BLOCK_M=32)}[kernel]
        return tuned(kernel, dict(config, num_warps=1, num_stages=1))
    if kernel == "delta":
        config = dict(BLOCK_M=64, num_warps=4, num_stages=1)
    elif head_dim > 128:  # 256-wide tiles: the edges halve again (fp32's forward once more)
        config = {"forward": dict(BLOCK_M=64 if itemsize <= 2 else 32, BLOCK_N=16), "dq": dict(BLOCK_M=16, BLOCK_N=16),
                  "dkdv": dict(BLOCK_M=16, BLOCK_N=32)}[kernel]
        config.update(num_warps=8, num_stages=1 if itemsize > 2 else 2)
    elif itemsize <= 2:
        narrow = head_dim <= 64
        config = {"forward": dict(BLOCK_M=128, BLOCK_N=64 if narrow else 32),
                  "dq": dict(BLOCK_M=128 if narrow else 64, BLOCK_N=32),
                  "dkdv": dict(BLOCK_M=32, BLOCK_N=128 if narrow else 64)}[kernel]
        config.update(num_warps=8, num_stages=3)
    else:
        config = {"forward": dict(BLOCK_M=64, BLOCK_N=32), "dq": dict(BLOCK_M=64, BLOCK_N=32),
                  "dkdv": dict(BLOCK_M=32, BLOCK_N=32)}[kernel]
        config.update(num_warps=8, num_stages=2)
    if kernel == "dkdv" and group > 1:
        config["BLOCK_N"] = max(16, config["BLOCK_N"] // 2)
    return tuned(kernel, config)


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, head, row) strides; the kernels assume unit stride along D."""
    return t.stride(0), t.stride(1), t.stride(2)


def _shapes(q, k) -> tuple[int, int, int, int, int, int]:
    """(batch, heads, kv heads, N_q, N_k, head dim) of q (B, H, N_q, D) and k (B, H_kv, N_k, D)."""
    batch, heads, n_q, head_dim = q.shape
    return batch, heads, k.shape[1], n_q, k.shape[2], head_dim


def attention_forward(q, k, v, scale: float, window: int | None, precision: str, dropout_p: float = 0.0,
                      seed: torch.Tensor | None = None):
    """q (B, H, N_q, D), k, v (B, H_kv, N_k, D), unit stride along D -> (out (B, H, N_q, D)
    contiguous in q's dtype, lse (B, H, N_q) fp32: the natural log-sum-exp of each row's scaled scores).
    ``seed``: an int64 (1,) tensor on q's device when dropout_p > 0."""
    batch, heads, kv_heads, n_q, n_k, head_dim = _shapes(q, k)
    out = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    lse = torch.empty(batch, heads, n_q, device=q.device, dtype=torch.float32)
    config = attention_config("forward", head_dim, q.element_size())
    n_blocks = triton.cdiv(n_q, config["BLOCK_M"])
    _attention_forward_kernel[(n_blocks * batch * heads,)](
        q, k, v, out, lse, lse if seed is None else seed, heads, n_q, n_k, window or 0, n_blocks, scale * LOG2E,
        dropout_p, 1.0 / (1.0 - dropout_p),
        *_strides(q), *_strides(k), *_strides(v), *_strides(out), GROUP=heads // kv_heads, DROPOUT=dropout_p > 0,
        WINDOWED=window is not None, PRECISION=precision, HEAD_DIM=head_dim, BLOCK_D=head_block(head_dim), **config)
    return out, lse


def attention_backward(do, q, k, v, out, lse, scale: float, window: int | None, precision: str,
                       dropout_p: float = 0.0, seed: torch.Tensor | None = None, need_q: bool = True, need_kv: bool = True):
    """-> (dq or None, dk or None, dv or None), contiguous, shaped like q, k, v, in q's dtype. ``do``
    and ``out`` share q's shape with unit stride along D; lse is the forward's (B, H, N_q) fp32."""
    batch, heads, kv_heads, n_q, n_k, head_dim = _shapes(q, k)
    block_d = head_block(head_dim)
    itemsize = q.element_size()
    common = dict(GROUP=heads // kv_heads, DROPOUT=dropout_p > 0, WINDOWED=window is not None, PRECISION=precision,
                  HEAD_DIM=head_dim, BLOCK_D=block_d)
    drop = (dropout_p, 1.0 / (1.0 - dropout_p))
    config = attention_config("delta", head_dim, itemsize)
    n_blocks = triton.cdiv(n_q, config["BLOCK_M"])
    delta = torch.empty(batch, heads, n_q, device=q.device, dtype=torch.float32)
    _attention_backward_delta_kernel[(n_blocks * batch * heads,)](
        out, do, delta, heads, n_q, n_blocks, *_strides(out), *_strides(do),
        HEAD_DIM=head_dim, BLOCK_D=block_d, **config)
    lse = lse.contiguous()
    strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(do))
    dq = dk = dv = None
    if need_kv:
        dk = torch.empty(k.shape, device=q.device, dtype=q.dtype)
        dv = torch.empty(v.shape, device=q.device, dtype=q.dtype)
        config = attention_config("dkdv", head_dim, itemsize, heads // kv_heads)
        n_blocks = triton.cdiv(n_k, config["BLOCK_N"])
        _attention_backward_dkdv_kernel[(n_blocks * batch * kv_heads,)](
            q, k, v, do, lse, delta, dk, dv, lse if seed is None else seed, kv_heads, n_q, n_k, window or 0, n_blocks,
            scale, scale * LOG2E, *drop,
            *strides, **common, **config)
    if need_q:
        dq = torch.empty(q.shape, device=q.device, dtype=q.dtype)
        config = attention_config("dq", head_dim, itemsize)
        n_blocks = triton.cdiv(n_q, config["BLOCK_M"])
        _attention_backward_dq_kernel[(n_blocks * batch * heads,)](
            q, k, v, do, lse, delta, dq, lse if seed is None else seed, heads, n_q, n_k, window or 0, n_blocks,
            scale, scale * LOG2E, *drop,
            *strides, **common, **config)
    return dq, dk, dv
