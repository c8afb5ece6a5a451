"""Waveform augmentation: each transform does what it says, draws are a pure function of the step's
generator and independent of how the batch is split over processes, mixing joins labels (and is
refused without them), and augmented training resumes exactly."""
import os
import signal

import pytest
import torch

import fastwave
import fastwave.tagging.classify as classify
from fastwave.tagging.classify import train_classifier
from fastwave.training.augment import WaveAugment, augmented_batch
from fastwave.training.clip_windows import WindowedClips
from fastwave.training.loop import STATE, step_generator
from synthetic_audio import SOUNDS, tagged_mixtures

pytestmark = pytest.mark.usefixtures("one_thread")


def ramps(batch=6, samples=20):
    windows = torch.arange(1, samples + 1, dtype=torch.float32).repeat(batch, 1) * torch.arange(1, batch + 1)[:, None]
    targets = torch.eye(batch, 3)  # multi-hot rows (some empty)
    return windows, targets


def applied(augment, windows, targets, seed=0, **override):
    draws = augment.draw(len(windows), torch.Generator().manual_seed(seed))
    draws.update(override)
    partner = draws["partner"]
    draws.update(partner_windows=windows[partner], partner_targets=targets[partner], partner_shift=draws["shift"][partner])
    return augment.apply(windows, targets, draws), draws


def test_shift_moves_each_window_and_zero_fills():
    windows, targets = ramps()
    (out, same_targets), draws = applied(WaveAugment(shift=3), windows, targets)
    assert torch.equal(same_targets, targets)
    assert draws["shift"].abs().max() <= 3 and len(set(draws["shift"].tolist())) > 1
    for row, shift in enumerate(draws["shift"].tolist()):
        expected = torch.zeros(20)
        if shift >= 0:
            expected[shift:] = windows[row, :20 - shift]
        else:
            expected[:shift] = windows[row, -shift:]
        assert torch.equal(out[row], expected), (row, shift)


def test_gain_and_polarity_scale_within_their_ranges():
    windows, targets = ramps(batch=400)
    (out, _), _ = applied(WaveAugment(gain_db=6.0, polarity=True), windows, targets)
    scale = out[:, 0] / windows[:, 0]
    assert ((scale.abs() >= 10 ** (-6 / 20) - 1e-6) & (scale.abs() <= 10 ** (6 / 20) + 1e-6)).all()
    assert 0.4 < (scale < 0).float().mean() < 0.6  # half flipped
    assert scale.abs().std() > 0.1  # gains differ
    torch.testing.assert_close(out, windows * scale[:, None])  # one factor per window


def test_mix_adds_a_partner_and_joins_its_labels():
    windows, targets = ramps()
    augment = WaveAugment(mix=1.0)
    (out, joined), draws = applied(augment, windows, targets)
    partner = draws["partner"]
    assert (partner != torch.arange(6)).all()  # never itself
    expected = windows + windows[partner] * draws["partner_scale"].float()[:, None]
    torch.testing.assert_close(out, expected)
    assert torch.equal(joined, torch.maximum(targets, targets[partner]))
    assert ((draws["partner_scale"] >= 10 ** (-12 / 20)) & (draws["partner_scale"] <= 1)).all()
    (unmixed, kept), _ = applied(WaveAugment(mix=0.0), windows, targets)
    assert torch.equal(unmixed, windows) and torch.equal(kept, targets)
    with pytest.raises(ValueError, match="multi-label"):
        applied(augment, windows, torch.arange(6))


def data(n=12, seed=4):
    clips, targets = tagged_mixtures(n, seconds=(0.5, 1.6), seed=seed)
    return WindowedClips.from_arrays(clips, targets, sample_rate=16000, vocabulary=list(SOUNDS))


def test_a_batch_is_the_same_however_it_is_split_over_processes():
    windows = data()
    picked = torch.arange(8)
    augment = WaveAugment(shift=400, gain_db=6.0, polarity=True, mix=0.5)
    whole = augmented_batch(augment, windows, picked, step_generator(0, 5, 1))
    again = augmented_batch(augment, windows, picked, step_generator(0, 5, 1))
    assert all(torch.equal(a, b) for a, b in zip(whole, again))  # a pure function of (seed, step)
    for world in (2, 4):
        for rank in range(world):
            part = augmented_batch(augment, windows, picked, step_generator(0, 5, 1), rows=slice(rank, None, world))
            assert torch.equal(part[0], whole[0][rank::world]) and torch.equal(part[1], whole[1][rank::world])
    other = augmented_batch(augment, windows, picked, step_generator(0, 6, 1))
    assert not torch.equal(other[0], whole[0])


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return fastwave.WaveletClassifier(num_classes=3, frontend=(64,), width=32, heads=2, layers=2, labels=SOUNDS,
                                      **{"dropout": 0.0, **kw})


def test_augmented_training_resumes_exactly(tmp_path, monkeypatch):
    windows = data()
    args = dict(epochs=4, batch_size=4, lr=3e-3, progress=False,
                augment=WaveAugment(shift=800, gain_db=6.0, polarity=True, mix=0.5))
    straight = tiny(dropout=0.1)
    train_classifier(straight, windows, windows, **args)
    plain = tiny(dropout=0.1)
    train_classifier(plain, windows, windows, **{**args, "augment": None})
    assert not torch.equal(plain.head.weight, straight.head.weight)  # the augmentation took part
    calls, real = [], classify.augmented_batch

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 4:  # Ctrl-C at the first batch of epoch 2 (3 batches per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **kw)

    monkeypatch.setattr(classify, "augmented_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny(dropout=0.1), windows, windows, **args, checkpoint_dir=tmp_path)
    monkeypatch.setattr(classify, "augmented_batch", real)
    assert torch.load(tmp_path / STATE, weights_only=True)["step"] == 4
    with pytest.raises(ValueError, match="other settings"):  # another augmentation is another run
        train_classifier(tiny(dropout=0.1), windows, windows, **{**args, "augment": WaveAugment(gain_db=3.0)},
                         checkpoint_dir=tmp_path, resume=True)
    resumed = tiny(dropout=0.1, seed=9)
    train_classifier(resumed, windows, windows, **args, checkpoint_dir=tmp_path, resume=True)
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


@pytest.mark.parametrize("kwargs, message", [
    ({"shift": -1}, "shift"), ({"shift": 1.5}, "shift"), ({"gain_db": float("nan")}, "gain_db"),
    ({"gain_db": 50}, "gain_db"), ({"polarity": 1}, "polarity"), ({"mix": 1.5}, "mix")])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WaveAugment(**kwargs)


def test_mixing_single_label_data_is_refused():
    single = fastwave.WaveletClassifier(num_classes=3, frontend=(64,), width=32, heads=2, layers=2, labels=SOUNDS,
                                        multi_label=False)
    clips, targets = tagged_mixtures(8, seconds=(0.5, 1.0), seed=1)
    windows = WindowedClips.from_arrays(clips, targets.argmax(1), sample_rate=16000, vocabulary=list(SOUNDS))
    with pytest.raises(ValueError, match="multi-label"):
        train_classifier(single, windows, None, epochs=1, batch_size=4, progress=False, augment=WaveAugment(mix=0.5))
