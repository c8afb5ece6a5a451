"""Causal multi-head attention, optionally over a sliding window, with grouped keys and values and
queries that continue a cache:

    out = causal_attention(q, k, v, scale=None, window=None, layout="bhnd", return_lse=False)
        q (B, H, N_q, D), k and v (B, H_kv, N_k, D): one dtype and device, head dimension D from 8 to
        256, H_kv dividing H (grouped-query attention; H_kv = 1 is multi-query), N_q <= N_k.
        -> out (B, H, N_q, D), and with return_lse the log-sum-exp of each row (B, H, N_q), fp32.
        The queries are the last N_q positions of the N_k (prefill against a cache: N_q = N_k is
        ordinary causal attention); query i sits at position p = i + N_k - N_q, and head h reads key
        and value head h // (H / H_kv):
        out[b, h, i] = sum_j softmax_j(scale * q[b, h, i] . k[b, h', j]) v[b, h', j]
        over the keys j <= p (window None) or p - window < j <= p (window an int >= 1: Mistral-style
        band, each query sees itself and the window - 1 keys before it); scale defaults to 1 / sqrt(D).
        layout "bnhd" takes and returns (B, N, H, D) tensors (flash-attn's layout) instead;
        dropout_p > 0 drops probabilities (training), seeded by dropout_seed (see causal_attention).

``flash_attn_func`` takes flash-attn's signature and (B, N, H, D) tensors.

On CUDA it is FlashAttention-2 in Triton (``kernels/flash_attention.py``): no N x N matrix in
memory, blocks above the diagonal or outside the window never loaded, keys and values of a group
read in place (never copied per head), fp32 accumulation. The forward saves O and the log-sum-exp of
each row (B, H, N_q), fp32, never P; the backward recomputes P from them. fp16 / bf16 / fp32 run the
kernels; fp64 runs the reference (for gradcheck); every tensor runs off the kernels when the
backend says so (``_backend.py``). Any N (0 included), any batch / head / row strides; under
torch.autocast it computes in the autocast dtype.

Off the kernels, fp16 / bf16 / fp32 without dropout run torch's own CPU flash attention (aten's
``_scaled_dot_product_flash_attention_for_cpu`` and its backward, the kernels' contract: O and the
log-sum-exp forward, P recomputed backward; a band or cache mask in blocks of query rows), 7x
faster than the written-out reference for a training step of B 32, H 4, N 512, D 32 on 2 cores;
the reference (``causal_attention_reference``, ``causal_attention_reference_backward``) runs fp64
and dropout.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

from ._args import autocast, check_tensor
from ._backend import dot_precision, use_triton
from .philox import MASK32, philox_rounds

Tensor = torch.Tensor
HEAD_DIMS = (8, 256)  # the head dimensions the kernels take, inclusive
LAYOUTS = ("bhnd", "bnhd")
# The reference's written-out log-sum-exp and backward run over blocks of query rows of about this
# many score elements (B * H * rows * N_k), so that they never hold the N_q x N_k scores at once.
REFERENCE_BLOCK_ELEMENTS = 1 << 24


def visible_keys(n_q: int, n_k: int, window: Optional[int], device=None, rows=None, keys=None) -> Tensor:
    """(rows, keys) bool, by default (N_q, N_k): which keys each query sees (query i at position
    i + N_k - N_q); ``rows`` / ``keys`` (ranges) select a block of it."""
    rows = range(n_q) if rows is None else rows
    keys = range(n_k) if keys is None else keys
    lag = (torch.arange(rows.start, rows.stop, device=device) + (n_k - n_q))[:, None] - \
        torch.arange(keys.start, keys.stop, device=device)[None, :]
    return (lag >= 0) & (lag < (window or n_k))


def dropout_keep_scale(seed: int, dropout_p: float, batch: int, heads: int, n_k: int, rows: Tensor, cols: Tensor,
                       dtype=torch.float32) -> Tensor:
    """Attention dropout, the kernels' draw: (B, H, len(rows), len(cols)), 1 / (1 - p) where the
    probability of query ``rows[i]`` (of head h of row b) for key ``cols[j]`` is kept, 0 where it is
    dropped. Kept when u >= p, u = (w >> 8) * 2**-24 from the first word w of Philox4x32-10 with key
    ``seed`` (low, high 32-bit words) at counter ((i * N_k + j) mod 2**32, b * H + h, 0, 0)."""
    bh = torch.arange(batch * heads, device=rows.device, dtype=torch.int64).reshape(batch, heads, 1, 1)
    counter = (rows.to(torch.int64)[:, None] * n_k + cols.to(torch.int64)[None, :]) & MASK32
    word = philox_rounds((counter, bh, 0, 0), (seed & MASK32, seed >> 32))[0]
    uniform = (word >> 8).to(torch.float32) * 2.0 ** -24
    return (uniform >= dropout_p).to(dtype) / (1.0 - dropout_p)


def causal_attention_reference(q, k, v, scale: Optional[float] = None, window: Optional[int] = None,
                               dropout_p: float = 0.0, dropout_seed: Optional[int] = None):
    """The plain-torch definition the kernel is held to, (B, H, N, D) layout: torch's
    scaled_dot_product_attention (grouped heads through its enable_gqa), causal, with an explicit
    mask when the queries continue a cache or the window is shorter than the sequence. With dropout,
    the probabilities written out and multiplied by ``dropout_keep_scale`` (the kernels' draw)."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    if dropout_p > 0:
        heads, kv_heads = q.shape[1], k.shape[1]
        keys, values = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
        scores = torch.matmul(q, keys.transpose(-1, -2)) * (q.shape[-1] ** -0.5 if scale is None else scale)
        probs = torch.softmax(scores.masked_fill(~visible_keys(n_q, n_k, window, q.device), float("-inf")), dim=-1)
        keep = dropout_keep_scale(int(dropout_seed), dropout_p, q.shape[0], heads, n_k,
                                  torch.arange(n_q, device=q.device), torch.arange(n_k, device=q.device), q.dtype)
        return torch.matmul(probs * keep, values)
    gqa = q.shape[1] != k.shape[1]
    if n_q == n_k and (window is None or window >= n_k):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=visible_keys(n_q, n_k, window, q.device), scale=scale,
                                          enable_gqa=gqa)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, scale: Optional[float] = None, window: Optional[int] = None,
                     *, layout: str = "bhnd", return_lse: bool = False, dropout_p: float = 0.0, dropout_seed=None):
    """q (B, H, N_q, D), k, v (B, H_kv, N_k, D) -> out (B, H, N_q, D) [, lse (B, H, N_q) fp32]; in
    layout "bnhd" every tensor is (B, N, H, D) instead. See the module docstring. Differentiable in
    q, k and v (the log-sum-exp is not).

    dropout_p: attention dropout (drop each probability with this chance, scale the rest by
      1 / (1 - p)); pass 0 outside training, as with scaled_dot_product_attention. The draw is
      Philox4x32-10 keyed by ``dropout_seed`` (an int in [0, 2**63) or an int64 tensor of one; by
      default drawn from torch's generator, so torch.manual_seed fixes it): the same seed drops the
      same probabilities forward and backward, on the kernels and the reference alike."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} ((B, H, N, D) or flash-attn's (B, N, H, D)), got {layout!r}")
    q, k, v = autocast(q, k, v)
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(t, name, 4, like=None if name == "q" else q)
    if layout == "bnhd":  # views: the kernels take any batch / head / row strides
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    _check_shapes(q, k, v, layout)
    scale = _check_scale(scale, q.shape[-1])
    _check_window(window)
    seed = _dropout_seed(dropout_p, dropout_seed, q.device)
    out, lse = torch.ops.fastwave.causal_attention(q, k, v, scale, window, float(dropout_p), seed)
    if layout == "bnhd":
        out = out.transpose(1, 2)
    return (out, lse) if return_lse else out


def _dropout_seed(dropout_p, dropout_seed, device) -> Optional[Tensor]:
    """The seed the op reads: None without dropout, else an int64 tensor (1,) on ``device`` (a
    tensor, so that torch.compile does not recompile for every new seed)."""
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0 <= dropout_p < 1:
        raise ValueError(f"dropout_p must be a float in [0, 1), got {dropout_p!r}")
    if dropout_p == 0:
        return None
    if dropout_seed is None:
        return torch.randint(0, 2 ** 62, (1,), device=device)
    if isinstance(dropout_seed, Tensor):
        if dropout_seed.dtype != torch.int64 or dropout_seed.numel() != 1:
            raise ValueError(f"dropout_seed must be an int or an int64 tensor of one element, got {dropout_seed.dtype} "
                             f"{tuple(dropout_seed.shape)}")
        return dropout_seed.reshape(1).to(device)
    if isinstance(dropout_seed, bool) or not isinstance(dropout_seed, int) or not 0 <= dropout_seed < 2 ** 63:
        raise ValueError(f"dropout_seed must be an int in [0, 2**63), got {dropout_seed!r}")
    return torch.tensor([dropout_seed], dtype=torch.int64, device=device)


def _check_shapes(q: Tensor, k: Tensor, v: Tensor, layout: str) -> None:
    """Shapes in (B, H, N, D) order; errors name the layout the caller used."""
    def shown(shape):
        return tuple(shape) if layout == "bhnd" else (shape[0], shape[2], shape[1], shape[3])

    order = "(B, H, N, D)" if layout == "bhnd" else "(B, N, H, D)"
    batch, heads, n_q, head_dim = q.shape
    if tuple(k.shape) != tuple(v.shape):
        raise ValueError(f"k and v must have one shape, got {shown(k.shape)} and {shown(v.shape)}")
    if k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"k must match q's batch and head dimension: q {shown(q.shape)}, k {shown(k.shape)} "
                         f"in layout {layout!r} {order}")
    kv_heads, n_k = k.shape[1], k.shape[2]
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(f"k and v have {kv_heads} heads, which must divide q's {heads} (grouped-query attention); "
                         f"shapes q {shown(q.shape)}, k {shown(k.shape)} in layout {layout!r} {order}: is the layout right?")
    if n_q > n_k:
        raise ValueError(f"q has {n_q} positions but k and v {n_k}: the queries must be the last N_q <= N_k "
                         f"positions; shapes q {shown(q.shape)}, k {shown(k.shape)} in layout {layout!r} {order}: "
                         "is the layout right?")
    if not HEAD_DIMS[0] <= head_dim <= HEAD_DIMS[1]:
        raise ValueError(f"q, k and v must have a head dimension (their last) of {HEAD_DIMS[0]} to {HEAD_DIMS[1]}, "
                         f"got {head_dim}")


def flash_attn_func(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0, softmax_scale: Optional[float] = None,
                    causal: bool = True, window_size: tuple[int, int] = (-1, -1), return_attn_probs: bool = False):
    """flash-attn's ``flash_attn_func`` on fastwave's kernels: q (B, N_q, H, D), k and v (B, N_k,
    H_kv, D) -> out (B, N_q, H, D); with ``return_attn_probs``, (out, lse (B, H, N_q), None) as
    flash-attn returns them (it never materialises the probabilities either). ``causal`` must be
    True and ``window_size`` (left, right) must have right 0 or -1: fastwave's kernels are causal.
    A left window of w keeps w + 1 keys (the query's own and w before it), flash-attn's meaning.
    ``dropout_p`` drops attention probabilities (training only, as flash-attn), seeded from torch's
    generator (``causal_attention``'s ``dropout_seed`` fixes it)."""
    if not causal:
        raise ValueError("causal must be True: fastwave's attention kernels are causal "
                         "(torch.nn.functional.scaled_dot_product_attention does the rest)")
    if (not isinstance(window_size, (tuple, list)) or len(window_size) != 2
            or any(isinstance(w, bool) or not isinstance(w, int) for w in window_size)):
        raise ValueError(f"window_size must be a pair of ints (left, right), got {window_size!r}")
    left, right = window_size
    if right not in (-1, 0) or left < -1:
        raise ValueError(f"window_size {tuple(window_size)}: right must be 0 or -1 (causal) and left -1 or >= 0")
    window = None if left < 0 else left + 1
    out, lse = causal_attention(q, k, v, softmax_scale, window, layout="bnhd", return_lse=True, dropout_p=dropout_p)
    return (out, lse, None) if return_attn_probs else out


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


def _band(n_k: int, window: Optional[int]) -> Optional[int]:
    """The window the kernels apply: None when it covers every key anyway."""
    return None if window is None or window >= n_k else window


def _head_contiguous(t: Tensor) -> Tensor:
    """The kernels take any batch / head / row strides but read D in unit steps."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("fastwave::causal_attention", mutates_args=())
def _forward(q: Tensor, k: Tensor, v: Tensor, scale: float, window: Optional[int], dropout_p: float,
             seed: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """q (B, H, N_q, D), k, v (B, H_kv, N_k, D) -> (out (B, H, N_q, D) contiguous, lse (B, H, N_q):
    fp32 (fp64 for fp64 inputs), the natural log-sum-exp of each row's scaled, masked scores, before
    dropout). ``seed``: an int64 (1,) tensor when dropout_p > 0."""
    window = _band(k.shape[2], window)
    if q.numel() == 0:
        return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))
    if not use_triton(q):
        if _use_cpu_flash(q, dropout_p):
            return _cpu_flash_forward(q, k, v, scale, window)
        lse = _reference_lse(q, k, scale, window)
        if dropout_p > 0:
            return _reference_dropout_forward(q, k, v, lse, scale, window, dropout_p, int(seed.item())), lse
        return causal_attention_reference(q, k, v, scale, window).contiguous(), lse
    from .kernels.flash_attention import attention_forward
    return attention_forward(_head_contiguous(q), _head_contiguous(k), _head_contiguous(v), scale, window,
                             dot_precision(q.dtype), dropout_p, seed)


@_forward.register_fake
def _(q, k, v, scale, window, dropout_p, seed):
    return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))


_CPU_FLASH_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_HAS_CPU_FLASH = hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward")
# A band or cache mask goes to aten in blocks of query rows holding at most this many scores (16 MB
# of fp32): a 5,024-position crop with a 512 window is 10 small masks, not one of 25 M scores.
FLASH_MASK_ELEMENTS = 1 << 22


def _use_cpu_flash(q: Tensor, dropout_p: float) -> bool:
    """Off the kernels, whether torch's CPU flash attention runs (else the written-out reference:
    fp64, for gradcheck against the kernels' formulas, and dropout, for the kernels' Philox draw)."""
    return _HAS_CPU_FLASH and q.device.type == "cpu" and q.dtype in _CPU_FLASH_DTYPES and dropout_p == 0


def _cpu_flash_blocks(q: Tensor, n_k: int, window: Optional[int]):
    """(query rows [i0, i1), their keys [j0, j1), aten's is_causal, its additive mask or None): one
    block for ordinary causal attention (aten's own mask, top-left aligned: the same when N_q = N_k),
    else blocks of rows whose masks hold at most FLASH_MASK_ELEMENTS scores. Every key a query sees
    lies in its block's range (and it sees itself: no row is all -inf), so each block's outputs are
    exact and the blocks' key gradients add up. ``window`` as ``_band`` leaves it."""
    n_q = q.shape[2]
    if window is None and n_q == n_k:
        yield 0, n_q, 0, n_k, True, None
        return
    offset = n_k - n_q
    if window is None:
        rows = FLASH_MASK_ELEMENTS // n_k
    else:  # rows x (rows + window - 1) keys at most; aten computes every score of a block, masked or
        # not, so blocks about a window tall keep the work near the band's (2x it, not N_q / window x).
        # At most 512 rows: then every row sees a key in aten's first 512-key split, which torch 2.4.0
        # needs (a row whose first split is all masked came out NaN there: pytorch#127055).
        rows = min(max(window, 128), 512, int((math.sqrt(window * window + 4 * FLASH_MASK_ELEMENTS) - window) / 2))
    rows = max(1, min(n_q, rows))
    for i0 in range(0, n_q, rows):
        i1 = min(i0 + rows, n_q)
        j0, j1 = (0 if window is None else max(0, i0 + offset - window + 1)), i1 + offset
        hidden = ~visible_keys(n_q, n_k, window, q.device, range(i0, i1), range(j0, j1))
        yield i0, i1, j0, j1, False, torch.zeros(hidden.shape, dtype=q.dtype, device=q.device).masked_fill_(
            hidden, float("-inf"))


def _every_head(t: Tensor, heads: int) -> Tensor:
    """k or v (B, H_kv, N, D) -> (B, H, N, D): head h reads head h // (H / H_kv), as ``_grouped``."""
    return t if t.shape[1] == heads else t.repeat_interleave(heads // t.shape[1], dim=1)


def _cpu_flash_forward(q, k, v, scale: float, window: Optional[int]) -> tuple[Tensor, Tensor]:
    heads = q.shape[1]
    q = _head_contiguous(q)  # aten reads D in unit steps and does not check
    k, v = (_every_head(_head_contiguous(t), heads) for t in (k, v))
    out, lse = q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))
    for i0, i1, j0, j1, is_causal, mask in _cpu_flash_blocks(q, k.shape[2], window):
        out[:, :, i0:i1], lse[:, :, i0:i1] = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q[:, :, i0:i1], k[:, :, j0:j1], v[:, :, j0:j1], 0.0, is_causal, attn_mask=mask, scale=scale)[:2]
    return out, lse


def _cpu_flash_backward(do, q, k, v, out, lse, scale: float, window: Optional[int]) -> tuple[Tensor, Tensor, Tensor]:
    batch, heads = q.shape[:2]
    kv_heads = k.shape[1]
    q = _head_contiguous(q)
    k, v = (_every_head(_head_contiguous(t), heads) for t in (k, v))
    dq = torch.empty_like(q)
    # overlapping blocks add into a key's gradient: in fp32, rounded to the inputs' dtype once
    dk, dv = (torch.zeros(t.shape, dtype=torch.float32, device=t.device) for t in (k, v))
    for i0, i1, j0, j1, is_causal, mask in _cpu_flash_blocks(q, k.shape[2], window):
        grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            do[:, :, i0:i1].contiguous(), q[:, :, i0:i1], k[:, :, j0:j1], v[:, :, j0:j1],
            out[:, :, i0:i1].contiguous(), lse[:, :, i0:i1].float().contiguous(), 0.0, is_causal,
            attn_mask=mask, scale=scale)
        dq[:, :, i0:i1] = grads[0]
        dk[:, :, j0:j1] += grads[1]
        dv[:, :, j0:j1] += grads[2]
    if kv_heads != heads:  # a group's heads read one key / value head: their gradients add up
        dk, dv = (g.reshape(batch, kv_heads, heads // kv_heads, *g.shape[2:]).sum(2) for g in (dk, dv))
    return dq, dk.to(k.dtype), dv.to(v.dtype)


def _grouped(q: Tensor, kv_heads: int) -> Tensor:
    """(B, H, N, D) -> (B, H_kv, H / H_kv, N, D), a view: head h is group h // (H / H_kv), member h % ..."""
    batch, heads = q.shape[:2]
    return q.reshape(batch, kv_heads, heads // kv_heads, *q.shape[2:])


def _row_blocks(q: Tensor, n_k: int, window: Optional[int]):
    """(query rows [i0, i1), their keys [j0, j1), the mask (i1 - i0, j1 - j0)) in blocks that keep
    B * H * rows * N_k near REFERENCE_BLOCK_ELEMENTS; query i sits at position i + N_k - N_q."""
    batch, heads, n_q, _ = q.shape
    offset = n_k - n_q
    rows = max(1, REFERENCE_BLOCK_ELEMENTS // max(1, batch * heads * n_k))
    for i0 in range(0, n_q, rows):
        i1 = min(i0 + rows, n_q)
        j0, j1 = (0 if window is None else max(0, i0 + offset - window + 1)), i1 + offset
        yield i0, i1, j0, j1, visible_keys(n_q, n_k, window, q.device, range(i0, i1), range(j0, j1))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _reference_lse(q, k, scale: float, window: Optional[int]) -> Tensor:
    """The log-sum-exp the kernel saves, written out in torch (a block of query rows at a time)."""
    dtype = _compute_dtype(q.dtype)
    lse = q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))
    grouped, lse_g = _grouped(q, k.shape[1]), _grouped(lse, k.shape[1])
    keys = k.unsqueeze(2)  # (B, H_kv, 1, N_k, D): broadcast over a group, never copied
    for i0, i1, j0, j1, mask in _row_blocks(q, k.shape[2], window):
        s = torch.matmul(grouped[..., i0:i1, :].to(dtype), keys[..., j0:j1, :].to(dtype).transpose(-1, -2)) * scale
        lse_g[..., i0:i1] = torch.logsumexp(s.masked_fill(~mask, float("-inf")), dim=-1)
    return lse


def _block_keep(seed: int, dropout_p: float, q: Tensor, n_k: int, i0: int, i1: int, j0: int, j1: int, dtype):
    """dropout_keep_scale for query rows [i0, i1) and keys [j0, j1), grouped as (B, H_kv, G, rows, keys)
    by the caller's reshape."""
    return dropout_keep_scale(seed, dropout_p, q.shape[0], q.shape[1], n_k, torch.arange(i0, i1, device=q.device),
                              torch.arange(j0, j1, device=q.device), dtype)


def _reference_dropout_forward(q, k, v, lse, scale: float, window: Optional[int], dropout_p: float, seed: int):
    """out with dropout, written out like the backward below (a block of query rows at a time)."""
    dtype = _compute_dtype(q.dtype)
    kv_heads = k.shape[1]
    q32, lse_g = _grouped(q.to(dtype), kv_heads), _grouped(lse, kv_heads).to(dtype)
    k32, v32 = (t.to(dtype).unsqueeze(2) for t in (k, v))
    out = torch.zeros_like(q32)
    for i0, i1, j0, j1, mask in _row_blocks(q, k.shape[2], window):
        s = torch.matmul(q32[..., i0:i1, :], k32[..., j0:j1, :].transpose(-1, -2)) * scale
        p = torch.exp(s - lse_g[..., i0:i1, None]).masked_fill(~mask, 0.0)
        keep = _grouped(_block_keep(seed, dropout_p, q, k.shape[2], i0, i1, j0, j1, dtype), kv_heads)
        out[..., i0:i1, :] = torch.matmul(p * keep, v32[..., j0:j1, :])
    return out.reshape(q.shape).to(q.dtype)


def causal_attention_reference_backward(do, q, k, v, out, lse, scale: float, window: Optional[int],
                                        need=(True, True, True), dropout_p: float = 0.0, seed: int = 0):
    """(dq, dk, dv) written out in torch from the forward's output and log-sum-exp, the formulas the
    kernels use (P = exp(s - lse), dS = P * (dO V^T - rowsum(dO * O)), dQ = scale dS K, dK = scale
    dS^T Q, dV = P^T dO, dK and dV summed over the heads of a group; with dropout, Z the kept scale:
    dV = (P Z)^T dO, dS = P * ((dO V^T) Z - rowsum(dO * O))), a block of query rows at a time: no
    autograd (inside a custom op it does not record) and no N x N matrix at once. ``need``: which of
    the three to compute (None for the others). ``window`` must already be None when it covers every
    key."""
    dtype = _compute_dtype(q.dtype)
    kv_heads = k.shape[1]
    q32, do32 = (_grouped(t.to(dtype), kv_heads) for t in (q, do))  # (B, H_kv, G, N_q, D)
    k32, v32 = (t.to(dtype).unsqueeze(2) for t in (k, v))  # (B, H_kv, 1, N_k, D)
    lse_g = _grouped(lse, kv_heads).to(dtype)
    delta = (do32 * _grouped(out.to(dtype), kv_heads)).sum(-1)
    dq = torch.zeros_like(q32) if need[0] else None
    dk = torch.zeros_like(k32) if need[1] else None
    dv = torch.zeros_like(v32) if need[2] else None
    for i0, i1, j0, j1, mask in _row_blocks(q, k.shape[2], window):
        q_i, do_i, k_j, v_j = q32[..., i0:i1, :], do32[..., i0:i1, :], k32[..., j0:j1, :], v32[..., j0:j1, :]
        s = torch.matmul(q_i, k_j.transpose(-1, -2)) * scale
        p = torch.exp(s - lse_g[..., i0:i1, None]).masked_fill(~mask, 0.0)
        keep = 1.0 if dropout_p == 0 else _grouped(_block_keep(seed, dropout_p, q, k.shape[2], i0, i1, j0, j1, dtype),
                                                   kv_heads)
        if dv is not None:
            dv[..., j0:j1, :] += torch.matmul((p * keep).transpose(-1, -2), do_i).sum(2, keepdim=True)
        ds = p * (torch.matmul(do_i, v_j.transpose(-1, -2)) * keep - delta[..., i0:i1, None])
        if dq is not None:
            dq[..., i0:i1, :] = torch.matmul(ds, k_j) * scale
        if dk is not None:
            dk[..., j0:j1, :] += torch.matmul(ds.transpose(-1, -2), q_i).sum(2, keepdim=True) * scale
    return (None if dq is None else dq.reshape(q.shape).to(q.dtype),
            None if dk is None else dk.squeeze(2).to(q.dtype), None if dv is None else dv.squeeze(2).to(q.dtype))


@torch.library.custom_op("fastwave::causal_attention_backward", mutates_args=())
def _backward(do: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, scale: float,
              window: Optional[int], dropout_p: float, seed: Optional[Tensor],
              needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    """-> (dq like q, dk like k, dv like v), contiguous in q's dtype; a gradient that ``needs`` does
    not ask for comes back empty."""
    window = _band(k.shape[2], window)
    need_q, need_k, need_v = needs
    if q.numel() == 0 or k.numel() == 0:
        grads = (q.new_zeros(q.shape), k.new_zeros(k.shape), v.new_zeros(v.shape))
    elif not use_triton(q):
        grads = (_cpu_flash_backward(do, q, k, v, out, lse, scale, window) if _use_cpu_flash(q, dropout_p) else
                 causal_attention_reference_backward(do, q, k, v, out, lse, scale, window, needs, dropout_p,
                                                     0 if seed is None else int(seed.item())))
    else:
        from .kernels.flash_attention import attention_backward
        grads = attention_backward(*(_head_contiguous(t) for t in (do, q, k, v, out)), lse, scale, window,
                                   dot_precision(q.dtype), dropout_p, seed, need_q=need_q, need_kv=need_k or need_v)
    # outputs must not alias one another (nor an input)
    return tuple(g.contiguous() if need else q.new_empty(0) for g, need in zip(grads, needs))


@_backward.register_fake
def _(do, q, k, v, out, lse, scale, window, dropout_p, seed, needs):
    return tuple(t.new_empty(t.shape) if need else q.new_empty(0) for t, need in zip((q, k, v), needs))


def _setup_context(ctx, inputs, output):
    q, k, v, scale, window, dropout_p, seed = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, seed)
    ctx.scale, ctx.window, ctx.dropout_p = scale, window, dropout_p
    ctx.mark_non_differentiable(lse)


def _autograd_backward(ctx, dout, dlse):
    q, k, v, out, lse, seed = ctx.saved_tensors
    needs = [bool(n) for n in ctx.needs_input_grad[:3]]
    grads = torch.ops.fastwave.causal_attention_backward(dout, q, k, v, out, lse, ctx.scale, ctx.window,
                                                         ctx.dropout_p, seed, needs)
    return (*(g if need else None for g, need in zip(grads, needs)), None, None, None, None)


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)
