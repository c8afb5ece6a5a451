"""One WaveNet residual layer (the layer of ``fastwave.WaveNet``):

    z = dilated_causal_conv1d(x, w_dil, b_dil, dilation) + cond     (G = 2H gate channels)
    h = tanh(z[:, :H]) * sigmoid(z[:, H:])
    residual = x + w_res @ h + b_res,   skip = skip_in + w_skip @ h + b_skip   (1x1 convolutions)

    residual, skip = wavenet_block(x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, dilation, cond=None,
                                   skip_in=None)
        x (B, R, T); w_dil (G, R, K), K in 1..4; b_dil (G,); w_res (R, H) or (R, H, 1); b_res (R,);
        w_skip (S, H) or (S, H, 1); b_skip (S,); cond broadcastable as (B or 1, G, T or 1) or None;
        skip_in (B, S, T) or None: the running sum of the previous layers' skips, added in the
        kernel (a WaveNet sums every layer's skip; fusing the sum saves a read and a write of it)
        -> residual (B, R, T) (None when w_res is None: a last layer), skip (B, S, T)
    Any bias may be None.

On CUDA the forward is one Triton kernel that reads x once and writes the two outputs (no G x T
intermediate in memory). The backward saves nothing but the inputs: it recomputes the gate from x,
writes dz (B, G, T) and h (B, H, T), and runs the weight and input gradients as shifted products
(see ``kernels/wavenet_block.py``). First-order gradients only. Layers wider than the kernel holds
in registers (residual or skip channels past 256) and batch rows past 2**31 elements run the torch
reference inside the same op.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ._args import (autocast, check_dilation, check_kernel_size, check_shape, check_tensor, rows_fit_int32,
                    time_contiguous)
from ._backend import dot_precision, use_triton
from .dilated_causal_conv1d import (dilated_causal_conv1d_reference, dilated_causal_conv1d_reference_backward,
                                    taps_matrix, transposed_taps_matrix, weight_from_taps_matrix)

Tensor = torch.Tensor
GRAD_NAMES = ("x", "w_dil", "b_dil", "w_res", "b_res", "w_skip", "b_skip", "cond")  # from the backward op


def _as_1x1(w):
    return w if w.dim() == 3 else w.unsqueeze(-1)


def wavenet_block_reference(x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, dilation: int, cond=None,
                            skip_in=None):
    """The plain-torch definition the kernel is held to; same arguments and results."""
    z = dilated_causal_conv1d_reference(x, w_dil, b_dil, dilation)
    if cond is not None:
        z = z + cond
    a, b = z.chunk(2, dim=1)
    h = torch.tanh(a) * torch.sigmoid(b)
    residual = None if w_res is None else x + F.conv1d(h, _as_1x1(w_res), b_res)
    skip = F.conv1d(h, _as_1x1(w_skip), b_skip)
    return residual, (skip if skip_in is None else skip_in + skip)


def wavenet_block(x: Tensor, w_dil: Tensor, b_dil: Optional[Tensor], w_res: Optional[Tensor],
                  b_res: Optional[Tensor], w_skip: Tensor, b_skip: Optional[Tensor], dilation: int,
                  cond: Optional[Tensor] = None, skip_in: Optional[Tensor] = None) -> tuple[Optional[Tensor], Tensor]:
    """The fused layer; shapes in the module docstring. Differentiable in every tensor argument;
    under torch.autocast it computes in the autocast dtype."""
    x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, cond, skip_in = autocast(
        x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, cond, skip_in)
    _check_block_args(x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, dilation, cond, skip_in)
    half = w_dil.shape[0] // 2
    w_res2 = None if w_res is None else w_res.reshape(x.shape[1], half)
    w_skip2 = w_skip.reshape(w_skip.shape[0], half)
    residual, skip = torch.ops.fastwave.wavenet_block(x, w_dil, b_dil, w_res2, b_res, w_skip2, b_skip, dilation,
                                                      cond, skip_in)
    return (residual if w_res is not None else None), skip


def _check_block_args(x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, dilation, cond, skip_in):
    check_tensor(x, "x", 3)
    batch, residual, length = x.shape
    check_tensor(w_dil, "w_dil", 3, like=x)
    check_kernel_size(w_dil.shape[-1], "w_dil")
    check_shape(w_dil, "w_dil", (None, residual, None))
    gate = w_dil.shape[0]
    if gate % 2:
        raise ValueError(f"w_dil must have an even number of output channels (tanh and sigmoid halves), got {gate}")
    half = gate // 2
    check_tensor(w_skip, "w_skip", (2, 3), like=x)
    check_shape(w_skip, "w_skip", (None, half) + ((1,) if w_skip.dim() == 3 else ()))
    if w_res is not None:
        check_tensor(w_res, "w_res", (2, 3), like=x)
        check_shape(w_res, "w_res", (residual, half) + ((1,) if w_res.dim() == 3 else ()))
    elif b_res is not None:
        raise ValueError("b_res was given without w_res")
    for name, bias, size in (("b_dil", b_dil, gate), ("b_res", b_res, residual), ("b_skip", b_skip, w_skip.shape[0])):
        if bias is not None:
            check_tensor(bias, name, 1, like=x)
            check_shape(bias, name, (size,))
    check_dilation(dilation)
    if cond is not None:
        check_tensor(cond, "cond", 3, like=x)
        if cond.shape[0] not in (1, batch) or cond.shape[1] != gate or cond.shape[2] not in (1, length):
            raise ValueError(f"cond must broadcast as ({batch} or 1, {gate}, {length} or 1), got {tuple(cond.shape)}")
    if skip_in is not None:
        check_tensor(skip_in, "skip_in", 3, like=x)
        check_shape(skip_in, "skip_in", (batch, w_skip.shape[0], length))


@torch.library.custom_op("fastwave::wavenet_block", mutates_args=())
def _forward(x: Tensor, w_dil: Tensor, b_dil: Optional[Tensor], w_res: Optional[Tensor], b_res: Optional[Tensor],
             w_skip: Tensor, b_skip: Optional[Tensor], dilation: int, cond: Optional[Tensor],
             skip_in: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """-> (residual, or an empty tensor without w_res; skip). 1x1 weights are 2-D here."""
    if x.shape[-1] == 0:  # F.conv1d refuses an input shorter than its kernel
        return (x.new_zeros(x.shape) if w_res is not None else x.new_empty(0)), x.new_zeros(x.shape[0], w_skip.shape[0], 0)
    if x.numel() == 0 or not use_triton(x) or not _kernel_fits(x, w_dil, w_skip, cond, skip_in):
        residual, skip = wavenet_block_reference(x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, dilation, cond, skip_in)
        # Contiguous like the kernel's outputs (and the fake's): x + ... would copy x's layout.
        return (residual.contiguous() if residual is not None else x.new_empty(0)), skip.contiguous()
    from .kernels.wavenet_block import wavenet_block_forward
    b_dil, b_res, b_skip = _biases(w_dil, w_res, w_skip, b_dil, b_res, b_skip)
    residual, skip = wavenet_block_forward(
        time_contiguous(x), taps_matrix(w_dil), b_dil, _contiguous(w_res), b_res, w_skip.contiguous(), b_skip,
        w_dil.shape[-1], dilation, cond, skip_in, dot_precision(x.dtype))
    return (residual if residual is not None else x.new_empty(0)), skip


@_forward.register_fake
def _(x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, dilation, cond, skip_in):
    residual = x.new_empty(x.shape) if w_res is not None else x.new_empty(0)
    return residual, x.new_empty(x.shape[0], w_skip.shape[0], x.shape[2])


def _kernel_fits(x, w_dil, w_skip, *activations) -> bool:
    """Whether the fused kernels take this layer: channel counts they hold in registers, and offsets
    within a batch row (G x T of dz included) that fit in int32."""
    from .kernels.wavenet_block import fits_fused
    return (fits_fused(x.shape[1], w_skip.shape[0])
            and rows_fit_int32(x, *activations, row_elements=max(w_dil.shape[0], w_skip.shape[0]) * x.shape[-1]))


def _contiguous(w):
    return None if w is None else w.contiguous()


def _biases(w_dil, w_res, w_skip, b_dil, b_res, b_skip):
    """Missing biases as zeros: the kernels always add one."""
    def zeros_if_none(bias, rows):
        return bias if bias is not None else w_dil.new_zeros(rows)
    return (zeros_if_none(b_dil, w_dil.shape[0]),
            None if w_res is None else zeros_if_none(b_res, w_res.shape[0]),
            zeros_if_none(b_skip, w_skip.shape[0]))


@torch.library.custom_op("fastwave::wavenet_block_backward", mutates_args=())
def _backward(dres: Optional[Tensor], dskip: Tensor, x: Tensor, w_dil: Tensor, b_dil: Optional[Tensor],
              w_res: Optional[Tensor], w_skip: Tensor, dilation: int, cond: Optional[Tensor],
              needs: list[bool]) -> list[Tensor]:
    """Gradients in GRAD_NAMES order; one that ``needs`` does not ask for comes back empty."""
    if x.shape[-1] == 0:  # nothing reached the outputs
        return _needed({}, needs, x, w_dil, w_res, w_skip, cond)
    if dskip.numel() == 0 or x.numel() == 0 or not use_triton(dskip) or not _kernel_fits(x, w_dil, w_skip, cond, dres, dskip):
        return _reference_backward(dres, dskip, x, w_dil, b_dil, w_res, w_skip, dilation, cond, needs)
    from .kernels.shifted_matmul import shifted_matmul, shifted_outer_sum
    from .kernels.wavenet_block import wavenet_block_gate_backward
    need = dict(zip(GRAD_NAMES, needs))
    gate_channels, taps = w_dil.shape[0], w_dil.shape[-1]
    precision = dot_precision(x.dtype)
    x, dskip = time_contiguous(x), time_contiguous(dskip)
    dres = None if w_res is None or dres is None else time_contiguous(dres)
    b_dil = b_dil if b_dil is not None else w_dil.new_zeros(gate_channels)
    dz, gate = wavenet_block_gate_backward(
        x, taps_matrix(w_dil), b_dil, None if w_res is None else w_res.t().contiguous(), w_skip.t().contiguous(),
        cond, dres, dskip, taps, dilation, precision)
    grads = {}
    if need["x"]:  # through the conv (its transpose: shifts forward in time), plus the identity path
        grads["x"] = shifted_matmul(transposed_taps_matrix(w_dil), dz, taps, dilation, +1, precision, add=dres)
    if need["w_dil"] or need["b_dil"]:
        dw, db = shifted_outer_sum(dz, x, taps, dilation, -1, precision, row_sum=True)
        grads["w_dil"] = weight_from_taps_matrix(dw, w_dil.shape, w_dil.dtype)
        grads["b_dil"] = db
    for name, upstream in (("res", dres), ("skip", dskip)):
        if upstream is not None and (need["w_" + name] or need["b_" + name]):
            dw, db = shifted_outer_sum(upstream, gate, 1, 1, -1, precision, row_sum=True)
            grads["w_" + name], grads["b_" + name] = dw, db
    if need["cond"] and cond is not None:
        grads["cond"] = _reduce_to(dz, cond.shape)
    return _needed(grads, needs, x, w_dil, w_res, w_skip, cond)


def _reduce_to(grad, shape):
    """Sum a (B, G, T) gradient over the dimensions a broadcast input had size 1 in."""
    dims = [i for i, (g, s) in enumerate(zip(grad.shape, shape)) if s == 1 and g != 1]
    return grad.sum(dim=dims, keepdim=True) if dims else grad


def _reference_backward(dres, dskip, x, w_dil, b_dil, w_res, w_skip, dilation, cond, needs):
    """The reference's gradients written out (no autograd or functorch inside a custom op: see
    dilated_causal_conv1d_reference_backward); the same formulas as the kernels, in torch."""
    need = dict(zip(GRAD_NAMES, needs))
    half = w_dil.shape[0] // 2
    z = dilated_causal_conv1d_reference(x, w_dil, b_dil, dilation)
    if cond is not None:
        z = z + cond
    th, sg = torch.tanh(z[:, :half]), torch.sigmoid(z[:, half:])
    gate = th * sg
    dgate = torch.einsum("sh,bst->bht", w_skip, dskip)
    if dres is not None:
        dgate = dgate + torch.einsum("rh,brt->bht", w_res, dres)
    dz = torch.cat([dgate * sg * (1 - th * th), dgate * gate * (1 - sg)], dim=1)
    dx, dw_dil, db_dil = dilated_causal_conv1d_reference_backward(
        dz, x, w_dil, dilation, (need["x"], need["w_dil"], need["b_dil"]))
    grads = {"x": dx if dres is None or dx is None else dx + dres, "w_dil": dw_dil, "b_dil": db_dil,
             "cond": None if cond is None else _reduce_to(dz, cond.shape)}
    for name, upstream in (("res", dres), ("skip", dskip)):
        if upstream is not None:
            grads["w_" + name] = torch.einsum("bot,bht->oh", upstream, gate)
            grads["b_" + name] = upstream.sum(dim=(0, 2))
    return _needed(grads, needs, x, w_dil, w_res, w_skip, cond)


def _needed(grads: dict, needs, x, w_dil, w_res, w_skip, cond) -> list[Tensor]:
    """The backward op's outputs: each needed gradient contiguous in its input's dtype (zeros when
    nothing reached it), an empty tensor for the others."""
    shapes = _grad_shapes(x, w_dil, w_res, w_skip, cond)
    out = []
    for name, need in zip(GRAD_NAMES, needs):
        grad = grads.get(name)
        if not need or shapes[name] is None:
            out.append(x.new_empty(0))
        elif grad is None:
            out.append(x.new_zeros(shapes[name]))
        else:
            out.append(grad.to(x.dtype).contiguous())
    return out


def _grad_shapes(x, w_dil, w_res, w_skip, cond) -> dict:
    return {"x": x.shape, "w_dil": w_dil.shape, "b_dil": w_dil.shape[:1],
            "w_res": None if w_res is None else w_res.shape, "b_res": None if w_res is None else w_res.shape[:1],
            "w_skip": w_skip.shape, "b_skip": w_skip.shape[:1], "cond": None if cond is None else cond.shape}


@_backward.register_fake
def _(dres, dskip, x, w_dil, b_dil, w_res, w_skip, dilation, cond, needs):
    shapes = _grad_shapes(x, w_dil, w_res, w_skip, cond)
    return [x.new_empty(shapes[k]) if need and shapes[k] is not None else x.new_empty(0)
            for k, need in zip(GRAD_NAMES, needs)]


def _setup_context(ctx, inputs, output):
    x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, dilation, cond, skip_in = inputs
    ctx.save_for_backward(x, w_dil, b_dil, w_res, w_skip, cond)
    ctx.has_skip_in = skip_in is not None
    ctx.dilation = dilation
    ctx.present = [t is not None for t in (x, w_dil, b_dil, w_res, b_res, w_skip, b_skip, cond)]


def _autograd_backward(ctx, dres, dskip):
    x, w_dil, b_dil, w_res, w_skip, cond = ctx.saved_tensors
    flags = ctx.needs_input_grad
    needs = [bool(n) and p for n, p in zip(flags[:7] + flags[8:9], ctx.present)]
    if w_res is None or dres is None or dres.numel() == 0:
        dres = None
    grads = torch.ops.fastwave.wavenet_block_backward(dres, dskip, x, w_dil, b_dil, w_res, w_skip,
                                                      ctx.dilation, cond, needs)
    out = [g if need else None for g, need in zip(grads, needs)]
    d_skip_in = dskip if ctx.has_skip_in and ctx.needs_input_grad[9] else None  # skip_in enters as a sum
    return (*out[:7], None, out[7], d_skip_in)


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)
