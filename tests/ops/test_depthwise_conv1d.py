"""Depthwise causal conv (dilated_causal_conv1d with a (C, K) weight) and its decode step: the Triton
kernels (forced; the interpreter on CPU) against the float64 reference, the reference against a
written-out definition, a loop of steps against the whole sequence, registration and bad input."""
import pytest
import torch

from fastwave import ops
from fastwave.ops.depthwise_conv1d import causal_conv1d_update_reference, depthwise_causal_conv1d_reference
from fastwave.ops.verify import TOLERANCE, rel_error, worst
from ops_cases import kernel_targets, needs_triton

pytestmark = needs_triton
DEVICE = kernel_targets()[0][0]

# (batch, channels, length, taps, dilation, bias, silu, state): the interpreter's tiles are 4
# channels x 16 steps, so these cross tile edges in both; a state longer than the sequence.
CASES = [
    (2, 6, 37, 4, 1, True, True, True),
    (1, 5, 20, 3, 4, False, False, True),
    (3, 4, 5, 2, 8, True, True, True),  # state (8) longer than x (5)
    (2, 7, 33, 4, 2, True, False, False),
    (1, 3, 17, 1, 1, False, True, False),  # K = 1: no state at all
]


def case(batch, channels, length, taps, dilation, bias, state, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, channels, length, generator=g), torch.randn(channels, taps, generator=g) * 0.7,
            torch.randn(channels, generator=g) * 0.3 if bias else None,
            torch.randn(batch, channels, (taps - 1) * dilation, generator=g) if state else None,
            torch.randn(batch, channels, length, generator=g))


def written_out(x, weight, bias, dilation, silu, state):
    """y[b, c, t] = act(bias[c] + sum_k w[c, k] xx[b, c, t - (K - 1 - k) d]), xx = state then x."""
    taps, span = weight.shape[1], (weight.shape[1] - 1) * dilation
    history = torch.cat([state if state is not None else x.new_zeros(*x.shape[:2], span), x], dim=-1)
    y = torch.zeros_like(x)
    for t in range(x.shape[-1]):
        for k in range(taps):
            y[:, :, t] += weight[:, k] * history[:, :, span + t - (taps - 1 - k) * dilation]
    y = y + (0 if bias is None else bias[:, None])
    return torch.nn.functional.silu(y) if silu else y


@pytest.mark.parametrize("shape", CASES)
def test_reference_matches_the_written_out_definition(shape):
    batch, channels, length, taps, dilation, bias, silu, state = shape
    x, w, b, s, _ = (None if t is None else t.double() for t in case(batch, channels, length, taps, dilation, bias, state))
    y, final = depthwise_causal_conv1d_reference(x, w, b, dilation, "silu" if silu else None, s)
    assert rel_error(y, written_out(x, w, b, dilation, silu, s)) < 1e-12
    history = torch.cat([s if s is not None else x.new_zeros(batch, channels, (taps - 1) * dilation), x], dim=-1)
    assert torch.equal(final, history[..., history.shape[-1] - (taps - 1) * dilation:])


@pytest.mark.parametrize("device,dtype", kernel_targets())
@pytest.mark.parametrize("shape", CASES)
def test_kernels_forward_and_gradients_match_reference(device, dtype, shape, fp32_exact):
    batch, channels, length, taps, dilation, bias, silu, state = shape
    x, w, b, s, dy = case(batch, channels, length, taps, dilation, bias, state)
    inputs = [None if t is None else t.to(device, dtype).requires_grad_() for t in (x, w, b, s)]
    present = [t for t in inputs if t is not None]
    activation = "silu" if silu else None
    with ops.backend("triton"):
        y, final = ops.dilated_causal_conv1d(inputs[0], inputs[1], inputs[2], dilation, activation=activation,
                                             initial_state=inputs[3], return_final_state=True)
        grads = torch.autograd.grad(y, present, dy.to(device, dtype))
    ref = [None if t is None else t.detach().double().requires_grad_() for t in inputs]
    y_ref, final_ref = depthwise_causal_conv1d_reference(ref[0], ref[1], ref[2], dilation, activation, ref[3])
    grads_ref = torch.autograd.grad(y_ref, [t for t in ref if t is not None], dy.to(device, torch.float64))
    assert y.dtype == dtype and all(g.dtype == dtype and g.shape == t.shape for g, t in zip(grads, present))
    errors = {"y": rel_error(y, y_ref), **{f"d{i}": rel_error(g, r) for i, (g, r) in enumerate(zip(grads, grads_ref))}}
    assert worst(errors)[1] < TOLERANCE[dtype], errors
    assert final.shape == final_ref.shape and (final.numel() == 0 or rel_error(final, final_ref) == 0)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("taps,dilation,silu", [(4, 1, True), (3, 2, False), (1, 1, True)])
