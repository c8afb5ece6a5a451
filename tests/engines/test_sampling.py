"""The sampling contract: native (C++) and torch twin agree bit for bit and token for token."""
import math

import numpy as np
import pytest
import torch

from fastwave.engines import _native
from fastwave.engines import sampling
from fastwave.engines.sampling import SamplingParams

# Random123 known-answer vectors for Philox4x32-10: (counter, key, output).
PHILOX_KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

SEEDS = [0, 1, 12345, 2**32 + 7, 2**63 + 11, 2**64 - 1]

POLICIES = [  # (temperature, top_k, top_p) in the native convention: 0 = off, 1.0 = off
    (0.0, 0, 1.0), (1.0, 0, 1.0), (0.5, 0, 1.0), (2.0, 0, 1.0),
    (1.0, 1, 1.0), (1.0, 5, 1.0), (1.0, "A", 1.0), (1.0, "A+3", 1.0),
    (1.0, 0, 0.1), (1.0, 0, 0.9), (0.8, 5, 0.9), (1.3, 50, 0.5),
]
ROWS_PER_SIZE = {1: 200, 3: 6000, 256: 6000, 1000: 800}


def params_from_native(temperature, top_k, top_p):
    return SamplingParams(temperature, top_k or None, None if top_p == 1.0 else top_p)


def sample_both(logits, u, temperature=1.0, top_k=0, top_p=1.0):
    """Tokens from the native core and the torch twin, as numpy int64 arrays."""
    logits = torch.as_tensor(np.asarray(logits, np.float32))
    u = torch.as_tensor(np.asarray(u, np.float32))
    native = _native.sample_tokens(logits.numpy(), u.numpy(), temperature, top_k, top_p)
    twin = sampling.sample_tokens(logits, u, params_from_native(temperature, top_k, top_p))
    return native, twin.numpy()


def sample_agreed(logits, u, **policy):
    native, twin = sample_both(logits, u, **policy)
    np.testing.assert_array_equal(native, twin)
    return native


def random_logits(generator, rows, classes):
    """Gaussian logits; every other row rounded to integers so that exact ties are common."""
    logits = torch.randn(rows, classes, generator=generator) * 3
    logits[::2] = logits[::2].round()
    return logits


# ------------------------------------------------------------------------------------------------
# Philox
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("counter, key, expected", PHILOX_KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, expected):
    assert _native.philox4x32(counter, key) == expected
    twin = sampling.philox4x32(torch.tensor(counter), torch.tensor(key))
    assert tuple(twin.tolist()) == expected


def test_philox_twin_batches_counters_and_keys():
    counters = torch.tensor([c for c, _, _ in PHILOX_KNOWN_ANSWERS])
    keys = torch.tensor([k for _, k, _ in PHILOX_KNOWN_ANSWERS])
    expected = [list(e) for _, _, e in PHILOX_KNOWN_ANSWERS]
    assert sampling.philox4x32(counters, keys).tolist() == expected


def test_philox_uniform_native_and_twin_agree_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    count = 20_000  # per seed; 120,000 in all
    for seed in SEEDS:
        steps = torch.randint(0, 2**32, (count,), generator=generator)
        streams = torch.randint(0, 2**32, (count,), generator=generator)
        steps[:3], streams[:3] = torch.tensor([0, 2**32 - 1, 5]), torch.tensor([0, 2**32 - 1, 0])
        native = _native.philox_uniform(seed, steps.numpy(), streams.numpy())
        twin = sampling.philox_uniform(seed, steps, streams)
        assert native.dtype == np.float32 and twin.dtype == torch.float32
        np.testing.assert_array_equal(native.view(np.int32), twin.numpy().view(np.int32))
        assert 0.0 <= native.min() and native.max() < 1.0


