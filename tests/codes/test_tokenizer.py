"""CodeTokenizer: patches, the autoencoder + k-means fit, encode / decode, save / load, bad input."""
import numpy as np
import pytest
import torch

import fastwave
from fastwave.codes.tokenizer import CodeTokenizer, TokenizerConfig
from synthetic_audio import timbre_clips

SMALL = {"n_mels": 32, "patch_frames": 4, "hidden": (64, 32), "bottleneck": 16, "codes": 16}


@pytest.fixture(scope="module")
def clips():
    return timbre_clips(per_class=8, seconds=0.5)[0]


@pytest.fixture(scope="module")
def fitted(clips):
    tokenizer = CodeTokenizer(**SMALL)
    history = tokenizer.fit(clips, steps=300, batch_size=32, seed=0, progress=False)
    return tokenizer, history


def test_patches_cover_whole_patches_only():
    tokenizer = CodeTokenizer(**SMALL)
    c = tokenizer.config
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * c.patch_samples + 100).astype(np.float32)
    patches = tokenizer.patches(audio)
    assert patches.shape == (3, c.patch_size)
    spec = fastwave.audio.log_mel_spectrogram(audio, c.sample_rate, c.n_fft, c.hop_length, c.n_mels)
    # patch i is frames [4i, 4i + 4) of every band, frequency-major
    torch.testing.assert_close(patches[1].reshape(c.n_mels, c.patch_frames), spec[:, 4:8])
    batch = tokenizer.patches(np.stack([audio, audio[::-1].copy()]))
    assert batch.shape == (2, 3, c.patch_size)
    torch.testing.assert_close(batch[0], patches)


