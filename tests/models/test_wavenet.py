import numpy as np
import pytest
import torch

import fastwave
from fastwave import WaveNet, load_model
from fastwave._checks import MissingFileError


def small_wavenet(**kw):
    torch.manual_seed(kw.pop("seed", 0))
    args = dict(layers=6, cycles=2, residual_channels=8, gate_channels=12, skip_channels=10, classes=32)
    args.update(kw)
    return WaveNet(**args).eval()


@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("layers,cycles", [(6, 2), (5, 1), (20, 2)])
def test_receptive_field_formula_and_dilations(kernel_size, layers, cycles):
    model = WaveNet(layers=layers, cycles=cycles, kernel_size=kernel_size, residual_channels=4,
                    gate_channels=4, skip_channels=4)
    per_cycle = layers // cycles
    assert model.config.dilations == [2 ** (i % per_cycle) for i in range(layers)]
    assert model.receptive_field == 1 + (kernel_size - 1) * cycles * (2 ** per_cycle - 1)


def test_default_model_receptive_field():
    assert WaveNet().receptive_field == 2047  # 2 cycles of dilations 1..512, kernel 2


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_receptive_field_is_what_the_output_sees(kernel_size):
    model = small_wavenet(kernel_size=kernel_size)
    rf = model.receptive_field
    length = rf + 10
    tokens = torch.randint(0, 32, (1, length))
    base = model(tokens)[0, :, -1]

    def last_logits_after_changing(position):
        changed = tokens.clone()
        changed[0, position] = (changed[0, position] + 7) % 32
        return model(changed)[0, :, -1]

    assert not torch.equal(last_logits_after_changing(length - rf), base)  # oldest token it sees
    assert torch.equal(last_logits_after_changing(length - rf - 1), base)  # just outside


def test_forward_is_causal():
    model = small_wavenet()
    tokens = torch.randint(0, 32, (2, 40))
    changed = tokens.clone()
    changed[:, 25:] = 0
    torch.testing.assert_close(model(tokens)[:, :, :25], model(changed)[:, :, :25], rtol=0, atol=0)


def numpy_step_reference(config, w, tokens, t):
    """An independent reading of the documented export layout: logits at position t."""
    acts = [w["embedding"][tok] for tok in tokens[: t + 1]]  # layer inputs per position
    skip = 0
    for i, d in enumerate(config["dilations"]):
        k = config["kernel_size"]
        conv = w[f"layers.{i}.conv_weight"]

        def past(pos):
            return acts[pos] if pos >= 0 else np.zeros_like(acts[0])

        # Every layer input is needed at every position for the next layer: recompute the column.
        new_acts, skips = [], []
        for pos in range(t + 1):
            z = w[f"layers.{i}.conv_bias"].astype(np.float64)
            for tap in range(k):
                z = z + conv[tap] @ past(pos - (k - 1 - tap) * d)
            h_dim = len(z) // 2
            h = np.tanh(z[:h_dim]) / (1 + np.exp(-z[h_dim:]))
            skips.append(w[f"layers.{i}.skip_weight"] @ h + w[f"layers.{i}.skip_bias"])
            if f"layers.{i}.res_weight" in w:
                new_acts.append(acts[pos] + w[f"layers.{i}.res_weight"] @ h + w[f"layers.{i}.res_bias"])
        skip = skip + skips[t]
        acts = new_acts
    hidden = w["head.0.weight"] @ np.maximum(skip, 0) + w["head.0.bias"]
    return w["head.1.weight"] @ np.maximum(hidden, 0) + w["head.1.bias"]


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_export_weights_layout_matches_forward(kernel_size):
    model = small_wavenet(kernel_size=kernel_size, layers=4)
    config, weights = model.export_weights()
    assert config["model"] == "wavenet" and config["receptive_field"] == model.receptive_field
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in weights.values())
    assert "layers.3.res_weight" not in weights  # nothing reads the last layer's residual
    tokens = torch.randint(0, 32, (1, 12))
    logits = model(tokens)[0].detach().numpy()
    for t in (0, 5, 11):
        expected = numpy_step_reference(config, weights, tokens[0].numpy(), t)
        np.testing.assert_allclose(logits[:, t], expected, rtol=1e-4, atol=1e-5)


