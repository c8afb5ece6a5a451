"""wavenet_block: the fused Triton layer (forced; the interpreter on CPU) against its torch reference
in float64, forward and every gradient; WaveNet's fused path; custom-op registration, torch.compile,
autocast; bad input."""
import pytest
import torch

from fastwave import WaveNet, ops
from fastwave.ops.verify import BLOCK_NAMES as NAMES
from fastwave.ops.verify import TOLERANCE, block_errors, leaves, random_block, rel_error, worst
from ops_cases import kernel_targets, needs_triton

pytestmark = needs_triton

# (batch, residual R, gate G, skip S, length, K, dilation, cond shape or None, last layer (no residual),
#  running skip sum)
BLOCK_SHAPES = [
    (2, 8, 12, 10, 37, 2, 3, None, False, False),
    (2, 5, 6, 7, 50, 3, 4, "full", False, True),
    (1, 16, 32, 16, 70, 2, 1, "global", True, True),
    (3, 20, 40, 24, 33, 4, 2, "per_row", False, False),
    (2, 8, 12, 10, 29, 1, 5, "per_time", False, True),
    (1, 3, 4, 3, 130, 2, 64, None, False, False),  # several time tiles, a dilation crossing them
    (2, 70, 80, 40, 1, 2, 1, "per_row", False, True),  # one step; channels past one tile
]


@pytest.mark.parametrize("device,dtype", kernel_targets())
@pytest.mark.parametrize("shape", BLOCK_SHAPES)
def test_block_forward_and_every_gradient_match_reference(device, dtype, shape, fp32_exact):
    batch, residual, gate, skip, length, taps, dilation, cond, last, skip_in = shape
    tensors, upstream = random_block(batch, residual, gate, skip, length, taps, cond, last, skip_in=skip_in)
    errors = block_errors(tensors, upstream, dilation, dtype, device)
    assert len(errors) == 2 + sum(t is not None for t in tensors.values()) - last, errors
    assert worst(errors)[1] < TOLERANCE[dtype], errors


def test_block_without_biases():
    tensors, upstream = random_block(2, 6, 8, 5, 21, 2, "full", biases=False)
    errors = block_errors(tensors, upstream, 2, torch.float32, "cpu")
    assert "db_dil" not in errors and worst(errors)[1] < 1e-5, errors


def test_block_accepts_2d_1x1_weights_and_strided_input():
    tensors, _ = random_block(2, 6, 8, 5, 21, 2, "per_row", False)
    big = torch.randn(2, 10, 21)
    big[:, 3:9] = tensors["x"]
    strided = dict(tensors, x=big[:, 3:9], w_res=tensors["w_res"][:, :, 0], w_skip=tensors["w_skip"][:, :, 0])
    args = [tensors[n] for n in NAMES]
    with ops.backend("triton"):
        expected = ops.wavenet_block(*args[:7], 2, args[7])
        got = ops.wavenet_block(*[strided[n] for n in NAMES[:7]], 2, strided["cond"])
        with_skip_in = ops.wavenet_block(*args[:7], 2, args[7], skip_in=big[:, :5])  # a strided running sum
    torch.testing.assert_close(with_skip_in[1], expected[1] + big[:, :5], rtol=1e-6, atol=1e-6)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert torch.equal(big[:, 3:9], tensors["x"])  # input untouched


def test_block_gradients_only_where_required():
    tensors, upstream = random_block(2, 6, 8, 5, 21, 2, "full", False)
    x = tensors["x"].requires_grad_()
    args = [tensors[n] for n in NAMES]
    with ops.backend("triton"):
        _, skip = ops.wavenet_block(*args[:7], 3, args[7])
        (dx,) = torch.autograd.grad(skip, x, upstream[1])  # the residual output unused
    x_ref = x.detach().double().requires_grad_()
    ref_args = [x_ref] + [None if t is None else t.double() for t in args[1:]]
    _, skip_ref = ops.wavenet_block_reference(*ref_args[:7], 3, ref_args[7])
    (dx_ref,) = torch.autograd.grad(skip_ref, x_ref, upstream[1].double())
    assert rel_error(dx, dx_ref) < 1e-5


def test_gradcheck_in_float64():
    """float64 runs the reference inside the custom ops: this checks their autograd wiring."""
    tensors, _ = random_block(1, 3, 4, 2, 9, 2, "per_row", False, skip_in=True)
    args = leaves([tensors[n] for n in NAMES], torch.float64, "cpu")

    def block(*a):
        return ops.wavenet_block(*a[:7], 2, a[7], a[8])

    assert torch.autograd.gradcheck(block, args)
    x, w, b = leaves([torch.randn(1, 2, 7), torch.randn(3, 2, 2), torch.randn(3)], torch.float64, "cpu")
    assert torch.autograd.gradcheck(lambda *a: ops.dilated_causal_conv1d(*a, dilation=3), (x, w, b))


