import numpy as np
import pytest
import torch

from fastwave.codes.linear_probe import LinearProbe, chance_accuracy, evaluate_probe, fit_linear_probe

GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(rng, n, centers):
    y = rng.integers(0, len(centers), n)
    return (centers[y] + rng.normal(size=(n, centers.shape[1]))).astype(np.float32), y


def correlated(rng, n):
    """Two classes told apart by x1 - x0 only, under a shared component 10x larger: the
    class-mean direction that a heavy L2 penalty falls back on is useless, so a weak one wins."""
    y = rng.integers(0, 2, n)
    z = 10 * rng.normal(size=n)
    signal = np.stack([z, z + (2 * y - 1) * 0.5 + 0.05 * rng.normal(size=n)], axis=1)
    return np.concatenate([signal, rng.normal(size=(n, 6))], axis=1), y


def weak_everywhere(rng, n, dim=30):
    """Every feature weakly informative, few samples: a weak penalty overfits the noise."""
    y = rng.integers(0, 2, n)
    return rng.normal(size=(n, dim)) + 0.3 * (2 * y[:, None] - 1), y


def test_separable_blobs():
    rng = np.random.default_rng(0)
    centers = 4.0 * rng.normal(size=(3, 8))
    (tx, ty), (vx, vy), (ex, ey) = (blobs(rng, n, centers) for n in (150, 150, 600))
    probe = fit_linear_probe(tx, ty, vx, vy)
    assert isinstance(probe, LinearProbe) and probe.weight.shape == (3, 8) and probe.bias.shape == (3,)
    assert probe.weight_decay in GRID
    acc = evaluate_probe(probe, ex, ey)["accuracy"]
    assert acc >= 0.95
    assert acc > chance_accuracy(ty, ey) + 0.4
    assert probe.scores(ex).shape == (600, 3)


def test_noise_stays_near_chance():
    # Test labels independent of everything: any classifier's expected accuracy is ~1/3; the
    # std of the estimate over 3000 clips is ~0.009.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3400, 16)), rng.integers(0, 3, 3400)
    probe = fit_linear_probe(x[:200], y[:200], x[200:400], y[200:400])
    acc = evaluate_probe(probe, x[400:], y[400:])["accuracy"]
    assert abs(acc - 1 / 3) < 0.05
    assert abs(chance_accuracy(y[:200], y[400:]) - 1 / 3) < 0.05


def test_multi_label():
    # Two independent binary attributes, each written along its own random direction, plus noise.
    rng = np.random.default_rng(2)
    directions = rng.normal(size=(2, 8))

    def draw(n):
        attributes = rng.random((n, 2)) < 0.4
        return attributes @ (2 * directions) + 0.5 * rng.normal(size=(n, 8)), attributes.astype(np.int64)

    (tx, ty), (vx, vy), (ex, ey) = draw(200), draw(200), draw(1000)
    probe = fit_linear_probe(tx, ty, vx, vy, multi_label=True)
    assert probe.multi_label and probe.weight.shape == (2, 8) and probe.weight_decay in GRID
    metrics = evaluate_probe(probe, ex, ey)
    assert set(metrics) == {"mAP", "micro_ap", "d_prime"}
    assert metrics["mAP"] >= 0.9 and metrics["micro_ap"] >= 0.9 and metrics["d_prime"] > 2


def test_noisier_data_chooses_a_larger_decay():
    # One seed is not reliable (over 100 seeds: clean <= 1e-4 in 100, noisy >= 1e-2 in 96), so the
    # medians over 5 seeds are compared: wrong with probability ~1e-3 whatever the seeds.
    clean, noisy = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        clean.append(fit_linear_probe(*correlated(rng, 100), *correlated(rng, 500)).weight_decay)
        noisy.append(fit_linear_probe(*weak_everywhere(rng, 40), *weak_everywhere(rng, 1000)).weight_decay)
    assert np.median(clean) <= 1e-4 and np.median(noisy) >= 1e-2
    assert set(clean + noisy) <= set(GRID)


def test_weak_decay_solves_the_correlated_case():
    rng = np.random.default_rng(3)
    probe = fit_linear_probe(*correlated(rng, 100), *correlated(rng, 500))
    assert evaluate_probe(probe, *correlated(rng, 1000))["accuracy"] > 0.97