def test_stft_features():
    tokenizer = CodeTokenizer(**{**SMALL, "features": "stft", "n_fft": 128, "hop_length": 64})
    assert tokenizer.config.feature_bins == 65
    assert tokenizer.patches(np.zeros(1000, np.float32)).shape == (1000 // 256, 65 * 4)


def test_fit_trains_the_autoencoder(fitted):
    _, history = fitted
    assert history["patches"] == 8 * 3 * (8000 // 640)
    losses = history["autoencoder_loss"]
    assert len(losses) == 300 and sum(losses[-20:]) < 0.4 * sum(losses[:20])


def test_round_trip_beats_the_mean_patch(fitted, clips):
    tokenizer, _ = fitted
    c = tokenizer.config
    patches = torch.cat([tokenizer.patches(clip) for clip in clips])
    decoded = torch.cat([tokenizer.decode(tokenizer.encode(clip)) for clip in clips])
    assert decoded.shape == (len(patches), c.n_mels, c.patch_frames)
    error = (decoded.flatten(1) - patches).pow(2).mean()
    baseline = (patches.mean(0) - patches).pow(2).mean()
    assert error < 0.5 * baseline, (float(error), float(baseline))


def test_encode_is_deterministic_and_batches(fitted, clips):
    tokenizer, _ = fitted
    codes = tokenizer.encode(clips[0])
    assert codes.dtype == torch.int64 and codes.shape == (8000 // 640,)
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    torch.testing.assert_close(tokenizer.encode(clips[0]), codes, rtol=0, atol=0)
    torch.testing.assert_close(tokenizer.encode(np.stack(clips[:3]))[0], codes, rtol=0, atol=0)
    torch.testing.assert_close(tokenizer.encode(torch.from_numpy(clips[0])), codes, rtol=0, atol=0)


def test_fit_is_deterministic(fitted, clips):
    tokenizer, _ = fitted
    again = CodeTokenizer(**SMALL)
    again.fit(clips, steps=300, batch_size=32, seed=0, progress=False)
    torch.testing.assert_close(again.centroids, tokenizer.centroids, rtol=0, atol=0)


def test_codes_use_the_dictionary(fitted, clips):
    tokenizer, _ = fitted
    used = torch.unique(torch.cat([tokenizer.encode(clip) for clip in clips]))
    assert len(used) >= 8  # the 16 centroids are spread over the data, not collapsed


def test_save_load_round_trip(fitted, clips, tmp_path):
    tokenizer, _ = fitted
    tokenizer.save(tmp_path / "tok.safetensors")
    loaded = CodeTokenizer.load(tmp_path / "tok.safetensors")
    assert loaded.config == tokenizer.config and loaded.is_fitted
    torch.testing.assert_close(loaded.encode(clips[5]), tokenizer.encode(clips[5]), rtol=0, atol=0)
    torch.testing.assert_close(loaded.decode([1, 2]), tokenizer.decode([1, 2]))
    lm = fastwave.CodeLM(classes=16, layers=1, heads=2, width=32)
    lm.save(tmp_path / "lm.safetensors")
    with pytest.raises(ValueError, match="not a code tokenizer"):
        CodeTokenizer.load(tmp_path / "lm.safetensors")


def test_files_and_folders(fitted, clips, tmp_path):
    tokenizer, _ = fitted
    (tmp_path / "a").mkdir()
    fastwave.save_audio(tmp_path / "a" / "x.wav", clips[0], 16000)
    fastwave.save_audio(tmp_path / "y.wav", fastwave.audio.resample(clips[1], 16000, 8000), 8000)
    patches = tokenizer.features_of([tmp_path])
    assert patches.shape[0] == 2 * (8000 // 640)
    torch.testing.assert_close(tokenizer.encode_item(str(tmp_path / "a" / "x.wav")), tokenizer.encode(clips[0]),
                               rtol=0, atol=0)  # float32 wav: exact
    assert tokenizer.encode_item(tmp_path / "y.wav").shape == (8000 // 640,)  # resampled to 16 kHz


def test_with_codes_keeps_the_autoencoder(fitted, clips):
    tokenizer, _ = fitted
    other = tokenizer.with_codes(32, clips)
    assert other.config.codes == 32 and other.centroids.shape == (32, 16)
    assert tokenizer.config.codes == 16 and tokenizer.centroids.shape == (16, 16)
    for a, b in zip(other.autoencoder.parameters(), tokenizer.autoencoder.parameters()):
        assert torch.equal(a, b)
    assert int(other.encode(clips[0]).max()) < 32


def test_unfitted_tokenizer_refuses(tmp_path):
    tokenizer = CodeTokenizer(**SMALL)
    with pytest.raises(ValueError, match="not fitted"):
        tokenizer.encode(np.zeros(1000, np.float32))
    with pytest.raises(ValueError, match="not fitted"):
        tokenizer.save(tmp_path / "t.safetensors")


def test_bad_inputs(fitted, clips):
    tokenizer, _ = fitted
    with pytest.raises(ValueError, match="at least 640"):
        tokenizer.encode(np.zeros(500, np.float32))
    with pytest.raises(ValueError, match="22050 Hz but this tokenizer works at 16000"):
        tokenizer.encode(clips[0], sample_rate=22050)
    with pytest.raises(ValueError, match="item 1: .*at least 640"):
        CodeTokenizer(**SMALL).fit([clips[0], np.zeros(100, np.float32)], progress=False)
    with pytest.raises(ValueError, match="22050 Hz"):
        CodeTokenizer(**SMALL).fit([(clips[0], 22050)], progress=False)
    with pytest.raises(ValueError, match="codes=64 but the audio gives only 12 patches"):
        CodeTokenizer(**{**SMALL, "codes": 64}).fit([clips[0]], progress=False)
    with pytest.raises(TypeError, match="floating point"):
        tokenizer.encode(np.zeros(1000, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        tokenizer.encode(np.full(1000, np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        tokenizer.decode([3, 16])


@pytest.mark.parametrize("overrides, message", [
    ({"features": "mfcc"}, "features"), ({"codes": 1}, "codes"), ({"hidden": (64, 0)}, "hidden"),
    ({"patch_frames": 0}, "patch_frames")])
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        TokenizerConfig(**overrides)


def test_a_refused_refit_keeps_the_fitted_tokenizer(fitted, clips):
    tokenizer, _ = fitted
    before = tokenizer.encode(clips[3])
    state = {k: v.clone() for k, v in tokenizer.state_dict().items()}
    for bad in ({"kmeans_iterations": -1}, {"lr": 0.0}, {"steps": 0}, {"seed": -1}):
        with pytest.raises(ValueError):
            tokenizer.fit(clips, progress=False, **bad)
    assert tokenizer.is_fitted
    assert all(torch.equal(v, state[k]) for k, v in tokenizer.state_dict().items())
    torch.testing.assert_close(tokenizer.encode(clips[3]), before, rtol=0, atol=0)


def test_fit_takes_arrays_and_works_under_no_grad(clips):
    one = CodeTokenizer(**{**SMALL, "codes": 8})
    with torch.no_grad():
        history = one.fit(np.stack(clips[:4]), steps=100, batch_size=16, progress=False)  # (B, T): B clips
    losses = history["autoencoder_loss"]
    assert history["patches"] == 4 * 12 and sum(losses[-10:]) < 0.7 * sum(losses[:10])  # it trained
    assert CodeTokenizer(**{**SMALL, "codes": 8}).fit(clips[0], steps=2, progress=False)["patches"] == 12
    with torch.inference_mode(), pytest.raises(ValueError, match="inference_mode"):
        CodeTokenizer(**SMALL).fit(clips, steps=2, progress=False)


def test_with_codes_from_patches(fitted, clips):
    tokenizer, _ = fitted
    patches = tokenizer.features_of(clips)
    other = tokenizer.with_codes(8, patches=patches)
    torch.testing.assert_close(other.centroids, tokenizer.with_codes(8, clips).centroids, rtol=0, atol=0)
    torch.testing.assert_close(other.encode_patches(tokenizer.patches(clips[0])), other.encode(clips[0]),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="one of them"):
        tokenizer.with_codes(8)
    with pytest.raises(ValueError, match="patches must be"):
        tokenizer.with_codes(8, patches=patches[:, :-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tokenizer_and_code_lm_match_the_cpu(fitted, clips):
    import copy

    tokenizer, _ = fitted
    gpu = copy.deepcopy(tokenizer).to("cuda")
    cpu_codes = torch.cat([tokenizer.encode(clip) for clip in clips])
    gpu_codes = torch.cat([gpu.encode(clip) for clip in clips])
    assert (cpu_codes == gpu_codes).float().mean() > 0.95  # float rounding may flip a near-tie
    refit = CodeTokenizer(**SMALL).to("cuda")
    refit.fit(clips, steps=50, batch_size=32, progress=False)
    assert refit.encode(clips[0]).device.type == "cpu" and refit.centroids.device.type == "cuda"
    lm = fastwave.CodeLM(classes=16, layers=1, heads=2, width=32, context=16).cuda()
    vectors = lm.embed([gpu_codes[:12], gpu_codes[12:30]])
    torch.testing.assert_close(vectors, lm.cpu().embed([gpu_codes[:12], gpu_codes[12:30]]), rtol=1e-3, atol=1e-3)
