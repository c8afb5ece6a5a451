"""Dilated causal convolution: nn.Conv1d with (K - 1) * dilation zeros on the left, so output t sees
inputs t, t - d, ..., t - (K - 1) d and nothing later.

    y = dilated_causal_conv1d(x, weight, bias=None, dilation=1)
        x (B, C_in, T) or (C_in, T), weight (C_out, C_in, K) with K in 1..4, bias (C_out,) or None
        -> y (B, C_out, T) (or (C_out, T))

The Triton kernel (``kernels/shifted_matmul.py``) computes the whole convolution as one matrix
product against shifted views of x, never materialising the padded input or an im2col buffer; its
backward is the same kernel run with shifts forward in time (input gradient) and a split reduction
over batch and time (weight and bias gradients). ``DilatedCausalConv1d`` is a drop-in nn.Conv1d.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._args import (autocast, check_dilation, check_kernel_size, check_shape, check_tensor, rows_fit_int32,
                    time_contiguous)
from ._backend import dot_precision, use_triton


def dilated_causal_conv1d_reference(x, weight, bias=None, dilation: int = 1):
    """The plain-torch definition the kernel is held to."""
    pad = dilation * (weight.shape[-1] - 1)
    return F.conv1d(F.pad(x, (pad, 0)), weight, bias, dilation=dilation)


def dilated_causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                          dilation: int = 1, *, activation: Optional[str] = None, initial_state=None,
                          return_final_state: bool = False):
    """x (B, C_in, T) or (C_in, T), weight (C_out, C_in, K), K in 1..4 -> (B, C_out, T) or (C_out, T).

    A 2-D weight (C, K) is depthwise (one filter per channel, groups = C; Mamba's short conv): then
    x is (B, C, T), and ``activation`` ("silu"), ``initial_state`` (B, C, (K - 1) * dilation) and
    ``return_final_state`` (-> (y, final_state)) apply (``depthwise_conv1d.py``).

    Differentiable in x, weight and bias (and initial_state); fp16 / bf16 / fp32 (and fp64); any
    strides; under torch.autocast it computes in the autocast dtype."""
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        from .depthwise_conv1d import depthwise_causal_conv1d
        return depthwise_causal_conv1d(x, weight, bias, dilation, activation, initial_state, return_final_state)
    if activation is not None or initial_state is not None or return_final_state:
        raise ValueError("activation, initial_state and return_final_state are for a depthwise (C, K) weight; "
                         "this weight is dense (C_out, C_in, K)")
    x, weight, bias = autocast(x, weight, bias)
    check_tensor(x, "x", (2, 3))
    check_tensor(weight, "weight", 3, like=x)
    check_kernel_size(weight.shape[-1], "weight")
    check_shape(weight, "weight", (None, x.shape[-2], None))
    if bias is not None:
        check_tensor(bias, "bias", 1, like=x)
        check_shape(bias, "bias", (weight.shape[0],))
    check_dilation(dilation)
    if x.dim() == 2:
        return torch.ops.fastwave.dilated_causal_conv1d(x.unsqueeze(0), weight, bias, dilation).squeeze(0)
    return torch.ops.fastwave.dilated_causal_conv1d(x, weight, bias, dilation)


# The kernels see a (C_out, C_in, K) conv weight as a matrix over (tap, channel) columns:
# column k * C_in + c, the rows ``load_shifted`` reads (kernels/shifted_matmul.py).

def taps_matrix(weight):
    """(C_out, C_in, K) -> (C_out, K * C_in): the forward's weight."""
    out_channels, in_channels, taps = weight.shape
    return weight.permute(0, 2, 1).reshape(out_channels, taps * in_channels).contiguous()


def transposed_taps_matrix(weight):
    """(C_out, C_in, K) -> (C_in, K * C_out), column k * C_out + o: the input gradient's weight."""
    out_channels, in_channels, taps = weight.shape
    return weight.permute(1, 2, 0).reshape(in_channels, taps * out_channels).contiguous()


def weight_from_taps_matrix(matrix, shape, dtype):
    """The inverse of ``taps_matrix``, for weight gradients: (C_out, K * C_in) -> (C_out, C_in, K)."""
    out_channels, in_channels, taps = shape
    return matrix.view(out_channels, taps, in_channels).permute(0, 2, 1).to(dtype).contiguous()


@torch.library.custom_op("fastwave::dilated_causal_conv1d", mutates_args=())
def _forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int) -> torch.Tensor:
    if x.shape[-1] == 0:  # F.conv1d refuses an input shorter than its kernel
        return x.new_zeros(x.shape[0], weight.shape[0], 0)
    if x.numel() == 0 or not use_triton(x) or not rows_fit_int32(x, row_elements=weight.shape[0] * x.shape[-1]):
        return dilated_causal_conv1d_reference(x, weight, bias, dilation).contiguous()
    from .kernels.shifted_matmul import shifted_matmul
    return shifted_matmul(taps_matrix(weight), time_contiguous(x), weight.shape[-1], dilation, -1,
                          dot_precision(x.dtype), bias=bias)


@_forward.register_fake
def _(x, weight, bias, dilation):
    return x.new_empty(x.shape[0], weight.shape[0], x.shape[2])