def test_philox_uniform_is_the_first_word_scaled():
    seed = 2**40 + 3
    key = (seed & 0xFFFFFFFF, seed >> 32)
    word = _native.philox4x32((17, 4, 0, 0), key)[0]
    uniform = _native.philox_uniform(seed, np.array([17]), np.array([4]))[0]
    assert uniform == np.float32((word >> 8) * 2.0**-24)


def test_philox_uniform_shapes_broadcasting_and_strides():
    steps = torch.arange(6).reshape(2, 3)
    streams = torch.full((2, 3), 9)
    native = _native.philox_uniform(7, steps.numpy(), streams.numpy())
    assert native.shape == (2, 3)
    twin = sampling.philox_uniform(7, steps[:, :, None], torch.tensor([9]))
    np.testing.assert_array_equal(twin.squeeze(-1).numpy(), native)
    strided = np.arange(12, dtype=np.int64)[::2]  # not contiguous: copied, not misread
    np.testing.assert_array_equal(_native.philox_uniform(7, strided, strided),
                                  _native.philox_uniform(7, strided.copy(), strided.copy()))
    assert _native.philox_uniform(7, np.array(3), np.array(9)).shape == ()


def test_philox_uniform_looks_uniform():
    steps = torch.arange(200_000)
    u = _native.philox_uniform(99, steps.numpy(), np.zeros_like(steps.numpy())).astype(np.float64)
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    chi2 = ((counts - len(u) / 20) ** 2 / (len(u) / 20)).sum()
    assert chi2 < 60  # 19 degrees of freedom: p < 1e-6 beyond ~55


# ------------------------------------------------------------------------------------------------
# Sampling policies: parity
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature, top_k, top_p", POLICIES)
def test_sample_tokens_native_and_twin_agree(temperature, top_k, top_p):
    generator = torch.Generator().manual_seed(1)
    for classes, rows in ROWS_PER_SIZE.items():
        k = {"A": classes, "A+3": classes + 3}.get(top_k, top_k)
        logits = random_logits(generator, rows, classes)
        u = sampling.philox_uniform(5, torch.arange(rows), torch.tensor(classes))
        u[:2] = torch.tensor([0.0, 1.0 - 2.0**-24])  # the extremes of the uniform
        tokens = sample_agreed(logits, u, temperature=temperature, top_k=k, top_p=top_p)
        assert tokens.dtype == np.int64 and tokens.shape == (rows,)
        assert 0 <= tokens.min() and tokens.max() < classes


def test_sample_tokens_reads_strided_logits_and_leaves_inputs_alone():
    generator = torch.Generator().manual_seed(2)
    wide = random_logits(generator, 64, 20).numpy()
    u = np.linspace(0, 0.99, 64, dtype=np.float32)
    wide_before, u_before = wide.copy(), u.copy()
    strided = wide[:, ::2]  # not contiguous
    tokens = _native.sample_tokens(strided, u, 1.0, 3, 0.8)
    np.testing.assert_array_equal(tokens, _native.sample_tokens(strided.copy(), u, 1.0, 3, 0.8))
    twin = sampling.sample_tokens(torch.from_numpy(strided), torch.from_numpy(u),
                                  SamplingParams(1.0, 3, 0.8))
    np.testing.assert_array_equal(tokens, twin.numpy())
    np.testing.assert_array_equal(wide, wide_before)
    np.testing.assert_array_equal(u, u_before)


def test_sample_tokens_empty_batch():
    native, twin = sample_both(np.zeros((0, 4)), np.zeros(0))
    assert native.shape == (0,) and twin.shape == (0,)


# ------------------------------------------------------------------------------------------------
# Sampling policies: hand-worked cases
# ------------------------------------------------------------------------------------------------


def test_equal_logits_split_the_unit_interval_evenly():
    # Weights 1, 1, 1, 1: the token is the first class whose running sum exceeds 4u, so an exact
    # boundary (u = 1/4 -> 4u = 1) belongs to the next class.
    u = [0.0, 0.2499, 0.25, 0.5, 0.7499, 0.75, 0.9999]
    tokens = sample_agreed(np.zeros((len(u), 4)), u)
    assert tokens.tolist() == [0, 0, 1, 2, 2, 3, 3]