def test_deterministic_scale_invariant_and_inputs_unchanged():
    rng = np.random.default_rng(4)
    centers = 2.0 * rng.normal(size=(3, 8))
    (tx, ty), (vx, vy), (ex, _) = (blobs(rng, n, centers) for n in (100, 100, 300))
    copies = [a.copy() for a in (tx, ty, vx, vy)]
    first, second = fit_linear_probe(tx, ty, vx, vy), fit_linear_probe(tx, ty, vx, vy)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert all(np.array_equal(a, b) for a, b in zip((tx, ty, vx, vy), copies))
    # Standardisation: features in other units give the same probe up to rounding.
    scaled = fit_linear_probe(tx * 1000.0, ty, vx * 1000.0, vy)
    assert scaled.weight_decay == first.weight_decay
    assert torch.equal(scaled.scores(ex * 1000.0).argmax(1), first.scores(ex).argmax(1))
    torch.testing.assert_close(scaled.scores(ex * 1000.0), first.scores(ex), rtol=1e-4, atol=1e-4)
    # Torch inputs (float32, requires_grad), under no_grad, give the same fit.
    tensors = [torch.tensor(tx, requires_grad=True), torch.tensor(ty), torch.tensor(vx), torch.tensor(vy)]
    with torch.no_grad():
        from_torch = fit_linear_probe(*tensors)
    torch.testing.assert_close(from_torch.weight, first.weight)


def test_num_classes_and_chance_accuracy():
    rng = np.random.default_rng(5)
    centers = 4.0 * rng.normal(size=(2, 4))
    (tx, ty), (vx, vy) = blobs(rng, 60, centers), blobs(rng, 60, centers)
    probe = fit_linear_probe(tx, ty, vx, vy, num_classes=4, weight_decays=[1e-2])
    assert probe.weight.shape == (4, 4) and probe.weight_decay == 1e-2
    # Majority training class 1 (2 of 4); test hits it twice out of 4.
    assert chance_accuracy([0, 1, 1, 2], [1, 1, 0, 2]) == 0.5
    # Tie between 0 and 2 in training: the lowest id, 0, is predicted.
    assert chance_accuracy(np.array([2, 0, 2, 0]), np.array([0, 0, 0, 2])) == 0.75


def test_errors():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match=r"train_y must be \(20,\)"):
        fit_linear_probe(x, y[:10], x, y)
    with pytest.raises(ValueError, match="train_x holds non-finite"):
        fit_linear_probe(np.where(np.eye(20, 3) > 0, np.nan, x), y, x, y)
    with pytest.raises(ValueError, match="val_x has D = 2"):
        fit_linear_probe(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        fit_linear_probe(x, np.zeros(20, dtype=np.int64), x, y)
    with pytest.raises(ValueError, match=r"val_y must lie in \[0, 2\)"):
        fit_linear_probe(x, y, x, y + 1)
    with pytest.raises(ValueError, match=r"val_y must lie in \[0, 3\)"):
        fit_linear_probe(x, y, x, y + 2, num_classes=3)
    with pytest.raises(ValueError, match="weight_decays"):
        fit_linear_probe(x, y, x, y, weight_decays=())
    with pytest.raises(ValueError, match="weight_decays"):
        fit_linear_probe(x, y, x, y, weight_decays=(0.1, -1.0))
    with pytest.raises(TypeError, match="floating-point features"):
        fit_linear_probe(np.ones((20, 3), dtype=np.int64), y, x, y)
    with pytest.raises(TypeError, match="integer class ids"):
        fit_linear_probe(x, y.astype(float), x, y)
    with pytest.raises(ValueError, match="only 0 and 1"):
        fit_linear_probe(x, np.full((20, 2), 2), x, np.ones((20, 2)), multi_label=True)
    with pytest.raises(ValueError, match=r"val_y must be \(20, 2\)"):
        fit_linear_probe(x, np.ones((20, 2)), x, np.ones((20, 3)), multi_label=True)
    with pytest.raises(ValueError, match="val_y has no positive"):
        fit_linear_probe(x, np.ones((20, 2)), x, np.zeros((20, 2)), multi_label=True)
    probe = fit_linear_probe(x, y, x, y, weight_decays=[1.0])
    with pytest.raises(ValueError, match="features has D = 2"):
        probe.scores(x[:, :2])
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\)"):
        evaluate_probe(probe, x, y + 1)
    with pytest.raises(ValueError, match="train_y is empty"):
        chance_accuracy(np.array([], dtype=np.int64), y)