@torch.library.custom_op("fastwave::dilated_causal_conv1d_backward", mutates_args=())
def _backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dilation: int,
              need_input: bool, need_weight: bool, need_bias: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (dx, dweight, dbias); a gradient that is not needed comes back empty."""
    if dy.numel() == 0 or x.numel() == 0 or not use_triton(dy) or not rows_fit_int32(dy, x, row_elements=x[0].numel()):
        return _reference_backward(dy, x, weight, dilation, need_input, need_weight, need_bias)
    from .kernels.shifted_matmul import shifted_matmul, shifted_outer_sum
    taps = weight.shape[-1]
    dy, precision = time_contiguous(dy), dot_precision(dy.dtype)
    dx, dw, db = dy.new_empty(0), dy.new_empty(0), dy.new_empty(0)  # outputs must not alias
    if need_input:  # dx[c, t] = sum_{k, o} w[o, c, k] dy[o, t + (K - 1 - k) d]
        dx = shifted_matmul(transposed_taps_matrix(weight), dy, taps, dilation, +1, precision)
    if need_weight or need_bias:
        x = time_contiguous(x)
        if need_weight:
            dw_flat, db32 = shifted_outer_sum(dy, x, taps, dilation, -1, precision, row_sum=need_bias)
            dw = weight_from_taps_matrix(dw_flat, weight.shape, weight.dtype)
        else:
            db32 = dy.sum(dim=(0, 2), dtype=torch.float32)
        if need_bias:
            db = db32.to(weight.dtype)
    return dx, dw, db


def dilated_causal_conv1d_reference_backward(dy, x, weight, dilation: int, need=(True, True, True)):
    """(dx, dweight, dbias) of the reference, written out with torch's convolution gradients: no
    autograd (inside a custom op it does not record) and no functorch (which tensor-subclass modes
    such as FlopCounterMode cannot see through). ``need``: which of the three to compute."""
    pad = dilation * (weight.shape[-1] - 1)
    padded = F.pad(x, (pad, 0))
    dx = torch.nn.grad.conv1d_input(padded.shape, weight, dy, dilation=dilation)[..., pad:] if need[0] else None
    dw = torch.nn.grad.conv1d_weight(padded, weight.shape, dy, dilation=dilation) if need[1] else None
    db = dy.sum(dim=(0, 2)) if need[2] else None
    return dx, dw, db


def _reference_backward(dy, x, weight, dilation, need_input, need_weight, need_bias):
    if x.shape[-1] == 0:  # nothing reached the output
        grads = (torch.zeros_like(x), torch.zeros_like(weight), weight.new_zeros(weight.shape[0]))
        return tuple(g if need else dy.new_empty(0) for g, need in zip(grads, (need_input, need_weight, need_bias)))
    grads = dilated_causal_conv1d_reference_backward(dy, x, weight, dilation, (need_input, need_weight, need_bias))
    return tuple(g.contiguous() if g is not None else dy.new_empty(0) for g in grads)


@_backward.register_fake
def _(dy, x, weight, dilation, need_input, need_weight, need_bias):
    return (x.new_empty(x.shape) if need_input else dy.new_empty(0),
            weight.new_empty(weight.shape) if need_weight else dy.new_empty(0),
            weight.new_empty(weight.shape[0]) if need_bias else dy.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, weight, bias, dilation = inputs
    ctx.save_for_backward(x, weight)
    ctx.dilation, ctx.has_bias = dilation, bias is not None


def _autograd_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    dx, dw, db = torch.ops.fastwave.dilated_causal_conv1d_backward(
        dy, x, weight, ctx.dilation, need_x, need_w, need_b and ctx.has_bias)
    return (dx if need_x else None, dw if need_w else None,
            db if need_b and ctx.has_bias else None, None)


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


class DilatedCausalConv1d(nn.Conv1d):
    """A drop-in ``nn.Conv1d`` (same constructor, parameters and state dict) whose padding is causal:
    output t depends on inputs up to t only, and the output is as long as the input.

    ``padding`` must be 0 or "causal" (the module pads), and ``stride`` and ``groups`` must be 1;
    kernel_size is 1 to 4. Runs the Triton kernel on CUDA, the torch reference elsewhere."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        def single(value, name):
            if isinstance(value, (tuple, list)):
                if len(value) != 1:
                    raise ValueError(f"DilatedCausalConv1d {name} must be an int or a 1-tuple, got {value!r}")
                value = value[0]
            return value
        kernel_size, stride, dilation = single(kernel_size, "kernel_size"), single(stride, "stride"), single(dilation, "dilation")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
            raise ValueError(f"DilatedCausalConv1d kernel_size must be an int, got {kernel_size!r}")
        check_kernel_size(kernel_size, "DilatedCausalConv1d")
        check_dilation(dilation)
        if stride != 1:
            raise ValueError(f"DilatedCausalConv1d needs stride 1 (a causal conv keeps every step), got {stride!r}")
        if padding not in (0, (0,), "causal"):
            raise ValueError(f"DilatedCausalConv1d pads causally itself: padding must be 0 or 'causal', got {padding!r}")
        if groups != 1:
            raise ValueError(f"DilatedCausalConv1d supports groups=1 only, got {groups!r}")
        if padding_mode != "zeros":
            raise ValueError(f"DilatedCausalConv1d pads with zeros, got padding_mode={padding_mode!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=dilation,
                         groups=1, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T) or (C_in, T) -> (B, C_out, T) or (C_out, T)."""
        return dilated_causal_conv1d(x, self.weight, self.bias, self.dilation[0])

    def extra_repr(self) -> str:
        return super().extra_repr() + ", causal"
