"""Decode attention: the attention of one new query per sequence against its KV cache, the step of
autoregressive generation with a Transformer.

    out = decode_attention(q, k_cache, v_cache, cache_lens, scale=None)
        q (B, H, D); k_cache, v_cache (B, H, L_max, D); cache_lens (B,) int32 or int64, on q's device
        -> out (B, H, D) in q's dtype:
        out[b, h] = softmax(scale * k_cache[b, h, :n] @ q[b, h]) @ v_cache[b, h, :n],
        n = clamp(cache_lens[b], 0, L_max), scale = 1 / sqrt(D) by default.

- Lengths are never read on the host (that would cost a device sync per generated sample) and are
  therefore not validated: the kernel clamps each to [0, L_max], so it never reads outside the
  cache, and a row of length 0 gives zeros (not NaN). The reference has exactly these semantics.
- The result does not depend on the order of the slots [0, n): a ring-buffered cache may hold its
  entries in any order, as long as the first n slots are the ones to attend to.
- The caches may be views of a larger preallocated buffer (any strides on B, H and L); D must have
  unit stride, or the cache is copied (contiguous) first. q may have any strides.
- Accumulation is fp32. fp16 / bf16 / fp32 run the Triton kernel on CUDA (``kernels/
  decode_attention.py``: the cache read in slices by parallel programs, then a log-sum-exp
  combine); float64, and heads wider than 256, run the reference. The number of slices depends
  only on shapes and the device, so a decode step can be captured in a CUDA graph.
- An inference op: it has no autograd formula. Called on tensors that require grad it still
  computes the output (which then requires grad), and torch.library makes any backward through it
  raise "Trying to backward through fastwave.decode_attention.default but no autograd formula was
  registered": an error, never a silently wrong gradient. For training, use causal attention
  over the whole sequence.
"""
import math

import torch

from ._args import autocast, check_shape, check_tensor
from ._backend import use_triton

INT_DTYPES = (torch.int32, torch.int64)
# The widest head the kernel holds in registers; wider ones run the reference.
MAX_HEAD_DIM = 256


def decode_attention_reference(q, k_cache, v_cache, cache_lens, scale: float | None = None):
    """The plain-torch definition the kernel is held to: a masked softmax over all L_max slots, with
    the mask from the clamped lengths; zeros for an empty row. Computes in fp32 (fp64 for fp64)."""
    head_dim, max_len = q.shape[-1], k_cache.shape[2]
    scale = head_dim ** -0.5 if scale is None else scale
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    scores = torch.einsum("bhd,bhld->bhl", q.to(compute), k_cache.to(compute)) * scale
    lens = cache_lens.clamp(0, max_len)
    mask = (torch.arange(max_len, device=q.device) < lens[:, None])[:, None, :]  # (B, 1, L)
    probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    probs = torch.where(mask.any(-1, keepdim=True), probs, 0.0)  # an empty row is all -inf: NaN
    return torch.einsum("bhl,bhld->bhd", probs, v_cache.to(compute)).to(q.dtype)


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_lens: torch.Tensor,
                     scale: float | None = None, *, _splits: int = 0) -> torch.Tensor:
    """One query per (batch row, head) against the first cache_lens[b] cache slots; shapes and
    semantics in the module docstring. Under torch.autocast it computes in the autocast dtype.
    ``_splits`` (tests) forces the number of cache slices the kernel reads; 0 chooses it."""
    q, k_cache, v_cache = autocast(q, k_cache, v_cache)
    _check_args(q, k_cache, v_cache, cache_lens, scale)
    if isinstance(_splits, bool) or not isinstance(_splits, int) or _splits < 0:
        raise ValueError(f"_splits must be an int >= 0, got {_splits!r}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return torch.ops.fastwave.decode_attention(q, k_cache, v_cache, cache_lens, scale, _splits)


def _check_args(q, k_cache, v_cache, cache_lens, scale):
    check_tensor(q, "q", 3)
    batch, heads, head_dim = q.shape
    check_tensor(k_cache, "k_cache", 4, like=q)
    check_shape(k_cache, "k_cache", (batch, heads, None, head_dim))
    check_tensor(v_cache, "v_cache", 4, like=q)
    check_shape(v_cache, "v_cache", tuple(k_cache.shape))
    if not isinstance(cache_lens, torch.Tensor):
        raise TypeError(f"cache_lens must be a torch.Tensor, got {type(cache_lens).__name__}")
    if cache_lens.dtype not in INT_DTYPES:
        raise TypeError(f"cache_lens must be int32 or int64, got {cache_lens.dtype}")
    check_shape(cache_lens, "cache_lens", (batch,))
    if cache_lens.device != q.device:
        raise ValueError(f"cache_lens is on {cache_lens.device} but the input is on {q.device}")
    if head_dim == 0:
        raise ValueError("q must have a head dimension D >= 1, got 0")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if scale is not None and not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale!r}")


def _unit_stride_d(t: torch.Tensor) -> torch.Tensor:
    """The kernel reads head vectors in unit steps (coalesced); any other strides are free."""
    return t if t.stride(-1) == 1 else t.contiguous()


@torch.library.custom_op("fastwave::decode_attention", mutates_args=())
def _forward(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_lens: torch.Tensor,
             scale: float, splits: int) -> torch.Tensor:
    """splits: how many slices the kernel reads each cache row in; 0 chooses (kernels.decode_attention.num_splits)."""
    if q.numel() == 0:
        return q.new_empty(q.shape)
    if k_cache.shape[2] == 0:
        return q.new_zeros(q.shape)
    if not use_triton(q) or q.shape[-1] > MAX_HEAD_DIM:
        return decode_attention_reference(q, k_cache, v_cache, cache_lens, scale).contiguous()
    from .kernels.decode_attention import decode_attention_forward
    return decode_attention_forward(q, _unit_stride_d(k_cache), _unit_stride_d(v_cache), cache_lens, scale, splits)


@_forward.register_fake
def _(q, k_cache, v_cache, cache_lens, scale, splits):
    return q.new_empty(q.shape)
