"""The wavelet Audio Transformer classifier: shapes, wiring, pooling variants, checkpoints and errors."""
import json

import pytest
import torch

import fastwave
from fastwave.models.classifier import WaveletClassifier, WaveletClassifierConfig, parameter_count
from fastwave.models.pooling import average_pool_time, wavelet_pool

SMALL = {"frontend": (64,), "width": 32, "heads": 2, "layers": 2, "num_classes": 5}


def small(**overrides):
    torch.manual_seed(0)
    return WaveletClassifier(**{**SMALL, **overrides}).eval()


def audio(batch=2, samples=16000, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, samples, generator=generator)


@pytest.mark.parametrize("pooling", ["none", "avg", "wavelet"])
def test_default_config_shapes(pooling):
    model = WaveletClassifier(pooling=pooling).eval()
    logits = model(audio(batch=2))
    assert logits.shape == (2, 200) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_default_parameter_count():
    model = WaveletClassifier()
    count = model.num_parameters()
    print(f"default WaveletClassifier parameters: {count:,}")
    # front end 400 -> 2048 -> 64: 952,384; positions 40 x 64; 6 blocks of 49,984; norm; head 64 -> 200
    assert count == 952_384 + 2_560 + 6 * 49_984 + 128 + 13_000 == 1_267_976
    assert count == parameter_count(model.config)
    for overrides in (SMALL, {**SMALL, "frontend": ()}, {**SMALL, "frontend": (32, 16), "mlp_ratio": 2},
                      {**SMALL, "inputs": "logmel"}, {**SMALL, "inputs": "logmel", "n_mels": 40, "frontend": ()}):
        config = WaveletClassifierConfig(**overrides)
        assert WaveletClassifier(config).num_parameters() == parameter_count(config)


@pytest.mark.parametrize("pooling", ["none", "avg", "wavelet"])
@pytest.mark.parametrize("samples", [400, 1200, 8000, 16000])
def test_small_shapes_and_shorter_inputs(pooling, samples):
    model = small(pooling=pooling, layers=3)
    logits = model(audio(batch=3, samples=samples))
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()


@pytest.mark.parametrize("pooling, pool", [("avg", average_pool_time), ("wavelet", wavelet_pool), ("none", None)])
def test_forward_is_frontend_positions_blocks_pooled_between_then_mean_and_head(pooling, pool):
    model = small(pooling=pooling, layers=3)
    waveform = audio(samples=8000)  # 0.5 s: 20 patches, the first 20 positions
    x = model.frontend(waveform.reshape(2, 20, 400)) + model.positions[:20]
    for i, layer in enumerate(model.layers):
        x = layer(x)
        if i < 2 and pool is not None:
            x = pool(x)
    assert x.shape[1] == (5 if pooling == "avg" else 20)  # avg: 20 -> 10 -> 5 frames
    expected = model.head(model.norm(x).mean(1))
    torch.testing.assert_close(model(waveform), expected)


def test_attention_is_bidirectional():
    model = small(pooling="none")
    states = []
    model.layers[0].register_forward_hook(lambda module, args, out: states.append(out))
    waveform = audio(batch=1)
    changed = waveform.clone()
    changed[:, -400:] += 0.5  # only the last patch
    model(waveform), model(changed)
    assert not torch.allclose(states[0][:, 0], states[1][:, 0])  # the first frame saw the last one


def test_pooling_variants_differ_for_the_same_weights():
    model = small(pooling="wavelet")
    waveform = audio()
    outputs = {}
    for pooling in ("wavelet", "none", "avg"):
        other = WaveletClassifier(model.config, pooling=pooling).eval()
        other.load_state_dict(model.state_dict())
        outputs[pooling] = other(waveform)
    torch.testing.assert_close(outputs["wavelet"], model(waveform))
    assert (outputs["wavelet"] - outputs["none"]).abs().max() > 1e-4
    assert (outputs["avg"] - outputs["none"]).abs().max() > 1e-4
    # one layer: no pooling step, so the variants agree
    one = small(pooling="wavelet", layers=1)
    other = WaveletClassifier(one.config, pooling="avg").eval()
    other.load_state_dict(one.state_dict())
    torch.testing.assert_close(one(waveform), other(waveform))


