"""Training and evaluating the wavelet Audio Transformer on generated multi-label sounds (tones and
noise bursts): it overfits a tiny set, generalises to new clips, resumes exactly, and refuses bad
inputs (wrong rate, too short, mismatched data)."""
import os
import signal

import numpy as np
import pytest
import torch

import fastwave
from fastwave.tagging.classify import (
    check_data,
    classify_audio,
    clip_probabilities,
    evaluate_classifier,
    train_classifier,
)
from fastwave.training.clip_windows import WindowedClips
from fastwave.training.metrics import multilabel_metrics
from fastwave.training.loop import STATE
from synthetic_audio import SOUNDS, tagged_mixtures


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(pooling="wavelet", seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(num_classes=3, frontend=(64,), width=32, heads=2, layers=2, dropout=0.0, labels=SOUNDS)
    return fastwave.WaveletClassifier(pooling=pooling, **{**args, **kw})


def mixtures(n, seed):
    clips, targets = tagged_mixtures(n, seconds=(0.5, 1.6), seed=seed)
    return WindowedClips.from_arrays(clips, targets, sample_rate=16000, vocabulary=list(SOUNDS))


@pytest.mark.parametrize("pooling", ["none", "avg", "wavelet"])
def test_overfits_a_tiny_multi_label_set(pooling):
    data = mixtures(24, seed=0)
    model = tiny(pooling)
    before = evaluate_classifier(model, data).metrics["mAP"]
    history = train_classifier(model, data, data, epochs=30, batch_size=8, lr=3e-3, progress=False)
    after = evaluate_classifier(model, data)
    assert after.metrics["mAP"] == 1.0 > before
    assert after.metrics["classes_scored"] == 3 and after.clips == 24 and after.windows == len(data)
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    assert [e["epoch"] for e in history["eval"]] == list(range(1, 31))
    assert history["best"]["mAP"] == max(e["mAP"] for e in history["eval"])


def test_a_budget_of_steps_replaces_epochs_and_evaluation_follows_eval_every():
    data = mixtures(24, seed=0)
    history = train_classifier(tiny(), data, data, epochs=99, steps=7, eval_every=3, batch_size=8, progress=False)
    assert len(history["loss"]) == 7
    assert [e["step"] for e in history["eval"]] == [3, 6, 7]  # every 3 steps, and after the last
    assert [e["epoch"] for e in history["eval"]] == [step // (len(data) // 8) for step in (3, 6, 7)]
    assert history["best"]["mAP"] == max(e["mAP"] for e in history["eval"])
    with pytest.raises(ValueError, match="steps"):
        train_classifier(tiny(), data, data, steps=0, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="eval_every"):
        train_classifier(tiny(), data, data, epochs=1, eval_every=0, batch_size=8, progress=False)


def test_generalises_to_new_clips():
    train, test = mixtures(96, seed=0), mixtures(48, seed=1)
    chance = multilabel_metrics(np.random.default_rng(0).random(test.targets.shape), test.targets)
    model = tiny()
    train_classifier(model, train, epochs=30, batch_size=16, lr=3e-3, progress=False)
    held_out = evaluate_classifier(model, test).metrics
    # Measured: mAP 0.88, d' 1.29; random scores: mAP 0.73 (the classes are common), d' 0.29.
    assert held_out["mAP"] > 0.8 > chance.mAP and held_out["d_prime"] > 1.0 > chance.d_prime


def test_clip_scores_average_the_window_probabilities():
    data = mixtures(5, seed=2)
    model = tiny()
    windows, _ = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        per_window = torch.sigmoid(model(windows))
    expected = torch.stack([per_window[data.clip_of_window == j].mean(0) for j in range(data.num_clips)])
    torch.testing.assert_close(clip_probabilities(model, data, batch_size=3), expected)
    for j in range(data.num_clips):
        torch.testing.assert_close(classify_audio(model, data.clip_audio(j).numpy(), 16000), expected[j])


def test_multi_class_report_has_accuracy_and_top5():
    clips, targets = tagged_mixtures(12, seed=3)
    ids = targets.argmax(1).astype(np.int64)
    data = WindowedClips.from_arrays(clips, ids, sample_rate=16000, vocabulary=list(SOUNDS))
    model = tiny(multi_label=False)
    report = evaluate_classifier(model, data)
    scores = clip_probabilities(model, data)
    assert report.metrics["accuracy"] == pytest.approx(float((scores.argmax(1) == torch.as_tensor(ids)).float().mean()))
    assert report.metrics["top5"] == 1.0  # 3 classes
    assert "accuracy (top-1)" in report.table() and report.headline == report.metrics["accuracy"]


def test_training_resumes_exactly_with_dropout(tmp_path):
    data = mixtures(12, seed=4)
    args = dict(epochs=4, batch_size=4, lr=3e-3, progress=False)
    straight = tiny(dropout=0.1)
    train_classifier(straight, data, data, **args)
    first = tiny(dropout=0.1)
    train_classifier(first, data, data, **{**args, "epochs": 2}, checkpoint_dir=tmp_path)
    # A 2-epoch run has another schedule, so a 4-epoch resume from it is refused...
    with pytest.raises(ValueError, match="other settings"):
        train_classifier(tiny(dropout=0.1), data, data, **args, checkpoint_dir=tmp_path, resume=True)
    # ...while an interrupted 4-epoch run resumes to the uninterrupted weights.
    (tmp_path / STATE).unlink()
    real_batch, calls = WindowedClips.batch, []

    def interrupted(self, indices):
        calls.append(1)
        if len(calls) == 5:  # Ctrl-C at the first batch of epoch 2 (3 batches + 1 evaluation batch per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real_batch(self, indices)

    WindowedClips.batch = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            train_classifier(tiny(dropout=0.1), data, data, **args, checkpoint_dir=tmp_path)
    finally:
        WindowedClips.batch = real_batch
    assert torch.load(tmp_path / STATE, weights_only=True)["step"] == 4  # that step finished, then stopped
    resumed = tiny(dropout=0.1, seed=9)
    train_classifier(resumed, data, data, **args, checkpoint_dir=tmp_path, resume=True)
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    best = fastwave.load_model(tmp_path / "best.safetensors")
    assert isinstance(best, fastwave.WaveletClassifier) and best.config == resumed.config


def test_checkpoint_round_trip_keeps_labels_and_scores(tmp_path):
    model = tiny()
    model.save(tmp_path / "m.safetensors")
    loaded = fastwave.load_model(tmp_path / "m.safetensors")
    assert loaded.config.labels == SOUNDS and loaded.config == model.config
    data = mixtures(4, seed=5)
    assert torch.equal(clip_probabilities(loaded, data), clip_probabilities(model, data))


def test_bad_inputs_get_clear_errors():
    model = tiny()
    audio = np.zeros(16000, np.float32)
    with pytest.raises(ValueError, match="8000.*16000 Hz"):
        classify_audio(model, audio, 8000)
    with pytest.raises(ValueError, match="shorter than min_samples=400"):
        classify_audio(model, audio[:399], 16000)
    assert classify_audio(model, audio[:400], 16000).shape == (3,)  # one patch is enough (zero-padded)
    clips, targets = tagged_mixtures(3, seed=6)
    at_8k = WindowedClips.from_arrays(clips, targets, sample_rate=8000)
    with pytest.raises(ValueError, match="8000 Hz but the model takes 16000 Hz"):
        check_data(model, at_8k)
    odd_window = WindowedClips.from_arrays(clips, targets, sample_rate=16000, window=1000)
    with pytest.raises(ValueError, match="windows of 1000 samples"):
        check_data(model, odd_window)
    with pytest.raises(ValueError, match="multi-class but the model is multi-label"):
        check_data(model, WindowedClips.from_arrays(clips, targets.argmax(1).astype(np.int64), sample_rate=16000))
    with pytest.raises(ValueError, match="4 classes but the model has 3"):
        check_data(model, WindowedClips.from_arrays(clips, np.pad(targets, ((0, 0), (0, 1))), sample_rate=16000))
    renamed = WindowedClips.from_arrays(clips, targets, sample_rate=16000, vocabulary=["a", "b", "c"])
    with pytest.raises(ValueError, match="label names differ"):
        check_data(model, renamed)
    with pytest.raises(TypeError, match="WindowedClips"):
        check_data(model, (clips, targets))
    data = mixtures(3, seed=7)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train_classifier(model, data, epochs=1, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="labels"):
        fastwave.WaveletClassifier(num_classes=3, labels=("a", "b"))
