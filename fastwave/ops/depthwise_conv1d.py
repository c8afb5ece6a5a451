"""Depthwise causal convolution with a state, as Mamba's short convolution (causal-conv1d) uses it:

    y = dilated_causal_conv1d(x, weight, bias=None, dilation=1, activation=None, initial_state=None)
    y, final_state = dilated_causal_conv1d(x, weight, ..., return_final_state=True)
        x (B, C, T), weight (C, K) with K in 1..4 (one filter per channel: groups = C), bias (C,)
        activation None or "silu"; initial_state (B, C, (K - 1) * dilation): the inputs before x
        (zeros if None); final_state: the last (K - 1) * dilation inputs, the state to continue from.
        y[b, c, t] = act(bias[c] + sum_k weight[c, k] * xx[b, c, t - (K - 1 - k) * dilation]),
        xx = initial_state followed by x.
    y = causal_conv1d_update(x, state, weight, bias=None, dilation=1, activation=None)
        one decode step: x (B, C) -> y (B, C); ``state`` (B, C, (K - 1) * dilation) is shifted in
        place and takes x, so a loop of steps equals the convolution of the whole sequence.

On CUDA the Triton kernels (``kernels/depthwise_conv.py``) run the convolution with the SiLU fused
and the state read in place; the backward recomputes z (never stored) for dz, runs the transposed
convolution for the input and state gradients, and reduces dz against the shifted inputs for the
weight and bias gradients. Elsewhere (and for fp64) the torch reference below.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ._args import autocast, check_dilation, check_kernel_size, check_shape, check_tensor, time_contiguous
from ._backend import use_triton

ACTIVATIONS = (None, "silu")


def _history(x, state, span: int):
    """xx = state then x, (B, C, span + T)."""
    if state is None:
        return F.pad(x, (span, 0))
    return torch.cat([state.to(x.dtype), x], dim=-1)


def _final_state(x, state, span: int):
    """The last ``span`` samples of state then x (a new tensor: a custom op's outputs may not alias
    its inputs), without building state then x when x alone is long enough."""
    length = x.shape[-1]
    if length >= span:
        return x[..., length - span:].clone(memory_format=torch.contiguous_format)
    return _history(x, state, span)[..., length:].clone(memory_format=torch.contiguous_format)


def depthwise_causal_conv1d_reference(x, weight, bias=None, dilation: int = 1, activation: Optional[str] = None,
                                      initial_state=None):
    """The plain-torch definition the kernels are held to -> (y (B, C, T), final_state (B, C, S))."""
    span = (weight.shape[1] - 1) * dilation
    history = _history(x, initial_state, span)
    z = F.conv1d(history, weight.unsqueeze(1), bias, dilation=dilation, groups=weight.shape[0])
    return (F.silu(z) if activation == "silu" else z), history[..., history.shape[-1] - span:]


def causal_conv1d_update_reference(x, state, weight, bias=None, dilation: int = 1, activation: Optional[str] = None):
    """One step of the reference: x (B, C) -> y (B, C), ``state`` shifted in place."""
    span = (weight.shape[1] - 1) * dilation
    history = torch.cat([state.to(x.dtype), x.unsqueeze(-1)], dim=-1)  # (B, C, span + 1)
    taps = history[..., ::dilation] if span else history  # positions 0, d, ..., (K - 1) d
    z = (taps * weight).sum(-1) + (0 if bias is None else bias)
    if span:
        state.copy_(history[..., 1:])
    return F.silu(z) if activation == "silu" else z


def check_depthwise(x, weight, bias, dilation, activation, state, state_name: str, x_rank: int) -> None:
    check_tensor(x, "x", x_rank)
    check_tensor(weight, "weight", 2, like=x)
    check_kernel_size(weight.shape[-1], "weight")
    check_shape(weight, "weight", (x.shape[1], None))
    if bias is not None:
        check_tensor(bias, "bias", 1, like=x)
        check_shape(bias, "bias", (x.shape[1],))
    check_dilation(dilation)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    if state is not None:
        check_tensor(state, state_name, 3, like=x)
        check_shape(state, state_name, (x.shape[0], x.shape[1], (weight.shape[1] - 1) * dilation))


def depthwise_causal_conv1d(x, weight, bias=None, dilation: int = 1, activation: Optional[str] = None,
                            initial_state=None, return_final_state: bool = False):
    """See the module docstring; differentiable in x, weight, bias and initial_state."""
    x, weight, bias, initial_state = autocast(x, weight, bias, initial_state)
    check_depthwise(x, weight, bias, dilation, activation, initial_state, "initial_state", 3)
    y, final_state = torch.ops.fastwave.depthwise_causal_conv1d(x, weight, bias, dilation, activation == "silu",
                                                                initial_state)
    return (y, final_state) if return_final_state else y


def causal_conv1d_update(x, state, weight, bias=None, dilation: int = 1, activation: Optional[str] = None):
    """One decode step (see the module docstring): x (B, C) -> y (B, C); ``state`` is updated in place."""
    if state is None:
        raise ValueError("state must be a (B, C, (K - 1) * dilation) tensor, updated in place")
    check_depthwise(x, weight, bias, dilation, activation, state, "state", 2)
    return torch.ops.fastwave.causal_conv1d_update(x, state, weight, bias, dilation, activation == "silu")


@torch.library.custom_op("fastwave::causal_conv1d_update", mutates_args=("state",))
def _update(x: torch.Tensor, state: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int,
            silu: bool) -> torch.Tensor:
    if x.numel() == 0 or not use_triton(x):
        return causal_conv1d_update_reference(x, state, weight, bias, dilation, "silu" if silu else None).contiguous()
    from .kernels.depthwise_conv import depthwise_step
    return depthwise_step(x, state, weight.contiguous(), bias, dilation, silu)


@_update.register_fake
def _(x, state, weight, bias, dilation, silu):
    return x.new_empty(x.shape)


@torch.library.custom_op("fastwave::depthwise_causal_conv1d", mutates_args=())
def _forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int, silu: bool,
             initial_state: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (y (B, C, T), final_state (B, C, (K - 1) * dilation)), contiguous."""
    span = (weight.shape[1] - 1) * dilation
    if x.numel() == 0 or not use_triton(x):
        y, _ = depthwise_causal_conv1d_reference(x, weight, bias, dilation, "silu" if silu else None, initial_state)
        return y.contiguous(), _final_state(x, initial_state, span)
    from .kernels.depthwise_conv import depthwise_forward
    y = depthwise_forward(time_contiguous(x), weight.contiguous(), bias, dilation, silu, initial_state)
    return y, _final_state(x, initial_state, span)