@pytest.mark.parametrize("pooling", ["avg", "wavelet"])
def test_batch_rows_are_independent(pooling):
    model = small(pooling=pooling)
    waveform = audio(batch=4)
    together = model(waveform)
    for row in range(4):
        torch.testing.assert_close(model(waveform[row:row + 1]), together[row:row + 1], rtol=1e-5, atol=1e-5)
    other = waveform.clone()
    other[1:] = audio(batch=3, seed=7)
    torch.testing.assert_close(model(other)[0], together[0], rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = small(pooling="avg", wavelet_fractions=[0.75, 0.25], dropout=0.0, multi_label=False)
    path = tmp_path / "clf.safetensors"
    model.save(path)
    loaded = fastwave.load_model(path)
    assert type(loaded) is WaveletClassifier and not loaded.training
    assert loaded.config == model.config
    assert loaded.config.wavelet_fractions == (0.75, 0.25) and loaded.config.frontend == (64,)
    waveform = audio()
    torch.testing.assert_close(loaded(waveform), model(waveform), rtol=0, atol=0)


def test_config_json_round_trip_and_properties():
    config = WaveletClassifierConfig()
    again = WaveletClassifierConfig(**json.loads(json.dumps(config.to_dict())))
    assert again == config and isinstance(again.frontend, tuple) and isinstance(again.wavelet_fractions, tuple)
    assert config.frames == 40 and config.head_dim == 16
    assert WaveletClassifierConfig(clip_samples=32000, patch_size=800, heads=8).frames == 40
    assert WaveletClassifierConfig(num_classes=1).num_classes == 1  # one multi-label tag is a valid task


@pytest.mark.parametrize("overrides, match", [
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 1, "multi_label": False}, "num_classes"),
    ({"width": 30, "heads": 4}, "multiple of heads"),
    ({"heads": 0}, "heads"),
    ({"layers": 0}, "layers"),
    ({"mlp_ratio": 1.5}, "mlp_ratio"),
    ({"patch_size": 0}, "patch_size"),
    ({"sample_rate": 0}, "sample_rate"),
    ({"clip_samples": 1000}, "multiple of patch_size"),
    ({"frontend": (64, 0)}, "frontend"),
    ({"frontend": 64}, "frontend"),
    ({"pooling": "max"}, "pooling"),
    ({"wavelet_fractions": (0.5, 0.4)}, "wavelet_fractions"),
    ({"wavelet_fractions": (1.0,)}, "wavelet_fractions"),
    ({"width": 4, "heads": 1}, "wavelet_fractions"),  # 5 scales need >= 5 channels
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"multi_label": "yes"}, "multi_label"),
    ({"inputs": "mfcc"}, "inputs must be one of"),
    ({"inputs": "logmel", "patch_size": 80, "clip_samples": 16000}, r"n_mels \(64\) exceeds the 41 STFT bins"),
    ({"n_mels": 0}, "n_mels"),
])
def test_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        WaveletClassifierConfig(**{**SMALL, **overrides})


def test_narrow_width_is_fine_without_wavelet_pooling():
    assert WaveletClassifierConfig(width=4, heads=1, pooling="avg").width == 4


@pytest.mark.parametrize("waveform, error, match", [
    (torch.zeros(2, 399), ValueError, r"shorter than one patch of 400 samples \(25 ms at 16 kHz\)"),
    (torch.zeros(2, 1000), ValueError, "not a multiple of patch_size 400"),
    (torch.zeros(2, 16400), ValueError, "longer than clip_samples"),
    (torch.zeros(16000), ValueError, r"\(B, S\)"),
    (torch.zeros(1, 2, 16000), ValueError, r"\(B, S\)"),
    (torch.zeros(2, 16000, dtype=torch.int16), TypeError, "floating point"),
    (torch.full((2, 800), float("nan")), ValueError, "non-finite"),
    ([[0.0] * 400], TypeError, "torch.Tensor"),
])
def test_bad_inputs(waveform, error, match):
    with pytest.raises(error, match=match):
        small()(waveform)


def test_input_dtypes_and_a_bfloat16_model():
    model = small()
    waveform = audio()
    torch.testing.assert_close(model(waveform.double()), model(waveform))
    low = small().to(torch.bfloat16)
    logits = low(waveform)
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), model(waveform), rtol=0.1, atol=0.1)


def test_frontend_filters():
    model = small()
    filters = model.frontend_filters()
    assert filters.shape == (64, 400) and filters.dtype == torch.float32 and not filters.requires_grad
    filters.zero_()  # a copy: the model keeps its weights
    assert model.frontend[0].weight.abs().sum() > 0
    assert WaveletClassifier().frontend_filters().shape == (2048, 400)
    assert small(frontend=()).frontend_filters().shape == (32, 400)



