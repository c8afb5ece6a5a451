"""Parameter-free pooling between audio Transformer layers: Haar block means and pairwise averages."""
import pytest
import torch

from fastwave.models.pooling import (DEFAULT_WAVELET_FRACTIONS, average_pool_time, wavelet_channel_split,
                                     wavelet_pool)

QUARTERS = (0.25, 0.25, 0.25, 0.25)  # at width 4: one channel each at blocks of 1, 2, 4 frames and global


def frames(*channels):
    """Channels given as lists over time -> x (1, T, len(channels)) float32."""
    return torch.tensor(channels, dtype=torch.float32).T[None].contiguous()


def test_wavelet_pool_by_hand_even_length():
    x = frames([1, 2, 3, 4, 5, 6],      # block 1: unchanged
               [1, 3, 5, 7, 9, 11],     # block 2: pairs
               [0, 4, 8, 12, 16, 20],   # block 4: frames 0-3, then the partial block 4-5
               [1, 2, 3, 4, 5, 9])      # global: mean 24 / 6
    expected = frames([1, 2, 3, 4, 5, 6],
                      [2, 2, 6, 6, 10, 10],
                      [6, 6, 6, 6, 18, 18],
                      [4, 4, 4, 4, 4, 4])
    torch.testing.assert_close(wavelet_pool(x, QUARTERS), expected)


def test_wavelet_pool_by_hand_odd_length_partial_blocks():
    x = frames([1, 2, 3, 4, 5], [1, 3, 5, 7, 9], [0, 4, 8, 12, 16], [1, 2, 3, 4, 10])
    expected = frames([1, 2, 3, 4, 5],
                      [2, 2, 6, 6, 9],      # the last block of 2 holds one frame
                      [6, 6, 6, 6, 16],     # the last block of 4 holds one frame
                      [4, 4, 4, 4, 4])
    torch.testing.assert_close(wavelet_pool(x, QUARTERS), expected)


def test_wavelet_pool_multi_channel_groups_by_hand():
    # width 8, fractions (1/2, 1/4, 1/8, 1/8) -> channels [4, 2, 1, 1]
    assert wavelet_channel_split(8, (0.5, 0.25, 0.125, 0.125)) == [4, 2, 1, 1]
    x = torch.arange(3 * 8, dtype=torch.float32).reshape(1, 3, 8)  # x[0, t, c] = 8 t + c
    out = wavelet_pool(x, (0.5, 0.25, 0.125, 0.125))
    # channels 4-5 (block 2): frames 0-1 average to (4 + 12) / 2 = 8 and (5 + 13) / 2 = 9, frame 2 alone;
    # channel 6 (block 4 > T: the whole clip) and 7 (global): means of 6, 14, 22 and of 7, 15, 23
    expected = torch.tensor([[[0, 1, 2, 3, 8, 9, 14, 15],
                              [8, 9, 10, 11, 8, 9, 14, 15],
                              [16, 17, 18, 19, 20, 21, 14, 15]]], dtype=torch.float32)
    torch.testing.assert_close(out, expected)


