"""Causal multi-head attention, optionally over a sliding window:

    out = causal_attention(q, k, v, scale=None, window=None)
        q, k, v (B, H, N, D), one dtype and device, head dimension D from 16 to 128 -> out (B, H, N, D)
        out[b, h, i] = sum_j softmax_j(scale * q[b, h, i] . k[b, h, j]) v[b, h, j]
        over the keys j <= i (window None) or i - window < j <= i (window an int >= 1: Mistral-style
        band, each query sees itself and the window - 1 keys before it); scale defaults to 1 / sqrt(D).

On CUDA it is FlashAttention-2 in Triton (``kernels/flash_attention.py``): no N x N matrix in
memory, blocks above the diagonal or outside the window never loaded, fp32 accumulation. The
forward saves O and the log-sum-exp of each row (B, H, N), fp32, never P; the backward recomputes P
from them. fp16 / bf16 / fp32 run the kernels; fp64 runs the reference (for gradcheck), as does
every tensor when the backend says so (``_backend.py``). Any N (0 included), any batch / head / row
strides; under torch.autocast it computes in the autocast dtype.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

from ._args import autocast, check_shape, check_tensor
from ._backend import dot_precision, use_triton

Tensor = torch.Tensor
HEAD_DIMS = (16, 128)  # the head dimensions the kernels take, inclusive
# The reference's written-out log-sum-exp and backward run over blocks of query rows of about this
# many score elements (B * H * rows * N), so that they never hold the N x N scores at once.
REFERENCE_BLOCK_ELEMENTS = 1 << 24


def causal_attention_reference(q, k, v, scale: Optional[float] = None, window: Optional[int] = None):
    """The plain-torch definition the kernel is held to: torch's scaled_dot_product_attention, causal,
    with an explicit band mask when the window is shorter than the sequence."""
    length = q.shape[-2]
    if window is None or window >= length:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    i = torch.arange(length, device=q.device)
    lag = i[:, None] - i[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=(lag >= 0) & (lag < window), scale=scale)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, scale: Optional[float] = None,
                     window: Optional[int] = None) -> Tensor:
    """q, k, v (B, H, N, D) -> (B, H, N, D); see the module docstring. Differentiable in q, k and v."""
    q, k, v = autocast(q, k, v)
    check_tensor(q, "q", 4)
    check_tensor(k, "k", 4, like=q)
    check_tensor(v, "v", 4, like=q)
    check_shape(k, "k", tuple(q.shape))
    check_shape(v, "v", tuple(q.shape))
    if not HEAD_DIMS[0] <= q.shape[-1] <= HEAD_DIMS[1]:
        raise ValueError(f"q, k and v must have a head dimension (their last) of {HEAD_DIMS[0]} to {HEAD_DIMS[1]}, "
                         f"got {q.shape[-1]}")
    scale = _check_scale(scale, q.shape[-1])
    _check_window(window)
    out, _ = torch.ops.fastwave.causal_attention(q, k, v, scale, window)
    return out


def _check_scale(scale, head_dim: int) -> float:
    if scale is None:
        return head_dim ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float (or None for 1/sqrt(D)), got {type(scale).__name__}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    return float(scale)


def _check_window(window) -> None:
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be None or an int >= 1, got {window!r}")


def _band(length: int, window: Optional[int]) -> Optional[int]:
    """The window the kernels apply: None when it covers the whole sequence anyway."""
    return None if window is None or window >= length else window


def _head_contiguous(t: Tensor) -> Tensor:
    """The kernels take any batch / head / row strides but read D in unit steps."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("fastwave::causal_attention", mutates_args=())
def _forward(q: Tensor, k: Tensor, v: Tensor, scale: float, window: Optional[int]) -> tuple[Tensor, Tensor]:
    """-> (out (B, H, N, D) contiguous, lse (B, H, N): fp32 (fp64 for fp64 inputs), the natural
    log-sum-exp of each row's scaled, masked scores)."""
    window = _band(q.shape[2], window)
    if q.numel() == 0:
        return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))
    if not use_triton(q):
        out = causal_attention_reference(q, k, v, scale, window).contiguous()
        return out, _reference_lse(q, k, scale, window)
    from .kernels.flash_attention import attention_forward
    return attention_forward(_head_contiguous(q), _head_contiguous(k), _head_contiguous(v), scale, window,
                             dot_precision(q.dtype))


@_forward.register_fake
def _(q, k, v, scale, window):
    return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))


