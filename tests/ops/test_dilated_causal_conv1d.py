"""dilated_causal_conv1d: the Triton kernel (forced; the interpreter on CPU) against the torch
reference in float64, forward and every gradient; layouts, the nn.Module, bad input."""
import pytest
import torch
from torch import nn

from fastwave import ops
from fastwave.ops.verify import TOLERANCE, conv_errors, rel_error, worst
from ops_cases import kernel_targets, needs_triton

pytestmark = needs_triton

# (batch, in channels, out channels, length, K, dilation, bias)
CONV_SHAPES = [
    (2, 5, 7, 37, 2, 3, True),
    (1, 16, 20, 70, 4, 1, True),
    (3, 3, 1, 9, 1, 2, False),
    (2, 33, 17, 100, 3, 8, True),
    (1, 4, 6, 5, 2, 16, True),  # dilation longer than the sequence: only the current step is seen
    (2, 6, 70, 23, 2, 2, True),  # more output rows than one tile
    (1, 3, 2, 1, 3, 1, True),  # a single step
]


def conv_case(batch, c_in, c_out, length, taps, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, length, generator=g)
    w = torch.randn(c_out, c_in, taps, generator=g) / (c_in * taps) ** 0.5
    b = torch.randn(c_out, generator=g) if bias else None
    dy = torch.randn(batch, c_out, length, generator=g)
    return x, w, b, dy


@pytest.mark.parametrize("device,dtype", kernel_targets())
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_forward_and_gradients_match_reference(device, dtype, shape, fp32_exact):
    batch, c_in, c_out, length, taps, dilation, bias = shape
    x, w, b, dy = conv_case(batch, c_in, c_out, length, taps, bias)
    errors = conv_errors(x, w, b, dy, dilation, dtype, device)
    assert len(errors) == (4 if bias else 3)
    assert worst(errors)[1] < TOLERANCE[dtype], errors


def test_conv_is_causal_and_sees_exactly_its_taps():
    x = torch.zeros(1, 1, 20)
    x[0, 0, 5] = 1.0  # an impulse at t = 5
    w = torch.tensor([[[1.0, 2.0, 3.0]]])  # taps at t - 2d, t - d, t
    with ops.backend("triton"):
        y = ops.dilated_causal_conv1d(x, w, dilation=4)[0, 0]
    expected = torch.zeros(20)
    expected[5], expected[9], expected[13] = 3.0, 2.0, 1.0
    assert torch.equal(y, expected)


@pytest.mark.parametrize("layout", ["channel_slice", "time_major", "batch_slice"])
def test_conv_strided_inputs_give_the_same_result_and_are_left_unchanged(layout):
    x, w, b, _ = conv_case(3, 6, 5, 40, 2, True)
    if layout == "channel_slice":
        big = torch.randn(3, 10, 40)
        big[:, 2:8] = x
        strided = big[:, 2:8]
    elif layout == "time_major":
        strided = x.transpose(1, 2).contiguous().transpose(1, 2)  # stride along time is C
    else:
        big = torch.randn(6, 6, 40)
        big[::2] = x
        strided = big[::2]
    assert not strided.is_contiguous()
    before = strided.clone()
    with ops.backend("triton"):
        y = ops.dilated_causal_conv1d(strided, w, b, dilation=3)
        y_contiguous = ops.dilated_causal_conv1d(x, w, b, dilation=3)
    assert torch.equal(y, y_contiguous)
    assert torch.equal(strided, before)


def test_conv_unbatched_input():
    x, w, b, _ = conv_case(1, 4, 3, 25, 3, True)
    with ops.backend("triton"):
        y = ops.dilated_causal_conv1d(x[0], w, b, dilation=2)
    assert y.shape == (3, 25)
    torch.testing.assert_close(y, ops.dilated_causal_conv1d_reference(x, w, b, 2)[0], rtol=1e-5, atol=1e-6)


def test_conv_gradient_only_for_what_requires_it():
    x, w, b, dy = conv_case(2, 4, 3, 30, 2, True)
    x.requires_grad_()
    with ops.backend("triton"):
        y = ops.dilated_causal_conv1d(x, w, b, dilation=2)
        (dx,) = torch.autograd.grad(y, x, dy)
    x_ref = x.detach().double().requires_grad_()
    (dx_ref,) = torch.autograd.grad(ops.dilated_causal_conv1d_reference(x_ref, w.double(), b.double(), 2), x_ref, dy.double())
    assert rel_error(dx, dx_ref) < 1e-5