def test_a_loop_of_decode_steps_equals_the_whole_sequence(backend, taps, dilation, silu):
    """Steps from a prefix's final state continue the sequence exactly where the convolution of the
    whole sequence goes; the state ends as the whole sequence's final state."""
    x, w, b, s, _ = case(2, 5, 24, taps, dilation, True, True)
    activation = "silu" if silu else None
    with ops.backend(backend):
        whole, final = ops.dilated_causal_conv1d(x, w, b, dilation, activation=activation, initial_state=s,
                                                 return_final_state=True)
        head, state = ops.dilated_causal_conv1d(x[..., :10], w, b, dilation, activation=activation, initial_state=s,
                                                return_final_state=True)
        steps = [ops.causal_conv1d_update(x[..., t], state, w, b, dilation, activation) for t in range(10, 24)]
    torch.testing.assert_close(torch.cat([head, torch.stack(steps, dim=-1)], dim=-1), whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, final, rtol=0, atol=0)


def test_the_kernel_step_matches_the_reference_step():
    x, w, b, s, _ = case(3, 9, 1, 4, 3, True, True)
    state_kernel, state_ref = s.clone(), s.clone().double()
    with ops.backend("triton"):
        y = ops.causal_conv1d_update(x[..., 0], state_kernel, w, b, 3, "silu")
    y_ref = causal_conv1d_update_reference(x[..., 0].double(), state_ref, w.double(), b.double(), 3, "silu")
    assert rel_error(y, y_ref) < 1e-6 and rel_error(state_kernel, state_ref) == 0


def test_gradcheck_opcheck_and_compile():
    x, w, b, s, dy = (t.double().requires_grad_() for t in case(2, 3, 9, 3, 2, True, True))
    assert torch.autograd.gradcheck(
        lambda *a: ops.dilated_causal_conv1d(a[0], a[1], a[2], 2, activation="silu", initial_state=a[3]),
        (x, w, b, s), fast_mode=True)
    x, w, b, s, dy = (t.requires_grad_() for t in case(2, 5, 20, 4, 1, True, True))
    for backend in ("torch", "triton"):
        with ops.backend(backend):
            torch.library.opcheck(torch.ops.fastwave.depthwise_causal_conv1d, (x, w, b, 1, True, s))
            torch.library.opcheck(torch.ops.fastwave.depthwise_causal_conv1d_backward,
                                  (dy.detach(), x.detach(), w.detach(), b.detach(), 1, True, s.detach()))
            torch.library.opcheck(torch.ops.fastwave.causal_conv1d_update,
                                  (x[..., 0].detach(), s.detach().clone(), w.detach(), b.detach(), 1, True))

    def layer(x, w, b, s):
        return ops.dilated_causal_conv1d(x, w, b, 1, activation="silu", initial_state=s).square().sum()

    with ops.backend("triton"):
        expected = torch.autograd.grad(layer(x, w, b, s), (x, w, b, s))
        got = torch.autograd.grad(torch.compile(layer, fullgraph=True, backend="aot_eager")(x, w, b, s), (x, w, b, s))
    assert all(rel_error(g, e) < 1e-5 for g, e in zip(got, expected))


@pytest.mark.parametrize("call,message", [
    (lambda x, w, s: ops.dilated_causal_conv1d(x, w[:, :1].expand(5, 6).contiguous()), "kernel size 1 to 4"),
    (lambda x, w, s: ops.dilated_causal_conv1d(x, w[:4]), r"weight must have shape \(5, \*\)"),
    (lambda x, w, s: ops.dilated_causal_conv1d(x, w, activation="gelu"), "activation must be None or 'silu'"),
    (lambda x, w, s: ops.dilated_causal_conv1d(x, w, initial_state=s[..., :2]), r"initial_state must have shape \(2, 5, 3\)"),
    (lambda x, w, s: ops.dilated_causal_conv1d(x, w.unsqueeze(1).expand(5, 5, 4).contiguous(), activation="silu"),
     "for a depthwise"),
    (lambda x, w, s: ops.causal_conv1d_update(x[..., 0], None, w), "state must be"),
    (lambda x, w, s: ops.causal_conv1d_update(x[..., 0], s.double(), w), "state has dtype"),
])
def test_bad_arguments_are_named(call, message):
    x, w, b, s, _ = case(2, 5, 8, 4, 1, True, True)
    with pytest.raises((ValueError, TypeError), match=message):
        call(x, w, s)


def test_kernels_compile_for_a_gpu_without_spills():
    """sm_90, bf16, 4 taps, every feature on, a state longer than a chunk (Triton's own ptxas)."""
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "triton_resources.py"), "--depthwise",
                           "--arch", "90", "--dtype", "bf16"], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "regs" in line]
    assert len(lines) == 4 and all(" spill stack     0 B" in line for line in lines), done.stdout


def test_the_conv_page_example_runs_and_continues_the_sequence():
    import pathlib
    import re

    page = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "conv_in_your_model.md").read_text()
    (example,) = re.findall(r"^```python\n(.*?)^```", page, flags=re.M | re.S)
    namespace = {}
    exec(example, namespace)
    conv, x, following, steps = (namespace[n] for n in ("conv", "x", "following", "steps"))
    assert x.grad is not None and conv.weight.grad is not None
    with torch.no_grad():
        whole, _ = conv(torch.cat([x, following], dim=-1))
    torch.testing.assert_close(steps, whole[..., 100:], rtol=1e-5, atol=1e-6)
