"""fastwave.audio.emphasis: the noise shaping a sample model can be trained with."""
import numpy as np
import pytest
import torch

from fastwave.audio import de_emphasis, mulaw_decode, mulaw_encode, pre_emphasis


def written_out(x, a):
    """p[n] = (x[n] - a x[n-1]) / (1 + a), x[-1] = 0, one sample at a time."""
    p, previous = np.zeros_like(x), 0.0
    for n, value in enumerate(x):
        p[n] = (value - a * previous) / (1 + a)
        previous = value
    return p


def test_pre_emphasis_is_the_written_out_filter_and_de_emphasis_inverts_it():
    x = np.random.default_rng(0).uniform(-1, 1, 500)
    np.testing.assert_allclose(pre_emphasis(x, 0.85), written_out(x, 0.85), atol=1e-12)
    np.testing.assert_allclose(de_emphasis(pre_emphasis(x, 0.85), 0.85), x, atol=1e-9)


def test_kind_shape_and_dtype_are_kept_and_time_is_the_last_axis():
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (2, 300)).astype(np.float32))
    p = pre_emphasis(x, 0.9)
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float32 and p.shape == (2, 300)
    for row in range(2):  # each stream filtered on its own
        np.testing.assert_allclose(p[row].numpy(), written_out(x[row].numpy().astype(np.float64), 0.9), atol=1e-6)
    assert isinstance(de_emphasis(x.numpy(), 0.9), np.ndarray)


def test_pre_emphasis_never_leaves_the_mulaw_range():
    worst = np.tile([1.0, -1.0], 100)  # the largest step there is
    p = pre_emphasis(worst, 0.95)
    assert np.abs(p).max() <= 1.0
    assert np.abs(p).max() == pytest.approx(1.0)


def test_no_emphasis_is_the_input_itself():
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    assert pre_emphasis(x, 0.0) is x and de_emphasis(x, 0) is x


def test_noise_in_the_token_domain_comes_out_tilted_by_the_documented_factor():
    """White noise added before de-emphasis: its power at the bottom of the band over that at the
    top is ((1 + a) / (1 - a))^2 / ((1 + a) / (1 + a))^2 = ((1 + a) / (1 - a))^2."""
    a = 0.85
    noise = np.random.default_rng(2).normal(0, 1e-3, (64, 4096))
    power = (np.abs(np.fft.rfft(de_emphasis(noise, a), axis=-1)) ** 2).mean(0)
    low, high = power[1:9].mean(), power[-9:].mean()
    assert low / high == pytest.approx(((1 + a) / (1 - a)) ** 2, rel=0.15)


def test_a_round_trip_through_mulaw_keeps_a_tone():
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    y = de_emphasis(mulaw_decode(mulaw_encode(pre_emphasis(x, 0.85))), 0.85)
    assert np.sqrt(np.mean((y - x) ** 2)) < 0.05 * np.sqrt(np.mean(x ** 2))  # 8-bit mu-law: about 1%


@pytest.mark.parametrize("bad", [1.0, -0.1, True, float("nan"), "0.85"])
def test_a_bad_coefficient_is_refused(bad):
    with pytest.raises(ValueError, match="coefficient"):
        pre_emphasis(np.zeros(4, np.float32), bad)


def test_bad_audio_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        de_emphasis(np.array([0.0, np.nan]), 0.5)
    with pytest.raises(ValueError, match="floating"):
        pre_emphasis(np.zeros(4, np.int64), 0.5)