def test_wavelet_pool_shape_group0_global_and_block_means_on_random_input():
    torch.manual_seed(0)
    x = torch.randn(3, 11, 64)
    out = wavelet_pool(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    counts = wavelet_channel_split(64)
    assert counts == [32, 16, 8, 4, 4]
    torch.testing.assert_close(out[..., :32], x[..., :32])  # full resolution kept
    global_part = x[..., 60:].mean(1, keepdim=True).expand(-1, 11, -1)
    torch.testing.assert_close(out[..., 60:], global_part)
    # block of 8 over 11 frames: frames 0-7, then 8-10
    group = x[..., 56:60]
    torch.testing.assert_close(out[:, 3, 56:60], group[:, :8].mean(1))
    torch.testing.assert_close(out[:, 9, 56:60], group[:, 8:].mean(1))
    # pooling twice changes nothing: each group is already constant over its blocks
    torch.testing.assert_close(wavelet_pool(out), out)


def test_wavelet_pool_single_frame_is_identity():
    x = torch.randn(2, 1, 16)
    torch.testing.assert_close(wavelet_pool(x), x)


def test_wavelet_pool_does_not_modify_its_input():
    x = torch.randn(2, 7, 16)
    before = x.clone()
    out = wavelet_pool(x)
    out.add_(1.0)  # the output is not a view of the input either
    torch.testing.assert_close(x, before, rtol=0, atol=0)


def test_channel_split_widths_and_rounding():
    assert wavelet_channel_split(64, DEFAULT_WAVELET_FRACTIONS) == [32, 16, 8, 4, 4]
    assert wavelet_channel_split(32) == [16, 8, 4, 2, 2]
    assert wavelet_channel_split(128) == [64, 32, 16, 8, 8]
    assert wavelet_channel_split(5) == [1, 1, 1, 1, 1]  # every coarser scale gets at least one channel
    assert wavelet_channel_split(100) == [51, 25, 12, 6, 6]  # round(12.5) = 12: Python rounds half to even
    assert wavelet_channel_split(10, [0.7, 0.3]) == [7, 3]
    assert sum(wavelet_channel_split(77)) == 77


@pytest.mark.parametrize("fractions, match", [
    ((1.0,), "at least 2"),
    ([], "at least 2"),
    ((0.5, 0.5, 0.0), "finite numbers > 0"),
    ((0.5, -0.25, 0.75), "finite numbers > 0"),
    ((0.5, float("nan"), 0.5), "finite numbers > 0"),
    ((0.5, float("inf")), "finite numbers > 0"),
    ((0.5, "0.5"), "finite numbers > 0"),
    ((True, 0.5), "finite numbers > 0"),
    ((0.6, 0.6), "sum to 1"),
    ((0.5, 0.25), "sum to 1"),
    (0.5, "list or tuple"),
])
def test_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match) as err:
        wavelet_channel_split(64, fractions)
    assert "fractions" in str(err.value)


def test_too_narrow_for_the_scales():
    with pytest.raises(ValueError, match="no full-resolution channel at width 4"):
        wavelet_channel_split(4)
    with pytest.raises(ValueError, match="no full-resolution channel"):
        wavelet_pool(torch.randn(1, 4, 4))
    with pytest.raises(ValueError, match="width"):
        wavelet_channel_split(0)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B, T, W\)"):
        wavelet_pool(torch.randn(4, 16))
    with pytest.raises(ValueError, match=r"\(B, T, W\)"):
        average_pool_time(torch.randn(2, 0, 16))
    with pytest.raises(TypeError, match="floating point"):
        wavelet_pool(torch.ones(1, 4, 16, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        average_pool_time([[[1.0]]])


def test_gradients_flow():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: wavelet_pool(t, (0.5, 0.25, 0.125, 0.125)), (x,))
    assert torch.autograd.gradcheck(average_pool_time, (x,))


def test_average_pool_time_by_hand():
    x = frames([1, 3, 5, 7, 9, 11], [0, 2, 0, 4, 1, 1])
    torch.testing.assert_close(average_pool_time(x), frames([2, 6, 10], [1, 2, 1]))
    odd = frames([1, 3, 5, 7, 9], [0, 2, 0, 4, 6])
    torch.testing.assert_close(average_pool_time(odd), frames([2, 6, 9], [1, 2, 6]))
    single = frames([5], [7])
    assert average_pool_time(single).shape == (1, 1, 2)
    torch.testing.assert_close(average_pool_time(single), single)
    assert average_pool_time(torch.randn(3, 40, 8)).shape == (3, 20, 8)
    assert average_pool_time(torch.randn(3, 5, 8)).shape == (3, 3, 8)


def test_bfloat16():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 32)
    for pool in (wavelet_pool, average_pool_time):
        low = pool(x.bfloat16())
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), pool(x), rtol=2e-2, atol=2e-2)