def test_softmax_weights_pick_each_class():
    # logits [0, 0, ln 2] -> probabilities 1/4, 1/4, 1/2.
    u = [0.1, 0.3, 0.6, 0.99]
    tokens = sample_agreed(np.tile([0.0, 0.0, math.log(2)], (len(u), 1)), u)
    assert tokens.tolist() == [0, 1, 2, 2]


def test_greedy_takes_the_lowest_index_among_ties():
    logits = np.array([[1.0, 5.0, 5.0, 2.0], [-3.0, -3.0, -4.0, -3.0]])
    for policy in (dict(temperature=0.0), dict(top_k=1), dict(temperature=0.0, top_k=7, top_p=0.3)):
        assert sample_agreed(logits, [0.99, 0.99], **policy).tolist() == [1, 0]


def test_top_k_breaks_ties_by_lower_index():
    # Classes 1, 2, 3 tie for the largest logit; top-2 keeps 1 and 2, never 3.
    u = np.linspace(0, 0.999, 50)
    tokens = sample_agreed(np.tile([1.0, 3.0, 3.0, 3.0, 0.0], (len(u), 1)), u, top_k=2)
    assert set(tokens.tolist()) == {1, 2}
    assert tokens.tolist() == sorted(tokens.tolist())


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = np.tile(np.log([0.2, 0.5, 0.3], dtype=np.float32), (3, 1))  # class 1, then 2, then 0
    u = [0.0, 0.5, 0.999]
    assert set(sample_agreed(logits, u, top_p=0.4).tolist()) == {1}
    assert set(sample_agreed(logits, u, top_p=0.7).tolist()) == {1, 2}
    assert set(sample_agreed(logits, u, top_p=0.9).tolist()) == {0, 1, 2}


def test_top_p_counts_ties_in_index_order():
    # Four equal weights, running sums 1, 2, 3, 4 of 4: p = 0.25 is reached exactly by one class,
    # p = 0.26 needs two (the lower indices first).
    logits, u = np.zeros((2, 4)), [0.0, 0.999]
    assert sample_agreed(logits, u, top_p=0.25).tolist() == [0, 0]
    assert sample_agreed(logits, u, top_p=0.26).tolist() == [0, 1]
    assert sample_agreed(logits, u, top_p=0.5).tolist() == [0, 1]


def test_top_k_then_top_p():
    logits = np.tile(np.log([0.1, 0.4, 0.05, 0.3, 0.15], dtype=np.float32), (2, 1))
    # top-3 keeps {1, 3, 4} (0.4, 0.3, 0.15 of 0.85); top-p 0.8 of those needs 1 and 3.
    assert sample_agreed(logits, [0.0, 0.999], top_k=3, top_p=0.8).tolist() == [1, 3]


def test_single_class_always_wins():
    for policy in POLICIES:
        temperature, top_k, top_p = policy
        k = {"A": 1, "A+3": 4}.get(top_k, top_k)
        tokens = sample_agreed(np.full((3, 1), 2.5), [0.0, 0.5, 0.999],
                               temperature=temperature, top_k=k, top_p=top_p)
        assert tokens.tolist() == [0, 0, 0]


@pytest.mark.parametrize("temperature", [1e-30, 1e-308, 5e-324])
def test_vanishing_temperature_is_greedy_not_nan(temperature):
    # z / T would overflow to inf and exp(inf - inf) to NaN: the max must be subtracted first.
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0], [0.5, 0.45, -2.0, 0.4]])
    for u in (0.0, 0.5, 0.999):
        assert sample_agreed(logits, [u, u], temperature=temperature).tolist() == [1, 0]
    for top_k, top_p in ((2, 1.0), (0, 0.5)):
        assert sample_agreed(logits, [0.9, 0.9], temperature=temperature, top_k=top_k, top_p=top_p).tolist() == [1, 0]


