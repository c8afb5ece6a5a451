"""Checks of the Triton kernels against their float64 torch references, shared by the test suite and
the GPU benchmark (which checks the device before it times anything).

Each ``*_errors`` function runs the kernel (forced, on ``device`` in ``dtype``) forward and backward
and returns ``{output or gradient name: max |kernel - reference| / max |reference|}``; TOLERANCE
holds the bounds per dtype that the kernels promise (docs/kernels.md).
"""
from __future__ import annotations

import torch

from ._backend import backend
from .causal_attention import causal_attention, causal_attention_reference
from .decode_attention import decode_attention, decode_attention_reference
from .dilated_causal_conv1d import dilated_causal_conv1d, dilated_causal_conv1d_reference
from .wavenet_block import wavenet_block, wavenet_block_reference

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
BLOCK_NAMES = ("x", "w_dil", "b_dil", "w_res", "b_res", "w_skip", "b_skip", "cond", "skip_in")
COND_SHAPES = {"full": lambda b, g, t: (b, g, t), "global": lambda b, g, t: (1, g, 1),
               "per_row": lambda b, g, t: (b, g, 1), "per_time": lambda b, g, t: (1, g, t)}


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|, in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def leaves(tensors, dtype, device) -> list:
    """Copies that require grad (None stays None)."""
    return [None if t is None else t.to(device=device, dtype=dtype).detach().requires_grad_() for t in tensors]


def random_block(batch, residual, gate, skip, length, taps, cond=None, last=False, biases=True, skip_in=False,
                 seed=0):
    """-> (tensors {name: tensor or None} in BLOCK_NAMES order, upstream (d residual or None, d skip)),
    float32 on the CPU, with weights scaled like a trained layer's. cond: None or a COND_SHAPES key;
    skip_in: whether to add a running skip sum."""
    g = torch.Generator().manual_seed(seed)
    half = gate // 2

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    tensors = dict(
        x=rand(batch, residual, length),
        w_dil=rand(gate, residual, taps, scale=(residual * taps) ** -0.5),
        b_dil=rand(gate, scale=0.1) if biases else None,
        w_res=None if last else rand(residual, half, 1, scale=half ** -0.5),
        b_res=None if last or not biases else rand(residual, scale=0.1),
        w_skip=rand(skip, half, 1, scale=half ** -0.5),
        b_skip=rand(skip, scale=0.1) if biases else None,
        cond=None if cond is None else rand(*COND_SHAPES[cond](batch, gate, length)),
        skip_in=rand(batch, skip, length) if skip_in else None)
    upstream = (None if last else rand(batch, residual, length), rand(batch, skip, length))
    return tensors, upstream


def block_outputs_and_grads(fn, tensors: dict, upstream, dilation: int):
    """-> ((residual or None, skip), {name: gradient} for every tensor given)."""
    residual, skip = fn(*(tensors[n] for n in BLOCK_NAMES[:7]), dilation, tensors["cond"], tensors["skip_in"])
    outputs, grads_out = [skip], [upstream[1]]
    if residual is not None:
        outputs.append(residual)
        grads_out.append(upstream[0])
    present = [n for n in BLOCK_NAMES if tensors[n] is not None]
    grads = torch.autograd.grad(outputs, [tensors[n] for n in present], grads_out)
    return (residual, skip), dict(zip(present, grads))


def block_errors(tensors: dict, upstream, dilation: int, dtype: torch.dtype, device) -> dict[str, float]:
    kernel_in = dict(zip(BLOCK_NAMES, leaves([tensors[n] for n in BLOCK_NAMES], dtype, device)))
    kernel_up = [None if u is None else u.to(device, dtype) for u in upstream]
    with backend("triton"):
        (res, skip), grads = block_outputs_and_grads(wavenet_block, kernel_in, kernel_up, dilation)
    ref_in = dict(zip(BLOCK_NAMES, leaves([kernel_in[n] for n in BLOCK_NAMES], torch.float64, device)))
    ref_up = [None if u is None else u.double() for u in kernel_up]
    (res_ref, skip_ref), grads_ref = block_outputs_and_grads(wavenet_block_reference, ref_in, ref_up, dilation)
    if (res is None) != (res_ref is None) or grads.keys() != grads_ref.keys():
        raise AssertionError("kernel and reference returned different outputs or gradients")
    for name, grad in grads.items():
        if grad.shape != kernel_in[name].shape or grad.dtype != dtype:
            raise AssertionError(f"gradient of {name}: {grad.dtype} {tuple(grad.shape)}")
    errors = {"skip": rel_error(skip, skip_ref)}
    if res is not None:
        errors["residual"] = rel_error(res, res_ref)
    errors.update({"d" + name: rel_error(grads[name], grads_ref[name]) for name in grads})
    return errors


