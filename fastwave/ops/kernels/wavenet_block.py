"""One WaveNet layer in one kernel, and the gate part of its backward.

Forward, per (batch row, tile of BLOCK_T steps): for each chunk of BLOCK_H gate channels, the
dilated causal conv (``load_shifted``) gives the tanh and sigmoid pre-activations, the gate value h
is formed in registers, and the chunk's contribution to the residual and skip 1x1 products is
accumulated; only x is read and only the two outputs are written. Nothing of size G x T reaches
memory.

Backward recomputes the pre-activations from x (cheaper than saving them) and writes the two
things the rest of the backward needs: dz, the gradient at the conv output (G x T: the conv's input
and weight gradients need it at shifted times, across tile edges), and h (H x T, for the 1x1 weight
gradients). Those products run through ``shifted_matmul`` / ``shifted_outer_sum``.

Weight layouts (contiguous, x's dtype): w_dil (G, taps * R) with column k * R + r; rows [0, H) feed
tanh, [H, G) sigmoid. w_res (R, H), w_skip (S, H); their transposes for the backward.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .shifted_matmul import batch_and_time, block_size, load_shifted, tuned


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def gate_preactivation(x_ptr, wd_ptr, bd_ptr, cond_ptr, hrow, t, R, H, T, taps, dilation,
                       stride_xc, stride_xt, stride_cc, stride_ct,
                       HAS_COND: tl.constexpr, PRECISION: tl.constexpr,
                       BLOCK_H: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr):
    """(tanh input, sigmoid input) for gate channels ``hrow`` at times ``t``, fp32 (BLOCK_H, BLOCK_T).
    x_ptr and cond_ptr point at this batch row."""
    J = taps * R
    za = tl.zeros((BLOCK_H, BLOCK_T), dtype=tl.float32)
    zb = tl.zeros((BLOCK_H, BLOCK_T), dtype=tl.float32)
    for j0 in range(0, J, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J)
        xs = load_shifted(x_ptr, j[:, None], t[None, :], R, T, taps, dilation, stride_xc, stride_xt, -1)
        w_mask = (hrow[:, None] < H) & (j[None, :] < J)
        wa = tl.load(wd_ptr + hrow[:, None] * J + j[None, :], mask=w_mask, other=0.0)
        wb = tl.load(wd_ptr + (hrow[:, None] + H) * J + j[None, :], mask=w_mask, other=0.0)
        za = tl.dot(wa, xs, za, input_precision=PRECISION)
        zb = tl.dot(wb, xs, zb, input_precision=PRECISION)
    za += tl.load(bd_ptr + hrow, mask=hrow < H, other=0.0).to(tl.float32)[:, None]
    zb += tl.load(bd_ptr + H + hrow, mask=hrow < H, other=0.0).to(tl.float32)[:, None]
    if HAS_COND:
        c_mask = (hrow[:, None] < H) & (t[None, :] < T)
        c_off = hrow[:, None] * stride_cc + t[None, :] * stride_ct
        za += tl.load(cond_ptr + c_off, mask=c_mask, other=0.0).to(tl.float32)
        zb += tl.load(cond_ptr + H * stride_cc + c_off, mask=c_mask, other=0.0).to(tl.float32)
    return za, zb


@triton.jit
def _wavenet_block_forward_kernel(
        x_ptr, wd_ptr, bd_ptr, wr_ptr, br_ptr, ws_ptr, bs_ptr, cond_ptr, skip_in_ptr, res_ptr, skip_ptr,
        R, H, S, T, taps, dilation, n_t_tiles,
        stride_xb, stride_xc, stride_xt, stride_cb, stride_cc, stride_ct, stride_ib, stride_ic, stride_it,
        stride_rb, stride_rc, stride_rt, stride_sb, stride_sc, stride_st,
        HAS_COND: tl.constexpr, HAS_RES: tl.constexpr, HAS_SKIP_IN: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_T: tl.constexpr,
        BLOCK_J: tl.constexpr):
    b, t = batch_and_time(n_t_tiles, BLOCK_T)
    r = tl.arange(0, BLOCK_R)
    s = tl.arange(0, BLOCK_S)
    x_ptr += b * stride_xb
    cond_ptr += b * stride_cb
    skip_acc = tl.zeros((BLOCK_S, BLOCK_T), dtype=tl.float32)
    res_acc = tl.zeros((BLOCK_R, BLOCK_T), dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        hrow = h0 + tl.arange(0, BLOCK_H)
        za, zb = gate_preactivation(x_ptr, wd_ptr, bd_ptr, cond_ptr, hrow, t, R, H, T, taps, dilation,
                                    stride_xc, stride_xt, stride_cc, stride_ct,
                                    HAS_COND, PRECISION, BLOCK_H, BLOCK_T, BLOCK_J)
        gate = (_tanh(za) * tl.sigmoid(zb)).to(ws_ptr.dtype.element_ty)  # rows past H are tanh(0) = 0
        ws = tl.load(ws_ptr + s[:, None] * H + hrow[None, :], mask=(s[:, None] < S) & (hrow[None, :] < H), other=0.0)
        skip_acc = tl.dot(ws, gate, skip_acc, input_precision=PRECISION)
        if HAS_RES:
            wr = tl.load(wr_ptr + r[:, None] * H + hrow[None, :], mask=(r[:, None] < R) & (hrow[None, :] < H), other=0.0)
            res_acc = tl.dot(wr, gate, res_acc, input_precision=PRECISION)
    skip_acc += tl.load(bs_ptr + s, mask=s < S, other=0.0).to(tl.float32)[:, None]
    s_mask = (s[:, None] < S) & (t[None, :] < T)
    if HAS_SKIP_IN:
        skip_acc += tl.load(skip_in_ptr + b * stride_ib + s[:, None] * stride_ic + t[None, :] * stride_it,
                            mask=s_mask, other=0.0).to(tl.float32)
    tl.store(skip_ptr + b * stride_sb + s[:, None] * stride_sc + t[None, :] * stride_st,
             skip_acc.to(skip_ptr.dtype.element_ty), mask=s_mask)
    if HAS_RES:
        r_mask = (r[:, None] < R) & (t[None, :] < T)
        res_acc += tl.load(br_ptr + r, mask=r < R, other=0.0).to(tl.float32)[:, None]
        res_acc += tl.load(x_ptr + r[:, None] * stride_xc + t[None, :] * stride_xt, mask=r_mask, other=0.0).to(tl.float32)
        tl.store(res_ptr + b * stride_rb + r[:, None] * stride_rc + t[None, :] * stride_rt,
                 res_acc.to(res_ptr.dtype.element_ty), mask=r_mask)


@triton.jit
def _wavenet_block_gate_backward_kernel(
        x_ptr, wd_ptr, bd_ptr, wr_t_ptr, ws_t_ptr, cond_ptr, dres_ptr, dskip_ptr, dz_ptr, gate_ptr,
        R, H, S, T, taps, dilation, n_t_tiles,
        stride_xb, stride_xc, stride_xt, stride_cb, stride_cc, stride_ct,
        stride_drb, stride_drc, stride_drt, stride_dsb, stride_dsc, stride_dst,
        HAS_COND: tl.constexpr, HAS_DRES: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_T: tl.constexpr,
        BLOCK_J: tl.constexpr):
    """dz (B, G, T) and gate h (B, H, T), both contiguous, from the output gradients."""
    b, t = batch_and_time(n_t_tiles, BLOCK_T)
    r = tl.arange(0, BLOCK_R)
    s = tl.arange(0, BLOCK_S)
    x_ptr += b * stride_xb
    cond_ptr += b * stride_cb
    t_in = t[None, :] < T
    dskip = tl.load(dskip_ptr + b * stride_dsb + s[:, None] * stride_dsc + t[None, :] * stride_dst,
                    mask=(s[:, None] < S) & t_in, other=0.0)
    if HAS_DRES:
        dres = tl.load(dres_ptr + b * stride_drb + r[:, None] * stride_drc + t[None, :] * stride_drt,
                       mask=(r[:, None] < R) & t_in, other=0.0)
    dz_ptr += b * 2 * H * T
    gate_ptr += b * H * T
    for h0 in range(0, H, BLOCK_H):
        hrow = h0 + tl.arange(0, BLOCK_H)
        za, zb = gate_preactivation(x_ptr, wd_ptr, bd_ptr, cond_ptr, hrow, t, R, H, T, taps, dilation,
                                    stride_xc, stride_xt, stride_cc, stride_ct,
                                    HAS_COND, PRECISION, BLOCK_H, BLOCK_T, BLOCK_J)
        th = _tanh(za)
        sg = tl.sigmoid(zb)
        gate = th * sg
        h_in = hrow[:, None] < H
        ws_t = tl.load(ws_t_ptr + hrow[:, None] * S + s[None, :], mask=h_in & (s[None, :] < S), other=0.0)
        dgate = tl.dot(ws_t, dskip, input_precision=PRECISION)
        if HAS_DRES:
            wr_t = tl.load(wr_t_ptr + hrow[:, None] * R + r[None, :], mask=h_in & (r[None, :] < R), other=0.0)
            dgate = tl.dot(wr_t, dres, dgate, input_precision=PRECISION)
        dza = dgate * sg * (1.0 - th * th)
        dzb = dgate * gate * (1.0 - sg)
        out_mask = h_in & t_in
        offset = hrow[:, None] * T + t[None, :]
        tl.store(dz_ptr + offset, dza.to(dz_ptr.dtype.element_ty), mask=out_mask)
        tl.store(dz_ptr + H * T + offset, dzb.to(dz_ptr.dtype.element_ty), mask=out_mask)
        tl.store(gate_ptr + offset, gate.to(gate_ptr.dtype.element_ty), mask=out_mask)


# The residual and skip tiles stay in registers for a whole time tile; past this width (each padded
# to a power of two) they no longer fit beside the gate, and the op runs the torch composition.
MAX_FUSED_CHANNELS = 256


def fits_fused(residual: int, skip: int) -> bool:
    return max(block_size(residual, high=1 << 30), block_size(skip, high=1 << 30)) <= MAX_FUSED_CHANNELS


def block_config(residual: int, skip: int, half: int, taps: int, backward: bool, itemsize: int) -> dict:
    """Tiles and warps. The residual and skip accumulators (forward) or output gradients (backward)
    stay in registers for a whole time tile, so the tile shortens as they widen (and for fp32
    operands, which take twice the registers)."""
    block_r, block_s = block_size(residual, high=1 << 30), block_size(skip, high=1 << 30)
    budget = 16384 if itemsize <= 2 or backward else 8192
    block_t = 64
    while block_t > 16 and (block_r + block_s) * block_t > budget:
        block_t //= 2
    config = dict(BLOCK_R=block_r, BLOCK_S=block_s, BLOCK_T=block_t, BLOCK_J=block_size(taps * residual, high=32),
                  BLOCK_H=block_size(half, high=32 if backward else 16), num_warps=8)
    return tuned("block_backward" if backward else "block_forward", config)


def _cond_args(cond: torch.Tensor | None, x: torch.Tensor, gate_channels: int):
    """cond broadcast to (B, G, T) by strides (0 along broadcast dimensions: nothing is copied)."""
    if cond is None:
        return x, (0, 0, 0)
    cond = cond.expand(x.shape[0], gate_channels, x.shape[2])
    return cond, cond.stride()


def wavenet_block_forward(x, wd, bd, wr, br, ws, bs, taps, dilation, cond, skip_in, precision):
    """-> (residual (B, R, T) or None when wr is None, skip (+ skip_in) (B, S, T)), x's dtype."""
    batch, residual, length = x.shape
    skip_channels, half = ws.shape
    tiles = block_config(residual, skip_channels, half, taps, backward=False, itemsize=x.element_size())
    n_t_tiles = triton.cdiv(length, tiles["BLOCK_T"])
    skip = torch.empty(batch, skip_channels, length, device=x.device, dtype=x.dtype)
    res = torch.empty_like(x, memory_format=torch.contiguous_format) if wr is not None else None
    cond_t, cond_strides = _cond_args(cond, x, 2 * half)
    out_res = res if res is not None else skip
    _wavenet_block_forward_kernel[(batch * n_t_tiles,)](
        x, wd, bd, wr if wr is not None else ws, br if br is not None else bs, ws, bs, cond_t,
        skip_in if skip_in is not None else skip, out_res, skip,
        residual, half, skip_channels, length, taps, dilation, n_t_tiles,
        *x.stride(), *cond_strides, *(skip_in.stride() if skip_in is not None else (0, 0, 0)),
        *out_res.stride(), *skip.stride(),
        HAS_COND=cond is not None, HAS_RES=wr is not None, HAS_SKIP_IN=skip_in is not None, PRECISION=precision,
        **tiles)
    return res, skip