@pytest.mark.parametrize("frontend", [(), (256,), (2048,), (512, 128)])
def test_the_front_end_keeps_the_audios_scale_at_any_width(frontend):
    # At initialisation the embedding's RMS is the audio's, whatever the front end's widths, so it
    # stands above the positions (N(0, 0.02)) at ordinary levels; GPT-2's N(0, 0.02) front end gave
    # 9% of the audio's RMS at 256 hidden units and 25% at 2,048.
    torch.manual_seed(0)
    model = WaveletClassifier(frontend=frontend, num_classes=16).eval()
    for rms in (0.03, 0.3):
        waveform = rms * torch.randn(8, 16000, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            embedded = model.frontend(model.patches(waveform))
        ratio = float(embedded.pow(2).mean().sqrt()) / rms
        assert 0.75 < ratio < 1.33, (frontend, rms, ratio)
    assert float(model.positions.detach().std()) == pytest.approx(0.02, rel=0.1)

def test_loss_and_gradients_reach_the_front_end():
    model = small().train()
    waveform = audio(batch=4)
    targets = torch.zeros(4, 5)
    targets[0, 1] = targets[2, 3] = 1.0
    logits = model(waveform)
    loss = model.loss(logits, targets)
    torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, targets))
    loss.backward()
    assert model.frontend[0].weight.grad.abs().sum() > 0 and model.positions.grad.abs().sum() > 0
    single = small(multi_label=False)
    ids = torch.tensor([0, 4, 2, 1])
    logits = single(waveform)
    torch.testing.assert_close(single.loss(logits, ids), torch.nn.functional.cross_entropy(logits, ids))
    with pytest.raises(ValueError, match="class ids"):
        single.loss(logits, targets)
    with pytest.raises(ValueError, match=r"\(B, num_classes\)"):
        model.loss(logits, ids)


def test_dropout_only_in_training():
    model = small(dropout=0.5)
    waveform = audio()
    torch.testing.assert_close(model(waveform), model(waveform), rtol=0, atol=0)
    model.train()
    assert not torch.allclose(model(waveform), model(waveform))


def test_torch_compile_forward():
    model = small()
    waveform = audio()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # traces without a C++ toolchain
    torch.testing.assert_close(compiled(waveform), model(waveform))


def test_logmel_inputs_are_each_patchs_own_log_mel_frame_standardised():
    """Patch i's input is the log-mel frame of patch i alone (no frame straddles two patches), through
    the per-band norm; the rest of the model is the waveform model's."""
    from fastwave.audio import log_mel_spectrogram

    model = small(inputs="logmel", n_mels=40)
    waveform = audio(samples=4000)  # 10 patches
    inputs = model.inputs(waveform)
    assert inputs.shape == (2, 10, 40)
    norm = model.input_norm
    for b in range(2):
        for i in (0, 3, 9):
            patch = waveform[b, 400 * i:400 * (i + 1)]
            frame = log_mel_spectrogram(patch, 16000, n_fft=400, hop_length=400, n_mels=40, center=False)[:, 0]
            expected = (frame - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)  # eval mode
            torch.testing.assert_close(inputs[b, i], expected, rtol=1e-5, atol=1e-5)
    x = model.frontend(inputs) + model.positions[:10]
    for i, layer in enumerate(model.layers):
        x = layer(x)
        if i < len(model.layers) - 1:
            x = model.pool(x)
    torch.testing.assert_close(model(waveform), model.head(model.norm(x).mean(1)), rtol=1e-5, atol=1e-5)


def test_a_logmel_model_trains_its_norm_and_round_trips(tmp_path):
    model = small(inputs="logmel").train()
    loss = model(audio(batch=4)).square().mean()
    loss.backward()
    assert model.input_norm.weight.grad is not None and model.frontend[0].weight.grad.abs().sum() > 0
    assert model.input_norm.num_batches_tracked == 1
    model.eval().save(tmp_path / "m.safetensors")
    loaded = fastwave.load_model(tmp_path / "m.safetensors")
    assert loaded.config.inputs == "logmel"
    torch.testing.assert_close(loaded(audio()), model(audio()), rtol=0, atol=0)
    with pytest.raises(ValueError, match="no FIR filters"):
        model.frontend_filters()
