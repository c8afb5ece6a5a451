"""The vincentherrmann/pytorch-wavenet importer against an independent forward written here from that
project's equations (WaveNetModel.wavenet: scalar input, separate filter and gate convs, valid
dilated convs, residual and skip sums trimmed to the newest positions): random weights, random
biases, kernel sizes 2 and 3."""
import pytest
import torch
import torch.nn.functional as F

from fastwave.cli import main
import fastwave
from fastwave.convert import from_pytorch_wavenet
from small_models import greedy_on_every_engine, rel_error

SMALL = dict(layers=3, blocks=2, dilation=6, residual=8, skip=10, classes=32)


def herrmann_state(kernel, bias=True, seed=0, end=None, **size):
    s = {**SMALL, **size}
    gen = torch.Generator().manual_seed(seed)
    n = s["layers"] * s["blocks"]
    shapes = {"start_conv": (s["residual"], 1, 1), "end_conv_1": (end or s["skip"], s["skip"], 1),
              "end_conv_2": (s["classes"], end or s["skip"], 1)}
    for i in range(n):
        shapes.update({f"filter_convs.{i}": (s["dilation"], s["residual"], kernel),
                       f"gate_convs.{i}": (s["dilation"], s["residual"], kernel),
                       f"residual_convs.{i}": (s["residual"], s["dilation"], 1),
                       f"skip_convs.{i}": (s["skip"], s["dilation"], 1)})
    state = {}
    for name, shape in shapes.items():
        state[name + ".weight"] = 0.5 * torch.randn(*shape, generator=gen)
        if bias or name.startswith("end_conv"):  # its end convs always have biases
            state[name + ".bias"] = 0.3 * torch.randn(shape[0], generator=gen)
    return state


def herrmann_forward(state, blocks, tokens):
    """Logits (B, classes, T - receptive_field + 1): only the positions whose inputs are all real
    samples, as pytorch-wavenet computes them (no padding), in float64."""
    w = {name: v.double() for name, v in state.items()}
    n = sum(1 for name in w if name.startswith("filter_convs.") and name.endswith(".weight"))
    classes = w["end_conv_2.weight"].shape[0]
    x = (2.0 * tokens.double() / classes - 1.0).unsqueeze(1)
    x = F.conv1d(x, w["start_conv.weight"], w.get("start_conv.bias"))
    skip = 0
    for i in range(n):
        dilation, kernel = 2 ** (i % (n // blocks)), w[f"filter_convs.{i}.weight"].shape[-1]
        residual = x
        f = torch.tanh(F.conv1d(x, w[f"filter_convs.{i}.weight"], w.get(f"filter_convs.{i}.bias"), dilation=dilation))
        g = torch.sigmoid(F.conv1d(x, w[f"gate_convs.{i}.weight"], w.get(f"gate_convs.{i}.bias"), dilation=dilation))
        x = f * g
        s = F.conv1d(x, w[f"skip_convs.{i}.weight"], w.get(f"skip_convs.{i}.bias"))
        skip = s if isinstance(skip, int) else skip[:, :, -s.shape[2]:] + s
        x = F.conv1d(x, w[f"residual_convs.{i}.weight"], w.get(f"residual_convs.{i}.bias"))
        x = x + residual[:, :, (kernel - 1) * dilation:]
    x = F.relu(F.conv1d(F.relu(skip), w["end_conv_1.weight"], w["end_conv_1.bias"]))
    return F.conv1d(x, w["end_conv_2.weight"], w["end_conv_2.bias"])


@pytest.mark.parametrize("kernel, bias", [(2, False), (2, True), (3, True)])
def test_logits_and_greedy_tokens_match(kernel, bias):
    state = herrmann_state(kernel, bias=bias, seed=kernel)
    model = from_pytorch_wavenet(state, {"blocks": 2, "layers": 3, "kernel_size": kernel, "classes": 32})
    field = model.config.receptive_field
    assert field == 1 + (kernel - 1) * 2 * (1 + 2 + 4)
    tokens = torch.randint(0, 32, (2, field + 30), generator=torch.Generator().manual_seed(1))
    expected = herrmann_forward(state, 2, tokens)
    assert expected.shape[-1] == 31
    with torch.no_grad():
        assert rel_error(model(tokens)[:, :, field - 1:].double(), expected) < 1e-5
    prompt = tokens[:, :field]
    generated = greedy_on_every_engine(model, prompt, 12)
    sequence = torch.cat([prompt, generated], dim=1)
    assert torch.equal(herrmann_forward(state, 2, sequence[:, :-1]).argmax(dim=1), generated)  # its own greedy


def test_the_import_command(tmp_path, capsys):
    state = herrmann_state(2, seed=5)
    source, out = tmp_path / "state_dict.pt", tmp_path / "model.safetensors"
    torch.save(state, source)
    assert main(["import", "pytorch-wavenet", str(source), "--param", "blocks=2", "--param", "sample_rate=8000",
                 "--out", str(out)]) == 0
    assert "6 layers in 2 cycles" in capsys.readouterr().out
    model = fastwave.load_model(out)
    assert model.config.sample_rate == 8000
    tokens = torch.randint(0, 32, (1, 40))
    with torch.no_grad():
        assert rel_error(model(tokens)[:, :, 14:].double(), herrmann_forward(state, 2, tokens)) < 1e-5


@pytest.mark.parametrize("change, hparams, message", [
    (None, {}, "blocks"),
    (None, {"blocks": 2, "dilation_factor": 3}, "dilation_factor 3"),
    (None, {"blocks": 4}, "does not divide the 6 layers"),
    (None, {"blocks": 2, "classes": 256}, "classes=256 but the weights have 32"),
    ("end", {"blocks": 2}, "end_channels 12 and skip_channels 10"),
    ("kernel4", {"blocks": 2}, "kernel_size 4"),
    ("conditioning", {"blocks": 2}, "WaveNetModelWithConditioning"),
    ("one_hot", {"blocks": 2}, "one-hot input"),
])
def test_what_fastwave_cannot_represent_is_refused_by_name(change, hparams, message):
    state = herrmann_state(2)
    if change == "end":
        state = herrmann_state(2, end=12)
    elif change == "kernel4":
        state = herrmann_state(4)
    elif change == "conditioning":
        state["filter_conditioning_convs.0.weight"] = torch.zeros(6, 16, 1)
    elif change == "one_hot":
        state["start_conv.weight"] = torch.zeros(8, 32, 1)
    with pytest.raises(ValueError, match=message):
        from_pytorch_wavenet(state, hparams)
