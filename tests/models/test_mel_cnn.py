"""The log-mel CNN baseline: shapes for every input length it takes, its documented size, save /
load, what it learns on generated multi-label sounds through fastwave.tagging.classify, and its refusals."""
import pytest
import torch

import fastwave
from fastwave.audio import log_mel_spectrogram
from fastwave.tagging.classify import check_data, evaluate_classifier, train_classifier
from fastwave.training.clip_windows import WindowedClips
from synthetic_audio import SOUNDS, tagged_mixtures

pytestmark = pytest.mark.usefixtures("one_thread")


def small(**kw):
    torch.manual_seed(0)
    return fastwave.LogMelCNN(**{**dict(num_classes=3, channels=(8, 16), n_mels=32, labels=SOUNDS), **kw})


def test_default_size_is_the_documented_one():
    model = fastwave.LogMelCNN()
    assert model.num_parameters() == 1_224_168
    assert "1,224,168" in fastwave.models.mel_cnn.__doc__


@pytest.mark.parametrize("samples", [160, 320, 1600, 16000])
def test_every_whole_hop_up_to_a_clip_gives_logits(samples):
    model = small().eval()
    logits = model(torch.randn(2, samples))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert model.features(torch.randn(2, samples)).shape == (2, 16)


def test_log_mel_is_the_library_transform():
    model = small()
    audio = torch.randn(2, 1600)
    torch.testing.assert_close(model.log_mel(audio), log_mel_spectrogram(audio, 16000, 512, 160, 32))


def test_saves_and_loads_with_its_config(tmp_path):
    model = small(channels=(4, 8, 16)).eval()
    model.save(tmp_path / "cnn.safetensors")
    loaded = fastwave.load_model(tmp_path / "cnn.safetensors")
    assert isinstance(loaded, fastwave.LogMelCNN) and loaded.config == model.config
    audio = torch.randn(3, 4800)
    torch.testing.assert_close(loaded(audio), model(audio), rtol=0, atol=0)


def test_learns_tags_of_new_clips():
    def data(n, seed):
        clips, targets = tagged_mixtures(n, seconds=(0.5, 1.0), seed=seed)
        return WindowedClips.from_arrays(clips, targets, sample_rate=16000, vocabulary=list(SOUNDS))

    train, test = data(64, 0), data(32, 1)
    model = small(channels=(16, 32), dropout=0.0)
    check_data(model, train)
    before = evaluate_classifier(model, test).metrics["mAP"]
    history = train_classifier(model, train, epochs=12, batch_size=16, lr=3e-3, progress=False)
    after = evaluate_classifier(model, test).metrics["mAP"]
    # Measured: mAP 0.67 before, 0.96 after; the loss falls from 0.91 to 0.36.
    assert after > 0.9 > before
    assert history["loss"][-1] < 0.5 * history["loss"][0]


@pytest.mark.parametrize("overrides, message", [
    (dict(channels=()), "at least one conv block"),
    (dict(channels=(8, 0)), "positive ints"),
    (dict(n_mels=300), "exceeds the 257 STFT bins"),
    (dict(clip_samples=16100), "multiple of hop_length"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (dict(labels=("a", "b")), "3 classes but 2 labels"),
    (dict(multi_label=False, num_classes=1), "num_classes"),
])
def test_bad_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        small(**overrides)


@pytest.mark.parametrize("waveform, error, message", [
    (torch.zeros(2, 100), ValueError, "shorter than one patch of 160 samples"),
    (torch.zeros(2, 1000), ValueError, "not a multiple of patch_size 160"),
    (torch.zeros(2, 16160), ValueError, "longer than clip_samples"),
    (torch.zeros(2, 320, dtype=torch.int16), TypeError, "floating point"),
    (torch.full((2, 320), float("nan")), ValueError, "non-finite"),
])
def test_bad_waveforms_are_refused(waveform, error, message):
    with pytest.raises(error, match=message):
        small()(waveform)