def test_low_temperature_approaches_argmax():
    logits = np.tile([0.0, 1.0, 0.5], (4, 1))
    assert sample_agreed(logits, [0.0, 0.3, 0.7, 0.999], temperature=1e-3).tolist() == [1] * 4


# ------------------------------------------------------------------------------------------------
# Sampling policies: the distribution
# ------------------------------------------------------------------------------------------------


def chi_square(tokens, probabilities):
    """Pearson's statistic over the classes of nonzero probability."""
    expected = len(tokens) * np.asarray(probabilities)
    counts = np.bincount(tokens, minlength=len(probabilities))
    possible = expected > 0
    return ((counts[possible] - expected[possible]) ** 2 / expected[possible]).sum()


@pytest.mark.parametrize("temperature, top_k, top_p, kept", [
    (1.0, 0, 1.0, [0, 1, 2, 3, 4, 5]),
    (0.7, 0, 1.0, [0, 1, 2, 3, 4, 5]),
    (1.0, 4, 0.8, [1, 3, 5]),  # top-4: {1, 3, 4, 5}; of those 1, 3, 5 reach 0.8
])
def test_tokens_follow_the_kept_softmax(temperature, top_k, top_p, kept):
    logits = np.array([0.1, 1.5, -0.7, 1.0, 0.2, 0.9], dtype=np.float32)
    draws = 100_000
    u = _native.philox_uniform(2024, np.arange(draws, dtype=np.int64), np.zeros(draws, np.int64))
    tokens = _native.sample_tokens(np.tile(logits, (draws, 1)), u, temperature, top_k, top_p)
    weights = np.zeros(len(logits))
    weights[kept] = np.exp(logits[kept] / temperature)
    assert set(np.unique(tokens)) == set(kept)
    statistic = chi_square(tokens, weights / weights.sum())
    # len(kept) - 1 <= 5 degrees of freedom: p < 1e-6 beyond ~33.
    assert statistic < 40


# ------------------------------------------------------------------------------------------------
# SamplingParams
# ------------------------------------------------------------------------------------------------


def test_sampling_params_native_args_and_greedy():
    assert SamplingParams().native_args() == (1.0, 0, 1.0)
    assert SamplingParams(0.5, 40, 0.9).native_args() == (0.5, 40, 0.9)
    assert SamplingParams(top_k=np.int64(3)).top_k == 3
    assert SamplingParams(0).greedy and SamplingParams(top_k=1).greedy
    assert not SamplingParams(1.0, 2).greedy