@_forward.register_fake
def _(x, weight, bias, dilation, silu, initial_state):
    return x.new_empty(x.shape), x.new_empty(x.shape[0], x.shape[1], (weight.shape[1] - 1) * dilation)


def depthwise_reference_backward(dy, x, weight, bias, dilation: int, silu: bool, initial_state):
    """(dx, dweight, dbias, d initial_state) written out with torch's convolution gradients (no
    autograd: inside a custom op it does not record)."""
    span = (weight.shape[1] - 1) * dilation
    history = _history(x, initial_state, span)
    channels = weight.shape[0]
    kernel = weight.unsqueeze(1)
    dz = dy
    if silu:
        z = F.conv1d(history, kernel, bias, dilation=dilation, groups=channels)
        gate = torch.sigmoid(z)
        dz = dy * gate * (1 + z * (1 - gate))
    d_history = F.conv_transpose1d(dz, kernel, dilation=dilation, groups=channels)
    dw = torch.nn.grad.conv1d_weight(history, kernel.shape, dz, dilation=dilation, groups=channels)[:, 0]
    return d_history[..., span:], dw, dz.sum(dim=(0, 2)), d_history[..., :span]


def _kernel_backward(dy, x, weight, bias, dilation: int, silu: bool, initial_state):
    """The same gradients from the kernels: dz (one pass recomputing z), the transposed convolution,
    and the weight / bias reductions of dz against the shifted inputs in torch (K of them)."""
    from .kernels.depthwise_conv import depthwise_forward, depthwise_input_grad

    span = (weight.shape[1] - 1) * dilation
    weight = weight.contiguous()
    dz = depthwise_forward(time_contiguous(x), weight, bias, dilation, silu, initial_state,
                           dy=time_contiguous(dy)) if silu else dy.contiguous()
    dx, dstate = depthwise_input_grad(dz, weight, dilation, need_state=initial_state is not None)
    history = _history(x, initial_state, span)
    length, dz32 = x.shape[-1], dz.float()
    dw = torch.stack([(dz32 * history[..., k * dilation:k * dilation + length]).sum(dim=(0, 2))
                      for k in range(weight.shape[1])], dim=1)
    return dx, dw.to(weight.dtype), dz32.sum(dim=(0, 2)).to(weight.dtype), dstate


@torch.library.custom_op("fastwave::depthwise_causal_conv1d_backward", mutates_args=())
def _backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: int,
              silu: bool, initial_state: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                          torch.Tensor]:
    """-> (dx, dweight, dbias, d initial_state (empty without one)), contiguous."""
    if x.numel() == 0 or not use_triton(x):
        grads = depthwise_reference_backward(dy, x, weight, bias, dilation, silu, initial_state)
    else:
        grads = _kernel_backward(dy, x, weight, bias, dilation, silu, initial_state)
    dx, dw, db, dstate = grads
    return (dx.contiguous(), dw.contiguous(), db.contiguous(),
            dstate.contiguous() if initial_state is not None else x.new_empty(0))


@_backward.register_fake
def _(dy, x, weight, bias, dilation, silu, initial_state):
    return (x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty(weight.shape[0]),
            initial_state.new_empty(initial_state.shape) if initial_state is not None else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, weight, bias, dilation, silu, initial_state = inputs
    ctx.save_for_backward(x, weight, bias, initial_state)
    ctx.dilation, ctx.silu = dilation, silu
    ctx.mark_non_differentiable(output[1])


def _autograd_backward(ctx, dy, dfinal):
    x, weight, bias, initial_state = ctx.saved_tensors
    dx, dw, db, dstate = torch.ops.fastwave.depthwise_causal_conv1d_backward(dy, x, weight, bias, ctx.dilation,
                                                                             ctx.silu, initial_state)
    return dx, dw, db if bias is not None else None, None, None, dstate if initial_state is not None else None


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)