def conv_errors(x, weight, bias, dy, dilation: int, dtype: torch.dtype, device) -> dict[str, float]:
    inputs = leaves([x, weight, bias], dtype, device)
    names = [n for n, t in zip(("x", "weight", "bias"), inputs) if t is not None]
    present = [t for t in inputs if t is not None]
    with backend("triton"):
        y = dilated_causal_conv1d(*inputs, dilation)
        grads = torch.autograd.grad(y, present, dy.to(device, dtype))
    ref = leaves(inputs, torch.float64, device)
    y_ref = dilated_causal_conv1d_reference(*ref, dilation)
    grads_ref = torch.autograd.grad(y_ref, [t for t in ref if t is not None], dy.to(device, torch.float64))
    if y.dtype != dtype or any(g.dtype != dtype for g in grads):
        raise AssertionError("the kernel returned a different dtype than its input")
    errors = {"y": rel_error(y, y_ref)}
    errors.update({"d" + n: rel_error(g, r) for n, g, r in zip(names, grads, grads_ref)})
    return errors


def random_decode(batch, heads, max_len, head_dim, seed=0):
    """-> (q (B, H, D), k_cache, v_cache (B, H, L_max, D)), float32 on the CPU."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, heads, head_dim, generator=g), torch.randn(batch, heads, max_len, head_dim, generator=g),
            torch.randn(batch, heads, max_len, head_dim, generator=g))


def decode_attention_errors(q, k_cache, v_cache, cache_lens, dtype: torch.dtype, device, scale=None,
                            splits: int = 0) -> dict[str, float]:
    """The decode kernel (forward only: an inference op) against its reference on the same inputs in
    float64; splits 0 lets the op choose."""
    q, k_cache, v_cache = (t.to(device, dtype) for t in (q, k_cache, v_cache))
    cache_lens = cache_lens.to(device)
    with backend("triton"):
        out = decode_attention(q, k_cache, v_cache, cache_lens, scale, _splits=splits)
    ref = decode_attention_reference(q.double(), k_cache.double(), v_cache.double(), cache_lens, scale)
    if out.dtype != dtype or out.shape != q.shape:
        raise AssertionError(f"decode attention returned {out.dtype} {tuple(out.shape)} for {dtype} {tuple(q.shape)}")
    return {"out": rel_error(out, ref)}


def worst(errors: dict[str, float]) -> tuple[str, float]:
    name = max(errors, key=errors.get)
    return name, errors[name]


def random_attention(batch, heads, length, head_dim, seed=0, kv_heads=None, kv_length=None) -> tuple[torch.Tensor, ...]:
    """-> (q, k, v, d_out), float32 on the CPU: q and d_out (batch, heads, length, head_dim), k and v
    (batch, kv_heads or heads, kv_length or length, head_dim)."""
    g = torch.Generator().manual_seed(seed)
    kv_shape = (batch, kv_heads or heads, kv_length or length, head_dim)
    q, k, v = (torch.randn(*shape, generator=g) for shape in ((batch, heads, length, head_dim), kv_shape, kv_shape))
    return q, k, v, torch.randn(batch, heads, length, head_dim, generator=g)


def attention_errors(q, k, v, d_out, dtype: torch.dtype, device, scale=None, window=None,
                     dropout_p: float = 0.0, dropout_seed: int = 0) -> dict[str, float]:
    """causal_attention's kernel (forced) against the float64 reference: {"out", "dq", "dk", "dv"}.
    The inputs keep their layout (strided views stay strided) on the way to ``device`` / ``dtype``;
    with dropout both draw the same mask from ``dropout_seed``."""
    inputs = [t.to(device=device, dtype=dtype).detach().requires_grad_() for t in (q, k, v)]
    drop = dict(dropout_p=dropout_p, dropout_seed=dropout_seed) if dropout_p else {}
    with backend("triton"):
        out = causal_attention(*inputs, scale=scale, window=window, **drop)
        grads = torch.autograd.grad(out, inputs, d_out.to(device, dtype))
    ref = leaves(inputs, torch.float64, device)
    out_ref = causal_attention_reference(*ref, scale=scale, window=window, **drop)
    grads_ref = torch.autograd.grad(out_ref, ref, d_out.to(device, torch.float64))
    if (out.dtype != dtype or out.shape != q.shape
            or any(g.dtype != dtype or g.shape != t.shape for g, t in zip(grads, (q, k, v)))):
        raise AssertionError("the kernel returned a different dtype or shape than its input")
    errors = {"out": rel_error(out, out_ref)}
    errors.update({"d" + n: rel_error(g, r) for n, g, r in zip("qkv", grads, grads_ref)})
    return errors
