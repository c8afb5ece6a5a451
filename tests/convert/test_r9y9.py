"""The r9y9/wavenet_vocoder importer against an independent forward written here from that project's
equations (its ResidualConv1dGLU and WaveNet.forward): random weights under weight norm, random
biases, kernel sizes 2 and 3, with and without conditioning."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

import fastwave
from fastwave.cli import main
from fastwave.convert import from_r9y9, import_model
from small_models import greedy_on_every_engine, rel_error

SMALL = dict(layers=6, stacks=2, residual=8, gate=12, skip=10, classes=32)


def _weight_normed(state, name, shape, gen, bias=True):
    """r9y9 keeps every conv under weight norm (dim 0): name.weight_g, name.weight_v (+ name.bias)."""
    state[name + ".weight_v"] = torch.randn(*shape, generator=gen)
    state[name + ".weight_g"] = torch.rand(shape[0], 1, 1, generator=gen) + 0.5
    if bias:
        state[name + ".bias"] = 0.3 * torch.randn(shape[0], generator=gen)


def r9y9_state(kernel, cin=0, gin=0, speakers=0, seed=0, **size):
    s = {**SMALL, **size}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    _weight_normed(state, "first_conv", (s["residual"], s["classes"], 1), gen)
    for i in range(s["layers"]):
        p = f"conv_layers.{i}."
        _weight_normed(state, p + "conv", (s["gate"], s["residual"], kernel), gen)
        if cin:
            _weight_normed(state, p + "conv1x1c", (s["gate"], cin, 1), gen)
        if gin:
            _weight_normed(state, p + "conv1x1g", (s["gate"], gin, 1), gen)
        _weight_normed(state, p + "conv1x1_out", (s["residual"], s["gate"] // 2, 1), gen)
        _weight_normed(state, p + "conv1x1_skip", (s["skip"], s["gate"] // 2, 1), gen)
    _weight_normed(state, "last_conv_layers.1", (s["skip"], s["skip"], 1), gen)
    _weight_normed(state, "last_conv_layers.3", (s["classes"], s["skip"], 1), gen)
    if speakers:
        state["embed_speakers.weight"] = 0.5 * torch.randn(speakers, gin, generator=gen)
    return state


def r9y9_forward(state, stacks, tokens, c=None, g=None):
    """Logits (B, classes, T) as wavenet_vocoder computes them, in float64."""
    w = {}
    for name in state:
        if name.endswith(".weight_v"):
            base = name[:-len(".weight_v")]
            w[base] = torch._weight_norm(state[name].double(), state[base + ".weight_g"].double(), 0)
    b = {name[:-len(".bias")]: v.double() for name, v in state.items() if name.endswith(".bias")}
    layers = sum(1 for name in w if name.endswith(".conv") and name.startswith("conv_layers."))
    per_stack = layers // stacks
    x = F.one_hot(tokens, state["first_conv.weight_v"].shape[1]).double().transpose(1, 2)
    x = F.conv1d(x, w["first_conv"], b["first_conv"])
    length, skips = x.shape[-1], 0
    g_bct = None if g is None else state["embed_speakers.weight"].double()[g].unsqueeze(-1)
    for i in range(layers):
        p = f"conv_layers.{i}."
        dilation, kernel = 2 ** (i % per_stack), w[p + "conv"].shape[-1]
        residual = x
        y = F.conv1d(x, w[p + "conv"], b[p + "conv"], padding=(kernel - 1) * dilation, dilation=dilation)[:, :, :length]
        a, bb = y.split(y.shape[1] // 2, dim=1)
        if c is not None:
            ca, cb = F.conv1d(c.double(), w[p + "conv1x1c"], b[p + "conv1x1c"]).split(y.shape[1] // 2, dim=1)
            a, bb = a + ca, bb + cb
        if g_bct is not None:
            ga, gb = F.conv1d(g_bct, w[p + "conv1x1g"], b[p + "conv1x1g"]).split(y.shape[1] // 2, dim=1)
            a, bb = a + ga, bb + gb
        h = torch.tanh(a) * torch.sigmoid(bb)
        skips = skips + F.conv1d(h, w[p + "conv1x1_skip"], b[p + "conv1x1_skip"])
        x = (F.conv1d(h, w[p + "conv1x1_out"], b[p + "conv1x1_out"]) + residual) * math.sqrt(0.5)
    x = skips * math.sqrt(1.0 / layers)
    x = F.conv1d(F.relu(x), w["last_conv_layers.1"], b["last_conv_layers.1"])
    return F.conv1d(F.relu(x), w["last_conv_layers.3"], b["last_conv_layers.3"])


@pytest.mark.parametrize("kernel", [2, 3])
def test_unconditioned_logits_and_greedy_tokens_match(kernel):
    state = r9y9_state(kernel, seed=kernel)
    model = from_r9y9(state, {"stacks": 2, "layers": 6, "kernel_size": kernel, "input_type": "mulaw-quantize",
                              "quantize_channels": 32, "cin_channels": -1, "gin_channels": -1})
    assert model.config.receptive_field == 1 + (kernel - 1) * 2 * (1 + 2 + 4)
    tokens = torch.randint(0, 32, (2, 50), generator=torch.Generator().manual_seed(1))
    expected = r9y9_forward(state, 2, tokens)
    with torch.no_grad():
        assert rel_error(model(tokens).double(), expected) < 1e-5
    prompt = tokens[:, :20]
    generated = greedy_on_every_engine(model, prompt, 12)
    sequence = torch.cat([prompt, generated], dim=1)
    assert torch.equal(r9y9_forward(state, 2, sequence[:, :-1]).argmax(dim=1)[:, 19:], generated)  # r9y9's own greedy


@pytest.mark.parametrize("kernel", [2, 3])
def test_conditioned_logits_and_greedy_tokens_match(kernel):
    state = r9y9_state(kernel, cin=3, gin=4, speakers=5, seed=10 + kernel)
    model = from_r9y9(state, {"stacks": 3, "cin_channels": 3, "gin_channels": 4, "n_speakers": 5})
    assert (model.config.local_channels, model.config.cond_hop, model.config.global_classes) == (3, 1, 5)
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 32, (2, 40), generator=gen)
    local, speaker = torch.randn(2, 3, 60, generator=gen), torch.tensor([4, 1])
    expected = r9y9_forward(state, 3, tokens, c=local[:, :, :40], g=speaker)
    with torch.no_grad():
        assert rel_error(model(tokens, global_cond=speaker, local_cond=local[:, :, :40]).double(), expected) < 1e-5
    cond = {"global_cond": speaker, "local_cond": local}
    generated = greedy_on_every_engine(model, tokens[:, :16], 20, cond=cond)
    sequence = torch.cat([tokens[:, :16], generated], dim=1)
    theirs = r9y9_forward(state, 3, sequence[:, :-1], c=local[:, :, :35], g=speaker).argmax(dim=1)
    assert torch.equal(theirs[:, 15:], generated)


def test_a_training_checkpoint_file_with_dataparallel_names_and_parametrized_weight_norm(tmp_path):
    """train.py saves {"state_dict", "optimizer", "global_step", ...}; DataParallel adds "module.";
    torch >= 2.1 writes weight norm as parametrizations. All read with weights_only=True."""
    state = r9y9_state(3, seed=3)
    renamed = {}
    for name, value in state.items():
        name = name.replace(".weight_g", ".parametrizations.weight.original0")
        renamed["module." + name.replace(".weight_v", ".parametrizations.weight.original1")] = value
    path = tmp_path / "checkpoint_step000001000.pth"
    torch.save({"state_dict": renamed, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
                "global_step": 1000, "global_epoch": 3}, path)
    model = import_model("r9y9", path, {"stacks": 2})
    tokens = torch.randint(0, 32, (1, 30))
    with torch.no_grad():
        assert rel_error(model(tokens).double(), r9y9_forward(state, 2, tokens)) < 1e-5


def test_the_import_command_writes_a_fastwave_checkpoint(tmp_path, capsys):
    state = r9y9_state(2, cin=3, seed=4)
    source, hparams, out = tmp_path / "model.pth", tmp_path / "hparams.json", tmp_path / "model.safetensors"
    torch.save(state, source)
    hparams.write_text(json.dumps({"stacks": 2, "layers": 6, "cin_channels": 3, "sample_rate": 22050,
                                   "upsample_conditional_features": False}))
    assert main(["import", "r9y9", str(source), "--hparams", str(hparams), "--out", str(out)]) == 0
    assert "WaveNet" in capsys.readouterr().out
    model = fastwave.load_model(out)
    assert model.config.sample_rate == 22050 and model.config.local_channels == 3
    tokens, local = torch.randint(0, 32, (1, 25)), torch.randn(1, 3, 25)
    with torch.no_grad():
        assert rel_error(model(tokens, local_cond=local).double(), r9y9_forward(state, 2, tokens, c=local)) < 1e-5


@pytest.mark.parametrize("change, hparams, message", [
    (None, {"stacks": 2, "input_type": "raw"}, "scalar input"),
    ("scalar", {"stacks": 2}, "scalar input"),
    ("upsample", {"stacks": 2}, "learned network"),
    (None, {"stacks": 2, "upsample_conditional_features": True}, "learned network"),
    ("kernel4", {"stacks": 2}, "kernel_size 4"),
    ("external_global", {"stacks": 2}, "external feature vectors"),
    ("extra", {"stacks": 2}, "does not read: extra.weight"),
    (None, {"layers": 6}, "stacks"),
    (None, {"stacks": 2, "layers": 8}, "layers=8 but the weights have 6"),
    (None, {"stacks": 2, "cin_channels": 80}, "cin_channels=80 but the weights have none"),
    (None, {"stacks": 4}, "multiple of cycles"),
])
def test_what_fastwave_cannot_represent_is_refused_by_name(change, hparams, message, tmp_path):
    state = r9y9_state(2)
    if change == "scalar":
        state = r9y9_state(2, classes=1)
    elif change == "upsample":
        state["upsample_net.conv_in.weight"] = torch.zeros(80, 80, 3)
    elif change == "kernel4":
        state = r9y9_state(4)
    elif change == "external_global":
        state = r9y9_state(2, gin=4)
    elif change == "extra":
        state["extra.weight"] = torch.zeros(2)
    out = tmp_path / "model.safetensors"
    with pytest.raises(ValueError, match=message):
        from_r9y9(state, hparams)
    assert not out.exists()


def test_a_pickled_module_is_refused_without_running_it(tmp_path, capsys):
    path, hparams = tmp_path / "snapshot.pt", tmp_path / "h.json"
    torch.save(torch.nn.Conv1d(2, 2, 1), path)  # a whole module: loading it would unpickle code
    hparams.write_text('{"stacks": 2}')
    out = tmp_path / "model.safetensors"
    assert main(["import", "r9y9", str(path), "--hparams", str(hparams), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pickled objects besides tensors" in err and "state_dict" in err and not out.exists()


def test_the_docs_example_runs(tmp_path, monkeypatch):
    """docs/import.md's Python block, next to an r9y9 training checkpoint and its hparams JSON."""
    import pathlib
    import re

    page = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text()
    (example,) = re.findall(r"^```python\n(.*?)^```", page, flags=re.M | re.S)
    state = r9y9_state(3, seed=6)
    torch.save({"state_dict": state, "global_step": 100000}, tmp_path / "checkpoint_step000100000.pth")
    (tmp_path / "hparams.json").write_text(json.dumps({"stacks": 2, "layers": 6, "input_type": "mulaw-quantize"}))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(example.replace("16000,", "50,"), namespace)  # fewer samples: the example's call, shorter
    assert namespace["audio_tokens"].shape == (1, 50)
    model = fastwave.load_model(tmp_path / "model.safetensors")
    tokens = torch.randint(0, 32, (1, 30))
    with torch.no_grad():
        assert rel_error(model(tokens).double(), r9y9_forward(state, 2, tokens)) < 1e-5
