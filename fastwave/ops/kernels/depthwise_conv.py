"""Depthwise causal convolution (one filter of K <= 4 taps per channel, Mamba's short conv), with an
optional SiLU and a state of the last (K - 1) * dilation inputs before the sequence.

- ``_depthwise_kernel``: z[b, c, t] = bias[c] + sum_k w[c, k] * xx[b, c, t - (K - 1 - k) d], where xx is
  the state followed by x; writes SiLU(z) or z, or, in the backward (GRAD), dz = dy * SiLU'(z)
  recomputed from x (z itself is never stored).
- ``_depthwise_transposed_kernel``: d xx[b, c, u] = sum_k w[c, k] dz[b, c, u + (K - 1 - k) d] over
  u in [-S, T): the input gradient, and for u < 0 the gradient of the initial state.
- ``_depthwise_step_kernel``: one decode step against the state, which it shifts in place.

Each program holds a (channels x time) tile; batch offsets are int64, offsets within a row int32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._backend import interpreting


@triton.jit
def _load_history(x_ptr, state_ptr, c, src, C, T, S, stride_xc, stride_xt, stride_sc, stride_st,
                  HAS_STATE: tl.constexpr):
    """xx[c, src] for index tensors c, src (src may be negative: the state's last -src samples)."""
    value = tl.load(x_ptr + c * stride_xc + src * stride_xt, mask=(c < C) & (src >= 0) & (src < T), other=0.0)
    if HAS_STATE:
        value += tl.load(state_ptr + c * stride_sc + (S + src) * stride_st, mask=(c < C) & (src < 0) & (S + src >= 0),
                         other=0.0)
    return value.to(tl.float32)


@triton.jit
def _depthwise_kernel(x_ptr, state_ptr, w_ptr, b_ptr, dy_ptr, out_ptr, C, T, S, dilation, n_c_blocks,
                      stride_xb, stride_xc, stride_xt, stride_sb, stride_sc, stride_st,
                      stride_db, stride_dc, stride_dt,
                      TAPS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_STATE: tl.constexpr, SILU: tl.constexpr,
                      GRAD: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """out (contiguous (B, C, T)) = SiLU(z) or z, or with GRAD dz = dy * SiLU'(z)."""
    pid = tl.program_id(0)
    b = (pid // n_c_blocks).to(tl.int64)
    c = (pid % n_c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)[:, None]
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)[None, :]
    x_ptr += b * stride_xb
    state_ptr += b * stride_sb
    z = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    for k in tl.static_range(TAPS):
        w = tl.load(w_ptr + c * TAPS + k, mask=c < C, other=0.0).to(tl.float32)
        z += w * _load_history(x_ptr, state_ptr, c, t - (TAPS - 1 - k) * dilation, C, T, S,
                               stride_xc, stride_xt, stride_sc, stride_st, HAS_STATE)
    if HAS_BIAS:
        z += tl.load(b_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    if GRAD:
        dy = tl.load(dy_ptr + b * stride_db + c * stride_dc + t * stride_dt, mask=(c < C) & (t < T), other=0.0)
        out = dy.to(tl.float32)
        if SILU:
            gate = tl.sigmoid(z)
            out = out * gate * (1.0 + z * (1.0 - gate))
    elif SILU:
        out = z * tl.sigmoid(z)
    else:
        out = z
    tl.store(out_ptr + (b * C + c) * T + t, out.to(out_ptr.dtype.element_ty), mask=(c < C) & (t < T))


@triton.jit
def _depthwise_transposed_kernel(dz_ptr, w_ptr, dx_ptr, dstate_ptr, C, T, S, dilation, n_c_blocks,
                                 TAPS: tl.constexpr, HAS_STATE: tl.constexpr, BLOCK_C: tl.constexpr,
                                 BLOCK_T: tl.constexpr):
    """dx (contiguous (B, C, T)) and, with HAS_STATE, d state (contiguous (B, C, S)) from dz
    (contiguous (B, C, T)): positions u = -S .. T - 1 along grid axis 1."""
    pid = tl.program_id(0)
    b = (pid // n_c_blocks).to(tl.int64)
    c = (pid % n_c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)[:, None]
    u = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)[None, :] - S
    dz_ptr += b * C * T
    acc = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    for k in tl.static_range(TAPS):
        w = tl.load(w_ptr + c * TAPS + k, mask=c < C, other=0.0).to(tl.float32)
        src = u + (TAPS - 1 - k) * dilation
        acc += w * tl.load(dz_ptr + c * T + src, mask=(c < C) & (src >= 0) & (src < T), other=0.0).to(tl.float32)
    tl.store(dx_ptr + (b * C + c) * T + u, acc.to(dx_ptr.dtype.element_ty), mask=(c < C) & (u >= 0) & (u < T))
    if HAS_STATE:
        tl.store(dstate_ptr + (b * C + c) * S + (S + u), acc.to(dstate_ptr.dtype.element_ty),
                 mask=(c < C) & (u < 0))


@triton.jit
def _depthwise_step_kernel(x_ptr, state_ptr, w_ptr, b_ptr, y_ptr, C, S, dilation, n_c_blocks,
                           stride_xb, stride_xc, stride_sb, stride_sc, stride_st,
                           TAPS: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
                           BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """y[b, c] = SiLU(bias[c] + sum_k w[c, k] xx[c, k d]) with xx = state then x (S + 1 samples), and
    the state shifted left by one in place, x appended. y contiguous (B, C)."""
    pid = tl.program_id(0)
    b = (pid // n_c_blocks).to(tl.int64)
    c = (pid % n_c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    x = tl.load(x_ptr + b * stride_xb + c * stride_xc, mask=c < C, other=0.0)
    state_ptr += b * stride_sb
    z = tl.load(w_ptr + c * TAPS + (TAPS - 1), mask=c < C, other=0.0).to(tl.float32) * x.to(tl.float32)
    for k in tl.static_range(TAPS - 1):
        w = tl.load(w_ptr + c * TAPS + k, mask=c < C, other=0.0).to(tl.float32)
        z += w * tl.load(state_ptr + c * stride_sc + k * dilation * stride_st, mask=c < C, other=0.0).to(tl.float32)
    if HAS_BIAS:
        z += tl.load(b_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    if SILU:
        z = z * tl.sigmoid(z)
    tl.store(y_ptr + b * C + c, z.to(y_ptr.dtype.element_ty), mask=c < C)
    if TAPS > 1:  # the shift, a chunk of BLOCK_S at a time from the oldest: a chunk reads only what
        cc = c[:, None]  # later chunks have not yet written
        for j0 in range(0, S - 1, BLOCK_S):
            j = j0 + tl.arange(0, BLOCK_S)[None, :]
            older = tl.load(state_ptr + cc * stride_sc + (j + 1) * stride_st, mask=(cc < C) & (j + 1 < S), other=0.0)
            tl.debug_barrier()  # every thread has read the chunk before any overwrites it
            tl.store(state_ptr + cc * stride_sc + j * stride_st, older, mask=(cc < C) & (j + 1 < S))
        tl.store(state_ptr + c * stride_sc + (S - 1) * stride_st, x.to(state_ptr.dtype.element_ty), mask=c < C)


def _tiles(channels: int, length: int) -> tuple[int, int]:
    """(channels, steps) per program: 8 x 128 over 4 warps is 8 values a thread, which keeps the
    K taps' loads and the SiLU's recompute in registers (benchmarks/triton_resources.py --depthwise)."""
    if interpreting():  # small tiles: the tests cross several of each with short inputs
        return 4, 16
    return min(8, triton.next_power_of_2(max(channels, 1))), 128


def depthwise_forward(x, weight, bias, dilation: int, silu: bool, state, dy=None):
    """x (B, C, T), weight (C, K) contiguous, bias (C,) or None, state (B, C, (K - 1) d) or None ->
    SiLU(z) or z (B, C, T) contiguous in x's dtype; with ``dy``, dz = dy * SiLU'(z) instead."""
    batch, channels, length = x.shape
    taps = weight.shape[1]
    out = torch.empty(batch, channels, length, device=x.device, dtype=x.dtype)
    block_c, block_t = _tiles(channels, length)
    n_c = triton.cdiv(channels, block_c)
    state_arg = x if state is None else state
    dy_arg = x if dy is None else dy
    _depthwise_kernel[(batch * n_c, triton.cdiv(length, block_t))](
        x, state_arg, weight, weight if bias is None else bias, dy_arg, out, channels, length, (taps - 1) * dilation,
        dilation, n_c, *x.stride(), *state_arg.stride(), *dy_arg.stride(),
        TAPS=taps, HAS_BIAS=bias is not None, HAS_STATE=state is not None, SILU=silu, GRAD=dy is not None,
        BLOCK_C=block_c, BLOCK_T=block_t, num_warps=4)
    return out


def depthwise_input_grad(dz, weight, dilation: int, need_state: bool):
    """dz (B, C, T) contiguous -> (dx (B, C, T), d state (B, C, (K - 1) d) or None), in dz's dtype."""
    batch, channels, length = dz.shape
    taps = weight.shape[1]
    span = (taps - 1) * dilation
    dx = torch.empty_like(dz)
    dstate = torch.empty(batch, channels, span, device=dz.device, dtype=dz.dtype) if need_state else None
    block_c, block_t = _tiles(channels, length)
    n_c = triton.cdiv(channels, block_c)
    positions = length + (span if need_state else 0)
    _depthwise_transposed_kernel[(batch * n_c, triton.cdiv(positions, block_t))](
        dz, weight, dx, dx if dstate is None else dstate, channels, length, span if need_state else 0, dilation, n_c,
        TAPS=taps, HAS_STATE=need_state, BLOCK_C=block_c, BLOCK_T=block_t, num_warps=4)
    return dx, dstate


def depthwise_step(x, state, weight, bias, dilation: int, silu: bool):
    """x (B, C), state (B, C, (K - 1) d) updated in place, weight (C, K) contiguous -> y (B, C)."""
    batch, channels = x.shape
    taps = weight.shape[1]
    span = (taps - 1) * dilation
    y = torch.empty(batch, channels, device=x.device, dtype=x.dtype)
    block_s = 8 if interpreting() else min(256, triton.next_power_of_2(max(span, 1)))
    # at most 2,048 values a program (16 a thread): channels x a chunk of the state
    block_c = 4 if interpreting() else max(1, min(64, triton.next_power_of_2(max(channels, 1)), 2048 // block_s))
    n_c = triton.cdiv(channels, block_c)
    _depthwise_step_kernel[(batch * n_c,)](
        x, state, weight, weight if bias is None else bias, y, channels, span, dilation, n_c,
        *x.stride(), *state.stride(), TAPS=taps, HAS_BIAS=bias is not None, SILU=silu,
        BLOCK_C=block_c, BLOCK_S=block_s, num_warps=4)
    return y