def test_global_and_local_conditioning_change_the_output():
    model = small_wavenet(global_classes=3, local_channels=5, cond_hop=4)
    tokens = torch.randint(0, 32, (2, 16))
    local = torch.randn(2, 5, 4)
    ids = torch.tensor([0, 1])
    base = model(tokens, ids, local)
    assert not torch.allclose(base, model(tokens, torch.tensor([2, 1]), local))
    other_local = local.clone()
    other_local[:, :, 2] += 1.0  # frame 2 covers positions 8..11 only
    changed = model(tokens, ids, other_local)
    torch.testing.assert_close(changed[:, :, :8], base[:, :, :8], rtol=0, atol=0)
    assert not torch.allclose(changed[:, :, 8:12], base[:, :, 8:12])
    assert model.export_weights()[1]["layers.0.local_weight"].shape == (12, 5)


def test_checkpoint_round_trip(tmp_path):
    model = small_wavenet(global_classes=2, kernel_size=3)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, WaveNet) and loaded.config == model.config
    tokens = torch.randint(0, 32, (1, 20))
    torch.testing.assert_close(loaded(tokens, [1]), model(tokens, [1]), rtol=0, atol=0)


def test_checkpoint_keeps_its_dtype(tmp_path):
    model = small_wavenet().to(torch.bfloat16)
    model.save(tmp_path / "bf16.safetensors")
    loaded = load_model(tmp_path / "bf16.safetensors")
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())


def test_load_refuses_mismatched_weights_and_formats(tmp_path):
    import json
    from safetensors.torch import save_file
    model = small_wavenet()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    meta = {"fastwave.format": "1", "fastwave.model": "wavenet"}
    forged = tmp_path / "forged.safetensors"
    save_file(state, str(forged), metadata={**meta, "fastwave.config": json.dumps({**config, "residual_channels": 4096})})
    with pytest.raises(ValueError, match="do not match the stored wavenet config"):
        load_model(forged)
    future = tmp_path / "future.safetensors"
    save_file(state, str(future), metadata={**meta, "fastwave.format": "99", "fastwave.config": json.dumps(config)})
    with pytest.raises(ValueError, match="format '99'"):
        load_model(future)
    with pytest.raises(ValueError, match="folder"):
        model.save(tmp_path / "no" / "such" / "dir.safetensors")


def test_load_refuses_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(MissingFileError, match="no such file"):
        load_model(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError):  # a missing file is a ValueError too (DESIGN.md)
        load_model(tmp_path / "absent.safetensors")
    path = tmp_path / "model.safetensors"
    small_wavenet().save(path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or foreign"):
        load_model(truncated)
    text = tmp_path / "notes.safetensors"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="truncated or foreign"):
        load_model(text)
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a fastwave checkpoint"):
        load_model(foreign)


def test_bad_input_is_refused_clearly():
    model = small_wavenet(global_classes=2)
    good = torch.randint(0, 32, (1, 8))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 32\)"):
        model(torch.full((1, 8), 32), [0])
    with pytest.raises(TypeError, match="tokens must hold integer"):
        model(good.float(), [0])
    with pytest.raises(ValueError, match=r"tokens must be \(B, T\)"):
        model(good[0], [0])
    with pytest.raises(ValueError, match="global_cond is required"):
        model(good)
    with pytest.raises(ValueError, match="global_cond must lie"):
        model(good, [5])
    with pytest.raises(ValueError, match="local_cond was given"):
        model(good, [0], torch.zeros(1, 1, 1))
    with pytest.raises(ValueError, match="kernel_size must be 2 or 3"):
        WaveNet(kernel_size=4)
    with pytest.raises(ValueError, match="multiple of cycles"):
        WaveNet(layers=7, cycles=2)
    with pytest.raises(ValueError, match="residual_channels must be a positive int"):
        WaveNet(residual_channels=0)


def test_save_checkpoint_refuses_foreign_modules(tmp_path):
    with pytest.raises(TypeError, match="model must be a fastwave model"):
        fastwave.save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


def test_local_cond_must_cover_the_tokens():
    model = small_wavenet(local_channels=3, cond_hop=4)
    with pytest.raises(ValueError, match="local_cond has 2 frames"):
        model(torch.zeros(1, 9, dtype=torch.long), local_cond=torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="non-finite"):
        model(torch.zeros(1, 8, dtype=torch.long), local_cond=torch.full((1, 3, 2), float("nan")))


def test_public_api_exports():
    assert fastwave.WaveNet is WaveNet
    assert callable(fastwave.generate) and callable(fastwave.stream)