def wavenet_block_gate_backward(x, wd, bd, wr_t, ws_t, cond, dres, dskip, taps, dilation, precision):
    """-> (dz (B, G, T), gate h (B, H, T)), contiguous, x's dtype. dres None: no residual output."""
    batch, residual, length = x.shape
    half, skip_channels = ws_t.shape
    tiles = block_config(residual, skip_channels, half, taps, backward=True, itemsize=x.element_size())
    n_t_tiles = triton.cdiv(length, tiles["BLOCK_T"])
    dz = torch.empty(batch, 2 * half, length, device=x.device, dtype=x.dtype)
    gate = torch.empty(batch, half, length, device=x.device, dtype=x.dtype)
    cond_t, cond_strides = _cond_args(cond, x, 2 * half)
    dres_t = dres if dres is not None else dskip
    _wavenet_block_gate_backward_kernel[(batch * n_t_tiles,)](
        x, wd, bd, wr_t if wr_t is not None else ws_t, ws_t, cond_t, dres_t, dskip, dz, gate,
        residual, half, skip_channels, length, taps, dilation, n_t_tiles,
        *x.stride(), *cond_strides, *dres_t.stride(), *dskip.stride(),
        HAS_COND=cond is not None, HAS_DRES=dres is not None, PRECISION=precision, **tiles)
    return dz, gate