def time_major(t):
    """The same values with time as the slowest dimension (as embedding(tokens).transpose(1, 2) is)."""
    return t.transpose(1, 2).contiguous().transpose(1, 2).detach().requires_grad_(t.requires_grad)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("layout", ["contiguous", "time_major"])
def test_custom_ops_pass_opcheck(backend, layout):
    """Schema, fake (meta) implementations, autograd registration and tracing, as torch checks them,
    for the forward and the backward ops."""
    tensors, (dres, dskip) = random_block(2, 4, 6, 3, 11, 2, "per_row", False, skip_in=True)
    args = leaves([tensors[n] for n in NAMES], torch.float32, "cpu")
    if layout == "time_major":
        args[0], args[8] = time_major(args[0]), time_major(args[8])
    w_res, w_skip = args[3][:, :, 0], args[5][:, :, 0]
    x, w, b = leaves([torch.randn(2, 3, 10), torch.randn(4, 3, 3), torch.randn(4)], torch.float32, "cpu")
    if layout == "time_major":
        x = time_major(x)
    with ops.backend(backend):
        torch.library.opcheck(torch.ops.fastwave.wavenet_block,
                              (args[0], args[1], args[2], w_res, args[4], w_skip, args[6], 2, args[7], args[8]))
        torch.library.opcheck(torch.ops.fastwave.wavenet_block_backward,
                              (dres, dskip, args[0].detach(), args[1].detach(), args[2].detach(), w_res.detach(),
                               w_skip.detach(), 2, args[7].detach(), [True] * 8))
        torch.library.opcheck(torch.ops.fastwave.dilated_causal_conv1d, (x, w, b, 2))
        torch.library.opcheck(torch.ops.fastwave.dilated_causal_conv1d_backward,
                              (torch.randn(2, 4, 10), x.detach(), w.detach(), 2, True, True, True))


def test_backward_runs_under_a_torch_dispatch_mode():
    """Dispatch modes (FlopCounterMode, debug modes) pass through the ops' backward: its reference
    is plain torch ops, which such modes can see (functorch transforms inside an op they cannot)."""
    from torch.utils.flop_counter import FlopCounterMode
    tensors, (dres, dskip) = random_block(2, 4, 6, 3, 11, 2, "full", False)
    args = leaves([tensors[n] for n in NAMES], torch.float32, "cpu")
    present = [a for a in args if a is not None]
    expected = torch.autograd.grad(ops.wavenet_block_reference(*args[:7], 2, args[7]), present, [dres, dskip])
    with ops.backend("torch"), FlopCounterMode(display=False):
        residual, skip = ops.wavenet_block(*args[:7], 2, args[7])
        grads = torch.autograd.grad([residual, skip], present, [dres, dskip])
    assert all(rel_error(g, e) < 1e-5 for g, e in zip(grads, expected))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_block_of_an_empty_sequence(backend):
    tensors, _ = random_block(2, 4, 6, 3, 0, 2, "per_row", False, skip_in=True)
    args = leaves([tensors[n] for n in NAMES], torch.float32, "cpu")
    with ops.backend(backend):
        residual, skip = ops.wavenet_block(*args[:7], 2, args[7], args[8])
        grads = torch.autograd.grad(residual.sum() + skip.sum(), [a for a in args if a is not None])
    assert residual.shape == (2, 4, 0) and skip.shape == (2, 3, 0)
    assert all(g.shape == a.shape and not g.any() for g, a in zip(grads[1:-2], [a for a in args if a is not None][1:-2]))


class TinyCausalNet(torch.nn.Module):
    """Someone else's model using both ops."""

    def __init__(self):
        super().__init__()
        self.inp = ops.DilatedCausalConv1d(2, 6, 2, dilation=1)
        self.gate = torch.nn.Conv1d(6, 8, 3)
        self.res = torch.nn.Conv1d(4, 6, 1)
        self.skip = torch.nn.Conv1d(4, 5, 1)

    def forward(self, x):
        h = self.inp(x)
        res, skip = ops.wavenet_block(h, self.gate.weight, self.gate.bias, self.res.weight, self.res.bias,
                                      self.skip.weight, self.skip.bias, 4)
        return res.sum(1) + skip.mean(1)


def test_torch_compile_over_a_model_using_the_ops():
    torch.manual_seed(0)
    model = TinyCausalNet()
    x = torch.randn(3, 2, 40)
    eager = model(x)
    eager_grads = torch.autograd.grad(eager.square().sum(), list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True)  # no graph breaks around the custom ops
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_autocast_computes_in_the_autocast_dtype(backend):
    torch.manual_seed(0)
    model = TinyCausalNet()
    x = torch.randn(2, 2, 16)
    expected = model(x)
    with ops.backend(backend), torch.autocast("cpu", dtype=torch.float16):
        h = model.inp(x)
        res, skip = ops.wavenet_block(h, model.gate.weight, model.gate.bias, model.res.weight, model.res.bias,
                                      model.skip.weight, model.skip.bias, 4)
        out = res.sum(1) + skip.mean(1)
        grads = torch.autograd.grad(out.float().square().sum(), list(model.parameters()))
    assert h.dtype == res.dtype == skip.dtype == torch.float16
    assert all(g.dtype == torch.float32 for g in grads)  # the parameters' own dtype
    assert rel_error(out, expected) < 1e-2