@pytest.mark.parametrize("kwargs, name", [
    (dict(temperature=-1.0), "temperature"), (dict(temperature=math.nan), "temperature"),
    (dict(temperature=math.inf), "temperature"), (dict(temperature="hot"), "temperature"),
    (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"), (dict(top_k=True), "top_k"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_p=math.nan), "top_p"),
])
def test_sampling_params_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SamplingParams(**kwargs)


# ------------------------------------------------------------------------------------------------
# Bad input, native and twin
# ------------------------------------------------------------------------------------------------

GOOD_LOGITS = np.zeros((2, 3), np.float32)
GOOD_U = np.array([0.1, 0.2], np.float32)


@pytest.mark.parametrize("logits, u, name", [
    (GOOD_LOGITS.astype(np.float64), GOOD_U, "logits"),
    (GOOD_LOGITS.tolist(), GOOD_U, "logits"),
    (np.zeros(3, np.float32), GOOD_U, "logits"),
    (np.zeros((2, 0), np.float32), GOOD_U, "logits"),
    (np.array([[0, np.nan, 0], [0, 0, 0]], np.float32), GOOD_U, "logits"),
    (np.array([[0, 0, 0], [0, -np.inf, 0]], np.float32), GOOD_U, "logits"),
    (GOOD_LOGITS, GOOD_U.astype(np.float64), "u"),
    (GOOD_LOGITS, np.zeros(3, np.float32), "u"),
    (GOOD_LOGITS, np.zeros((2, 1), np.float32), "u"),
    (GOOD_LOGITS, np.array([0.1, 1.0], np.float32), "u"),
    (GOOD_LOGITS, np.array([-0.1, 0.5], np.float32), "u"),
    (GOOD_LOGITS, np.array([0.1, np.nan], np.float32), "u"),
])
def test_sample_tokens_rejects_bad_arrays(logits, u, name):
    with pytest.raises((ValueError, TypeError), match=name):
        _native.sample_tokens(logits, u, 1.0, 0, 1.0)
    as_tensor = lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a
    with pytest.raises((ValueError, TypeError), match=name):
        sampling.sample_tokens(as_tensor(logits), as_tensor(u), SamplingParams())


@pytest.mark.parametrize("policy, name", [
    ((-1.0, 0, 1.0), "temperature"), ((math.nan, 0, 1.0), "temperature"),
    ((math.inf, 0, 1.0), "temperature"), ((1.0, -1, 1.0), "top_k"),
    ((1.0, 0, 0.0), "top_p"), ((1.0, 0, 1.5), "top_p"), ((1.0, 0, math.nan), "top_p"),
])
def test_native_sample_tokens_rejects_bad_policy(policy, name):
    with pytest.raises(ValueError, match=name):
        _native.sample_tokens(GOOD_LOGITS, GOOD_U, *policy)


def test_twin_sample_tokens_requires_sampling_params():
    with pytest.raises(TypeError, match="params"):
        sampling.sample_tokens(torch.from_numpy(GOOD_LOGITS), torch.from_numpy(GOOD_U), (1.0, 0, 1.0))


STEPS = np.array([1, 2], np.int64)


@pytest.mark.parametrize("seed, steps, streams, name", [
    (-1, STEPS, STEPS, "seed"), (2**64, STEPS, STEPS, "seed"), (1.5, STEPS, STEPS, "seed"),
    (0, STEPS.astype(np.int32), STEPS, "steps"), (0, STEPS.astype(np.float64), STEPS, "steps"),
    (0, [1, 2], STEPS, "steps"), (0, STEPS, STEPS.astype(np.uint32), "streams"),
    (0, np.array([-1, 2]), STEPS, "steps"), (0, np.array([2**32, 2]), STEPS, "steps"),
    (0, STEPS, np.array([0, 2**32]), "streams"), (0, STEPS, np.array([0, -5]), "streams"),
])
def test_philox_uniform_rejects_bad_input(seed, steps, streams, name):
    with pytest.raises((ValueError, TypeError), match=name):
        _native.philox_uniform(seed, steps, streams)
    as_tensor = lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a
    with pytest.raises((ValueError, TypeError), match=name):
        sampling.philox_uniform(seed, as_tensor(steps), as_tensor(streams))


def test_native_philox_uniform_requires_matching_shapes():
    with pytest.raises(ValueError, match="streams"):
        _native.philox_uniform(0, np.zeros((2, 1), np.int64), np.zeros(2, np.int64))


@pytest.mark.parametrize("counter, key, name", [
    ((0, 0, 0), (0, 0), "counter"), ((0, 0, 0, 2**32), (0, 0), "counter"),
    ((0, 0, 0, -1), (0, 0), "counter"), ((0, 0, 0, 0), (0,), "key"), ((0, 0, 0, 0), (0, 2**32), "key"),
])
def test_philox4x32_rejects_bad_words(counter, key, name):
    with pytest.raises((ValueError, TypeError), match=name):
        _native.philox4x32(counter, key)
    with pytest.raises((ValueError, TypeError), match=name):
        sampling.philox4x32(torch.tensor(counter), torch.tensor(key))


def test_twin_philox4x32_requires_int64():
    with pytest.raises(TypeError, match="counter"):
        sampling.philox4x32(torch.zeros(4, dtype=torch.int32), torch.zeros(2, dtype=torch.int64))


# ------------------------------------------------------------------------------------------------
# CUDA
# ------------------------------------------------------------------------------------------------


def test_cuda_device_count_never_raises():
    count = _native.cuda_device_count()
    assert isinstance(count, int) and count >= 0
    if torch.cuda.is_available() and _native.cuda_compiled:
        assert count == torch.cuda.device_count()


@pytest.mark.skipif(not _native.cuda_compiled or _native.cuda_device_count() > 0,
                    reason="needs a CUDA build on a machine without a usable GPU")
def test_cuda_philox_uniform_without_a_gpu_raises_runtime_error():
    host = np.zeros(4, np.float32)
    with pytest.raises(RuntimeError):
        _native.cuda_philox_uniform(host.ctypes.data, 4, 2, 2, 0, 0, 0)


needs_cuda = pytest.mark.skipif(not (torch.cuda.is_available() and _native.cuda_compiled),
                                reason="needs a GPU and a CUDA build of fastwave")


@needs_cuda
def test_cuda_philox_uniform_matches_native():
    n_steps, n_streams, seed, step0 = 3000, 37, 2**63 + 5, 2**32 - 4000
    out = torch.full((n_steps, n_streams), -1.0, device="cuda")
    _native.cuda_philox_uniform(out.data_ptr(), out.numel(), n_steps, n_streams, seed, step0,
                                torch.cuda.current_stream().cuda_stream)
    steps = np.arange(step0, step0 + n_steps, dtype=np.int64)[:, None].repeat(n_streams, 1)
    streams = np.arange(n_streams, dtype=np.int64)[None, :].repeat(n_steps, 0)
    expected = _native.philox_uniform(seed, steps, streams)
    np.testing.assert_array_equal(out.cpu().numpy().view(np.int32), expected.view(np.int32))
    twin = sampling.philox_uniform(seed, torch.from_numpy(steps).cuda(), torch.from_numpy(streams).cuda())
    np.testing.assert_array_equal(twin.cpu().numpy().view(np.int32), expected.view(np.int32))


@needs_cuda
def test_cuda_philox_uniform_rejects_bad_pointers():
    host = torch.zeros(4)
    stream = torch.cuda.current_stream().cuda_stream
    with pytest.raises(ValueError, match="out_ptr"):
        _native.cuda_philox_uniform(host.data_ptr(), 4, 2, 2, 0, 0, stream)
    with pytest.raises(ValueError, match="out_ptr"):
        _native.cuda_philox_uniform(0, 4, 2, 2, 0, 0, stream)
    with pytest.raises(ValueError, match="n_steps"):
        _native.cuda_philox_uniform(torch.zeros(4, device="cuda").data_ptr(), 4, 2**32, 1, 0, 1, stream)
    with pytest.raises(ValueError, match="out_size"):  # a short buffer is refused, not overrun
        _native.cuda_philox_uniform(torch.zeros(4, device="cuda").data_ptr(), 4, 3, 2, 0, 0, stream)


@needs_cuda
def test_twin_sample_tokens_on_cuda_matches_native():
    generator = torch.Generator().manual_seed(3)
    logits = random_logits(generator, 2000, 256)
    u = sampling.philox_uniform(8, torch.arange(2000), torch.tensor(0))
    for policy in [(1.0, 0, 1.0), (0.8, 5, 0.9), (1.0, 0, 0.5), (0.0, 0, 1.0)]:
        native = _native.sample_tokens(logits.numpy(), u.numpy(), *policy)
        twin = sampling.sample_tokens(logits.cuda(), u.cuda(), params_from_native(*policy))
        # A CUDA scan may round differently from the sequential sum: only a u within rounding of a
        # boundary could differ, which these 2,000 rows do not hit.
        np.testing.assert_array_equal(twin.cpu().numpy(), native)