@pytest.mark.parametrize("kernel_size,dilation,bias", [(1, 1, True), (2, 4, False), (4, 3, True)])
def test_module_is_a_drop_in_conv1d_with_causal_padding(kernel_size, dilation, bias):
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 5, kernel_size, dilation=dilation, bias=bias)
    causal = ops.DilatedCausalConv1d(6, 5, kernel_size, dilation=dilation, bias=bias)
    causal.load_state_dict(conv.state_dict())  # same parameters, same names
    x = torch.randn(2, 6, 33)
    pad = (kernel_size - 1) * dilation
    expected = conv(nn.functional.pad(x, (pad, 0)))
    with ops.backend("triton"):
        torch.testing.assert_close(causal(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(causal(x), expected, rtol=1e-5, atol=1e-6)  # the torch path
    assert "causal" in repr(causal)


@pytest.mark.parametrize("kwargs,message", [
    (dict(kernel_size=5), "kernel size 1 to 4"),
    (dict(stride=2), "stride 1"),
    (dict(padding=1), "padding must be 0 or 'causal'"),
    (dict(groups=2), "groups=1"),
    (dict(padding_mode="reflect"), "padding_mode"),
    (dict(dilation=0), "dilation"),
    (dict(kernel_size=(2, 2)), "1-tuple"),
])
def test_module_refuses_what_a_causal_conv_cannot_be(kwargs, message):
    args = dict(in_channels=4, out_channels=4, kernel_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ops.DilatedCausalConv1d(**args)


def test_module_accepts_padding_causal():
    assert ops.DilatedCausalConv1d(2, 3, 2, padding="causal")(torch.randn(1, 2, 7)).shape == (1, 3, 7)


@pytest.mark.parametrize("case,error,message", [
    (lambda x, w, b: (x.long(), w, b, 1), TypeError, "x must be float16, bfloat16, float32 or float64"),
    (lambda x, w, b: (x, w.half(), b, 1), TypeError, "weight has dtype torch.float16"),
    (lambda x, w, b: (x[0, 0], w, b, 1), ValueError, "x must have 2 or 3 dimensions"),
    (lambda x, w, b: (x, w[:, :2], b, 1), ValueError, r"weight must have shape \(\*, 4, \*\)"),
    (lambda x, w, b: (x, torch.randn(3, 4, 5), b, 1), ValueError, "kernel size 1 to 4"),
    (lambda x, w, b: (x, w, b[:2], 1), ValueError, r"bias must have shape \(3\)"),
    (lambda x, w, b: (x, w, b, 0), ValueError, "dilation must be an int >= 1"),
    (lambda x, w, b: (x, w, b, 1.5), ValueError, "dilation must be an int >= 1"),
    (lambda x, w, b: (x.numpy(), w, b, 1), TypeError, "x must be a torch.Tensor"),
    (lambda x, w, b: (x, w.to("meta"), b, 1), ValueError, "weight is on meta but the input is on cpu"),
])
def test_conv_refuses_bad_arguments(case, error, message):
    x, w, b, _ = conv_case(2, 4, 3, 10, 2, True)
    with pytest.raises(error, match=message):
        ops.dilated_causal_conv1d(*case(x, w, b))


def test_backend_switch():
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.set_backend("cuda")
    assert ops.get_backend() == "auto"
    with ops.backend("torch"):
        assert ops.get_backend() == "torch"
    assert ops.get_backend() == "auto"


def test_forcing_triton_on_cpu_without_the_interpreter_is_a_clear_error(monkeypatch):
    from fastwave.ops import _backend
    monkeypatch.setattr(_backend, "interpreting", lambda: False)
    x, w, b, _ = conv_case(1, 2, 2, 8, 2, True)
    with ops.backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.dilated_causal_conv1d(x, w, b)


def test_conv_weight_gradient_reduction_split_over_many_programs(monkeypatch):
    """The batch x time reduction of the weight gradient, split as on a large GPU."""
    from fastwave.ops.kernels import shifted_matmul
    monkeypatch.setattr(shifted_matmul, "_parallel_programs", lambda device: 64)
    x, w, b, dy = conv_case(3, 5, 4, 300, 3, True)
    errors = conv_errors(x, w, b, dy, 5, torch.float32, "cpu")
    assert worst(errors)[1] < 1e-5, errors


def test_conv_of_an_empty_sequence():
    x = torch.zeros(2, 3, 0, requires_grad=True)
    w = torch.randn(4, 3, 2, requires_grad=True)
    for backend in ("triton", "torch"):
        with ops.backend(backend):
            y = ops.dilated_causal_conv1d(x, w, dilation=3)
            dx, dw = torch.autograd.grad(y.sum(), (x, w))
        assert y.shape == (2, 4, 0) and dx.shape == x.shape and torch.equal(dw, torch.zeros_like(w))


def test_bf16_is_refused_by_the_interpreter():
    if torch.cuda.is_available():
        pytest.skip("bf16 runs on the GPU")
    x, w, b, _ = conv_case(1, 2, 2, 8, 2, True)
    with ops.backend("triton"), pytest.raises(RuntimeError, match="no bfloat16"):
        ops.dilated_causal_conv1d(x.bfloat16(), w.bfloat16(), b.bfloat16())


def test_fp32_dot_precision_follows_torchs_matmul_switch(fp32_exact):
    from fastwave.ops._backend import dot_precision
    assert dot_precision(torch.float32) == "ieee"
    torch.backends.cuda.matmul.allow_tf32 = True  # the fixture restores it
    assert dot_precision(torch.float32) == "tf32"
    assert dot_precision(torch.bfloat16) == "ieee"  # only fp32 operands have a choice