@pytest.mark.parametrize("conditioned", [False, True])
def test_wavenet_fused_path_matches_the_torch_composition(conditioned, fp32_exact):
    torch.manual_seed(0)
    extra = dict(global_classes=3, local_channels=4, cond_hop=5) if conditioned else {}
    device = "cuda" if torch.cuda.is_available() else "cpu"  # on a GPU, the compiled kernels
    model = WaveNet(layers=4, cycles=2, kernel_size=3, residual_channels=8, gate_channels=12, skip_channels=10,
                    classes=32, **extra).to(device)
    tokens = torch.randint(0, 32, (2, 45), device=device)
    cond = dict(global_cond=torch.tensor([0, 2], device=device),
                local_cond=torch.randn(2, 4, 9, device=device)) if conditioned else {}
    params = list(model.parameters())

    def logits_and_grads():
        logits = model(tokens, **cond)
        return logits, torch.autograd.grad(logits.square().mean(), params)

    model.fused = False
    ref_logits, ref_grads = logits_and_grads()
    model.fused = True
    with ops.backend("triton"):
        logits, grads = logits_and_grads()
    assert rel_error(logits, ref_logits) < 1e-5
    for p, g, r in zip(params, grads, ref_grads):
        assert rel_error(g, r) < 1e-5, p.shape


def test_wavenet_fused_flag_is_not_part_of_the_config():
    model = WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, fused=False)
    assert model.fused is False and "fused" not in model.config.to_dict()
    assert WaveNet(layers=2, cycles=1).fused is True


@pytest.mark.parametrize("change,error,message", [
    (dict(x="long"), TypeError, "x must be float16"),
    (dict(w_dil="half"), TypeError, "w_dil has dtype torch.float16"),
    (dict(w_dil=torch.randn(7, 4, 2)), ValueError, "even number of output channels"),
    (dict(w_dil=torch.randn(6, 4, 5)), ValueError, "kernel size 1 to 4"),
    (dict(w_dil=torch.randn(6, 5, 2)), ValueError, r"w_dil must have shape \(\*, 4, \*\)"),
    (dict(w_res=torch.randn(4, 2, 1)), ValueError, r"w_res must have shape \(4, 3, 1\)"),
    (dict(w_skip=torch.randn(5, 3, 2)), ValueError, r"w_skip must have shape \(\*, 3, 1\)"),
    (dict(b_dil=torch.randn(5)), ValueError, r"b_dil must have shape \(6\)"),
    (dict(w_res=None), ValueError, "b_res was given without w_res"),
    (dict(cond=torch.randn(2, 6, 5)), ValueError, r"cond must broadcast as \(2 or 1, 6, 11 or 1\)"),
    (dict(cond=torch.randn(2, 5, 11)), ValueError, "cond must broadcast"),
    (dict(dilation=0), ValueError, "dilation must be an int >= 1"),
    (dict(skip_in=torch.randn(2, 4, 11)), ValueError, r"skip_in must have shape \(2, 5, 11\)"),
    (dict(skip_in=torch.randn(2, 5, 11).double()), TypeError, "skip_in has dtype torch.float64"),
    (dict(w_skip=torch.randn(5, 3, 1, device="meta")), ValueError, "w_skip is on meta"),
])
def test_block_refuses_bad_arguments(change, error, message):
    tensors, _ = random_block(2, 4, 6, 5, 11, 2, "per_row", False)
    tensors["dilation"] = 2
    for name, value in change.items():
        tensors[name] = getattr(tensors[name], value)() if isinstance(value, str) else value
    args = [tensors[n] for n in NAMES]
    with pytest.raises(error, match=message):
        ops.wavenet_block(*args[:7], tensors["dilation"], args[7], skip_in=args[8])


def test_wavenet_compiles_without_graph_breaks_on_the_fused_path():
    torch.manual_seed(0)
    model = WaveNet(layers=4, cycles=2, residual_channels=8, gate_channels=12, skip_channels=10, classes=32)
    tokens = torch.randint(0, 32, (2, 30))
    model.fused = False
    expected = model(tokens)
    expected_grads = torch.autograd.grad(expected.square().mean(), list(model.parameters()))
    model.fused = True
    compiled = torch.compile(model, fullgraph=True)
    with ops.backend("triton"):
        logits = compiled(tokens)
        grads = torch.autograd.grad(logits.square().mean(), list(model.parameters()))
    assert rel_error(logits, expected) < 1e-5
    assert all(rel_error(g, e) < 1e-5 for g, e in zip(grads, expected_grads))