def _row_blocks(q: Tensor, window: Optional[int]):
    """(query rows [i0, i1), their keys [j0, i1), the band mask (i1 - i0, i1 - j0)) in blocks that
    keep B * H * rows * keys near REFERENCE_BLOCK_ELEMENTS."""
    batch, heads, length, _ = q.shape
    rows = max(1, REFERENCE_BLOCK_ELEMENTS // max(1, batch * heads * length))
    for i0 in range(0, length, rows):
        i1 = min(i0 + rows, length)
        j0 = 0 if window is None else max(0, i0 - window + 1)
        lag = torch.arange(i0, i1, device=q.device)[:, None] - torch.arange(j0, i1, device=q.device)[None, :]
        yield i0, i1, j0, (lag >= 0) & (lag < (window or length))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _reference_lse(q, k, scale: float, window: Optional[int]) -> Tensor:
    """The log-sum-exp the kernel saves, written out in torch (a block of query rows at a time)."""
    dtype = _compute_dtype(q.dtype)
    lse = q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))
    for i0, i1, j0, mask in _row_blocks(q, window):
        s = torch.matmul(q[:, :, i0:i1].to(dtype), k[:, :, j0:i1].to(dtype).transpose(-1, -2)) * scale
        lse[:, :, i0:i1] = torch.logsumexp(s.masked_fill(~mask, float("-inf")), dim=-1)
    return lse


def causal_attention_reference_backward(do, q, k, v, out, lse, scale: float, window: Optional[int],
                                        need=(True, True, True)):
    """(dq, dk, dv) written out in torch from the forward's output and log-sum-exp, the formulas the
    kernels use (P = exp(s - lse), dS = P * (dO V^T - rowsum(dO * O)), dQ = scale dS K, dK = scale
    dS^T Q, dV = P^T dO), a block of query rows at a time: no autograd (inside a custom op it does
    not record) and no N x N matrix at once. ``need``: which of the three to compute (None for the
    others). ``window`` must already be None when it covers the sequence."""
    dtype = _compute_dtype(q.dtype)
    q32, k32, v32, do32 = (t.to(dtype) for t in (q, k, v, do))
    delta = (do32 * out.to(dtype)).sum(-1)
    dq = torch.zeros_like(q32) if need[0] else None
    dk = torch.zeros_like(k32) if need[1] else None
    dv = torch.zeros_like(v32) if need[2] else None
    for i0, i1, j0, mask in _row_blocks(q, window):
        q_i, do_i, k_j, v_j = q32[:, :, i0:i1], do32[:, :, i0:i1], k32[:, :, j0:i1], v32[:, :, j0:i1]
        s = torch.matmul(q_i, k_j.transpose(-1, -2)) * scale
        p = torch.exp(s - lse[:, :, i0:i1, None].to(dtype)).masked_fill(~mask, 0.0)
        if dv is not None:
            dv[:, :, j0:i1] += torch.matmul(p.transpose(-1, -2), do_i)
        ds = p * (torch.matmul(do_i, v_j.transpose(-1, -2)) - delta[:, :, i0:i1, None])
        if dq is not None:
            dq[:, :, i0:i1] = torch.matmul(ds, k_j) * scale
        if dk is not None:
            dk[:, :, j0:i1] += torch.matmul(ds.transpose(-1, -2), q_i) * scale
    return tuple(None if g is None else g.to(q.dtype) for g in (dq, dk, dv))


@torch.library.custom_op("fastwave::causal_attention_backward", mutates_args=())
def _backward(do: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, scale: float,
              window: Optional[int], needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    """-> (dq, dk, dv), contiguous in q's dtype; a gradient that ``needs`` does not ask for comes
    back empty."""
    window = _band(q.shape[2], window)
    need_q, need_k, need_v = needs
    if q.numel() == 0:
        grads = tuple(q.new_zeros(q.shape) for _ in range(3))
    elif not use_triton(q):
        grads = causal_attention_reference_backward(do, q, k, v, out, lse, scale, window, needs)
    else:
        from .kernels.flash_attention import attention_backward
        grads = attention_backward(*(_head_contiguous(t) for t in (do, q, k, v, out)), lse, scale, window,
                                   dot_precision(q.dtype), need_q=need_q, need_kv=need_k or need_v)
    # outputs must not alias one another (nor an input)
    return tuple(g.contiguous() if need else q.new_empty(0) for g, need in zip(grads, needs))


@_backward.register_fake
def _(do, q, k, v, out, lse, scale, window, needs):
    return tuple(q.new_empty(q.shape) if need else q.new_empty(0) for need in needs)


def _setup_context(ctx, inputs, output):
    q, k, v, scale, window = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.scale, ctx.window = scale, window
    ctx.mark_non_differentiable(lse)


def _autograd_backward(ctx, dout, dlse):
    q, k, v, out, lse = ctx.saved_tensors
    needs = [bool(n) for n in ctx.needs_input_grad[:3]]
    grads = torch.ops.fastwave.causal_attention_backward(dout, q, k, v, out, lse, ctx.scale, ctx.window, needs)
    return (*(g if need else None for g, need in zip(grads, needs)), None, None)


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)
