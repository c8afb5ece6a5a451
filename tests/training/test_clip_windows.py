"""Tests for fastwave.training.clip_windows: window starts, cutting clips, the windowed dataset, per-clip means."""
import os

import numpy as np
import pytest
import soundfile
import torch

from fastwave.audio import load_audio
from fastwave.training.clip_windows import WindowedClips, average_by_clip, clip_windows, window_starts
from fastwave.training.data import LabelledClips, clips_from_csv

RNG = np.random.default_rng(0)


def noise(n, scale=0.5):
    return (scale * RNG.uniform(-1, 1, n)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# window_starts
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length, window, hop, expected", [
    (30, 10, None, [0, 10, 20]),       # exact multiple: no extra window
    (25, 10, None, [0, 10, 15]),       # remainder: last window aligned to the end
    (10, 10, None, [0]),               # exactly one window
    (11, 10, None, [0, 1]),
    (7, 10, None, [0]),                # shorter than a window: padded by the caller
    (1, 10, 5, [0]),
    (25, 10, 5, [0, 5, 10, 15]),       # hop < window, the last one already reaches the end
    (27, 10, 5, [0, 5, 10, 15, 17]),
    (12, 4, 3, [0, 3, 6, 8]),
    (5, 1, 1, [0, 1, 2, 3, 4]),
])
def test_window_starts_by_hand(length, window, hop, expected):
    starts = window_starts(length, window, hop)
    assert starts.dtype == np.int64
    assert starts.tolist() == expected


def test_window_starts_cover_every_sample_without_running_past_the_end():
    for length in range(1, 60):
        for window in (1, 4, 7, 16):
            for hop in range(1, window + 1):
                starts = window_starts(length, window, hop)
                covered = np.zeros(max(length, window), bool)
                for s in starts:
                    covered[s:s + window] = True
                assert covered[:length].all()
                assert np.all(np.diff(starts) > 0)
                assert length < window or starts[-1] + window == length


def test_window_starts_bad_arguments():
    with pytest.raises(ValueError, match="hop must be <= window"):
        window_starts(100, 10, 11)
    with pytest.raises(ValueError, match="window"):
        window_starts(100, 0)
    with pytest.raises(ValueError, match="length"):
        window_starts(0, 10)
    with pytest.raises(ValueError, match="hop"):
        window_starts(100, 10, 0)


# --------------------------------------------------------------------------------------------------
# clip_windows
# --------------------------------------------------------------------------------------------------


def test_clip_windows_are_slices_of_the_input():
    audio = noise(25)
    before = audio.copy()
    out = clip_windows(audio, 10)
    assert out.dtype == torch.float32 and out.shape == (3, 10)
    for row, start in zip(out, [0, 10, 15]):
        assert torch.equal(row, torch.from_numpy(audio[start:start + 10]))
    np.testing.assert_array_equal(audio, before)
    overlapped = clip_windows(torch.from_numpy(audio).double(), 10, 5)
    assert overlapped.dtype == torch.float32
    assert torch.equal(overlapped[1], torch.from_numpy(audio[5:15]))
    out[0, 0] = 99.0  # the windows are a copy, not a view of the caller's audio
    assert audio[0] == before[0]


def test_clip_windows_pads_a_short_clip_with_zeros():
    audio = noise(6)
    out = clip_windows(audio, 10, min_samples=4)
    assert out.shape == (1, 10)
    assert torch.equal(out[0, :6], torch.from_numpy(audio))
    assert torch.all(out[0, 6:] == 0)


def test_clip_windows_errors():
    with pytest.raises(ValueError, match=r"clip of 3 samples is shorter than min_samples=4 \(one model patch\)"):
        clip_windows(noise(3), 10, min_samples=4)
    with pytest.raises(ValueError, match="1-D"):
        clip_windows(noise(20).reshape(2, 10), 10)
    with pytest.raises(ValueError, match="NaN or infinite"):
        clip_windows(np.array([0.1, np.nan], np.float32), 10)
    with pytest.raises(TypeError, match="floating point"):
        clip_windows(np.zeros(20, np.int16), 10)
    with pytest.raises(ValueError, match="hop must be <= window"):
        clip_windows(noise(20), 10, 20)


# --------------------------------------------------------------------------------------------------
# WindowedClips.from_arrays
# --------------------------------------------------------------------------------------------------


def small_dataset(**kwargs):
    # 8 Hz "sample rate" so that a window is 8 samples by default.
    audios = [noise(20), noise(8), noise(5), torch.from_numpy(noise(17))]
    targets = kwargs.pop("targets", np.array([2, 0, 1, 2]))
    return audios, WindowedClips.from_arrays(audios, targets, sample_rate=8, **kwargs)


def test_from_arrays_windows_and_clip_of_window():
    audios, data = small_dataset(vocabulary=["a", "b", "c"])
    # lengths 20, 8, 5, 17 at window 8: starts [0, 8, 12], [0], [0], [0, 8, 9]
    assert data.window == 8 and data.hop == 8 and data.sample_rate == 8
    assert data.num_clips == 4 and len(data) == 8
    assert data.windows_per_clip.tolist() == [3, 1, 1, 3]
    assert data.clip_of_window.tolist() == [0, 0, 0, 1, 2, 3, 3, 3]
    assert data.clip_lengths.tolist() == [20, 8, 5, 17]
    assert not data.multi_label and data.vocabulary == ["a", "b", "c"] and data.paths is None
    assert data.targets.dtype == torch.int64 and data.targets.tolist() == [2, 0, 1, 2]

    window, target, clip = data[2]
    assert window.dtype == torch.float32 and window.shape == (8,)
    assert clip == 0 and int(target) == 2
    np.testing.assert_allclose(window.numpy(), audios[0][12:20], atol=1 / 32767)
    padded, _, clip = data[4]
    assert clip == 2
    np.testing.assert_allclose(padded[:5].numpy(), audios[2], atol=1 / 32767)
    assert torch.all(padded[5:] == 0)
    assert torch.equal(data[-1][0], data[7][0])
    with pytest.raises(IndexError):
        data[8]


def test_batch_equals_stacked_items_and_matches_clip_windows():
    audios, data = small_dataset()
    indices = torch.tensor([7, 0, 4, 4, 3, 5])
    windows, targets = data.batch(indices)
    assert windows.dtype == torch.float32 and windows.shape == (6, 8)
    items = [data[int(i)] for i in indices]
    assert torch.equal(windows, torch.stack([w for w, _, _ in items]))
    assert torch.equal(targets, torch.stack([t for _, t, _ in items]))
    every, _ = data.batch(np.arange(len(data)))
    expected = torch.cat([clip_windows(torch.as_tensor(a), 8) for a in audios])
    assert (every - expected).abs().max() <= 1 / 32767
    with pytest.raises(ValueError, match="indices"):
        data.batch([0, 8])


def test_int16_round_trip_and_saturation():
    audio = noise(1000, scale=1.0)
    audio[:3] = [-1.0, 1.0, 0.0]
    data = WindowedClips.from_arrays([audio], [0], sample_rate=100)
    back = data.clip_audio(0)
    assert back.dtype == torch.float32 and back.shape == (1000,)
    assert (back - torch.from_numpy(audio)).abs().max() <= 1 / 32767
    assert back.abs().max() <= 1
    # 16-bit values (k / 32768, what soundfile reads from PCM_16) come back exactly
    pcm = np.arange(-32768, 32768, 97).astype(np.float32) / 32768
    assert torch.equal(WindowedClips.from_arrays([pcm], [0], sample_rate=100).clip_audio(0), torch.from_numpy(pcm))
    with pytest.warns(UserWarning, match="2 samples in 1 clips lie outside"):
        loud = WindowedClips.from_arrays([np.array([2.0, -3.0, 0.5], np.float32)], [0], sample_rate=4)
    np.testing.assert_allclose(loud.clip_audio(0).numpy(), [32767 / 32768, -1.0, 0.5])


def test_inputs_are_not_modified():
    audios = [noise(20), noise(9)]
    copies = [a.copy() for a in audios]
    targets = np.array([[1, 0], [1, 1]], np.int64)
    data = WindowedClips.from_arrays(audios, targets, sample_rate=8)
    data.targets[0, 0] = 0
    assert targets[0, 0] == 1
    for a, c in zip(audios, copies):
        np.testing.assert_array_equal(a, c)


def test_multi_label_targets():
    hot = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=np.float64)
    _, data = small_dataset(targets=hot, hop=4)
    assert data.multi_label
    assert data.targets.dtype == torch.float32 and data.targets.shape == (4, 3)
    _, targets = data.batch([0, len(data) - 1])
    assert targets.tolist() == [[1, 0, 1], [1, 1, 1]]
    _, target, clip = data[0]
    assert target.shape == (3,) and clip == 0
    _, booleans = small_dataset(targets=torch.from_numpy(hot).bool(), vocabulary=["x", "y", "z"])
    assert torch.equal(booleans.targets, data.targets)


def test_from_arrays_default_window_is_one_second():
    data = WindowedClips.from_arrays([noise(250)], [0], sample_rate=100, hop=50)
    assert data.window == 100 and window_starts(250, 100, 50).tolist() == [0, 50, 100, 150]
    assert len(data) == 4


def test_from_arrays_bad_inputs():
    audios = [noise(20), noise(10)]
    with pytest.raises(ValueError, match="targets has 3 rows but audios has 2 clips"):
        WindowedClips.from_arrays(audios, [0, 1, 1], sample_rate=8)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\), got values in \[0, 2\]"):
        WindowedClips.from_arrays(audios, [0, 2], sample_rate=8, vocabulary=["a", "b"])
    with pytest.raises(ValueError, match="must lie in"):
        WindowedClips.from_arrays(audios, [-1, 0], sample_rate=8)
    with pytest.raises(ValueError, match="only 0 and 1"):
        WindowedClips.from_arrays(audios, [[0, 2], [1, 0]], sample_rate=8)
    with pytest.raises(ValueError, match="3 columns but vocabulary has 2"):
        WindowedClips.from_arrays(audios, np.zeros((2, 3)), sample_rate=8, vocabulary=["a", "b"])
    with pytest.raises(TypeError, match="integers"):
        WindowedClips.from_arrays(audios, [0.0, 1.0], sample_rate=8)
    with pytest.raises(ValueError, match="multi_label=True needs targets as multi-hot"):
        WindowedClips.from_arrays(audios, [0, 1], sample_rate=8, multi_label=True)
    with pytest.raises(ValueError, match=r"audios\[1\]: clip of 10 samples is shorter than min_samples=16"):
        WindowedClips.from_arrays(audios, [0, 1], sample_rate=8, min_samples=16)
    with pytest.raises(ValueError, match=r"audios\[0\] must be 1-D"):
        WindowedClips.from_arrays([noise(20).reshape(2, 10)], [0], sample_rate=8)
    with pytest.raises(ValueError, match="sample_rate"):
        WindowedClips.from_arrays(audios, [0, 1], sample_rate=0)
    with pytest.raises(ValueError, match="sample_rate"):
        WindowedClips.from_arrays(audios, [0, 1], sample_rate=8.0)
    with pytest.raises(ValueError, match="audios is empty"):
        WindowedClips.from_arrays([], [], sample_rate=8)
    with pytest.raises(ValueError, match="distinct"):
        WindowedClips.from_arrays(audios, [0, 1], sample_rate=8, vocabulary=["a", "a"])


# --------------------------------------------------------------------------------------------------
# WindowedClips.from_clips
# --------------------------------------------------------------------------------------------------


def write_clips(tmp_path):
    """Four 16-bit wav files: (name, rate, samples, label)."""
    specs = [("a", 8000, 12000, "dog"), ("b", 16000, 20000, "cat"), ("c", 16000, 8000, "dog"),
             ("d", 8000, 3000, "cat")]
    folder = tmp_path / "audio"
    os.makedirs(folder)
    for name, rate, n, _ in specs:
        soundfile.write(folder / f"{name}.wav", noise(n), rate, subtype="PCM_16")
    rows = "\n".join(f"{name},{label}" for name, _, _, label in specs)
    (tmp_path / "clips.csv").write_text(f"fname,labels\n{rows}\n")
    return clips_from_csv(tmp_path / "clips.csv", folder)


def test_from_clips_resamples_and_windows(tmp_path):
    clips = write_clips(tmp_path)
    data = WindowedClips.from_clips(clips, sample_rate=16000, progress=False)
    # at 16 kHz: 24000, 20000, 8000, 6000 samples; window 16000
    assert data.clip_lengths.tolist() == [24000, 20000, 8000, 6000]
    assert data.windows_per_clip.tolist() == [2, 2, 1, 1]
    assert data.window == 16000 and len(data) == 6
    assert data.vocabulary == ["cat", "dog"] and data.targets.tolist() == [1, 0, 1, 0]
    assert data.paths == clips.paths and not data.multi_label
    # a 16 kHz 16-bit file is stored losslessly; the resampled one to int16 precision
    assert torch.equal(data.clip_audio(1), torch.from_numpy(load_audio(clips.paths[1])[0]))
    resampled = load_audio(clips.paths[0], 16000)[0]
    assert (data.clip_audio(0) - torch.from_numpy(resampled)).abs().max() <= 1 / 32767
    window, target, clip = data[1]  # clip 0's end-aligned window
    assert clip == 0 and int(target) == 1
    assert torch.equal(window, data.clip_audio(0)[8000:])
    window, _, clip = data[5]
    assert clip == 3 and torch.all(window[6000:] == 0)


def test_from_clips_indices_and_multi_label(tmp_path):
    clips = write_clips(tmp_path)
    multi = LabelledClips(clips.paths, [("dog",), ("cat", "dog"), (), ("cat",)], ["cat", "dog"])
    data = WindowedClips.from_clips(multi, sample_rate=8000, window=4000, hop=2000, indices=np.array([3, 1]),
                                    progress=False)
    assert data.num_clips == 2 and data.paths == [clips.paths[3], clips.paths[1]]
    assert data.clip_lengths.tolist() == [3000, 10000]  # the 16 kHz file at 8 kHz
    assert data.windows_per_clip.tolist() == [1, 4]
    assert data.multi_label and data.targets.tolist() == [[1, 0], [1, 1]]
    assert data.clip_of_window.tolist() == [0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="indices"):
        WindowedClips.from_clips(clips, indices=[4], progress=False)


def test_from_clips_too_short_file(tmp_path):
    clips = write_clips(tmp_path)
    with pytest.raises(ValueError, match=r"d\.wav.* lasts 0\.375 s at 16000 Hz: clip of 6000 samples is shorter "
                                         r"than min_samples=7000"):
        WindowedClips.from_clips(clips, min_samples=7000, progress=False)
    with pytest.raises(TypeError, match="LabelledClips"):
        WindowedClips.from_clips(clips.paths, progress=False)


# --------------------------------------------------------------------------------------------------
# average_by_clip
# --------------------------------------------------------------------------------------------------


def test_average_by_clip_by_hand():
    scores = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 1.0], [2.0, 2.0], [4.0, 3.0]],
                          dtype=torch.float64, requires_grad=True)
    clip_of_window = torch.tensor([0, 0, 1, 2, 2, 2])
    means = average_by_clip(scores, clip_of_window, 3)
    assert means.dtype == torch.float32
    assert means.tolist() == [[2.0, 1.0], [5.0, 5.0], [2.0, 2.0]]
    means.sum().backward()
    np.testing.assert_allclose(scores.grad[:, 0].numpy(), [0.5, 0.5, 1.0, 1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    # windows need not be grouped
    assert average_by_clip(np.array([[1.0], [4.0], [3.0]]), np.array([1, 0, 1]), 2).tolist() == [[4.0], [2.0]]


def test_average_by_clip_errors():
    scores = torch.ones(3, 2)
    with pytest.raises(ValueError, match=r"1 of 3 clips have no window .*clip 1"):
        average_by_clip(scores, [0, 0, 2], 3)
    with pytest.raises(ValueError, match="clip_of_window has 2 entries but window_scores has 3"):
        average_by_clip(scores, [0, 1], 2)
    with pytest.raises(ValueError, match=r"must be \(N_windows, C\)"):
        average_by_clip(torch.ones(3), [0, 1, 1], 2)
    with pytest.raises(ValueError, match="clip_of_window must lie in"):
        average_by_clip(scores, [0, 1, 2], 2)


def test_pcm_buffer_grows_when_the_size_estimate_is_short():
    from fastwave.training.clip_windows import _PCMBuilder

    clips = [noise(n) for n in (30, 3, 50, 7)]
    builder = _PCMBuilder(reserve=0, pad_to=8)  # from_clips' estimate can be short (e.g. mp3 headers)
    for clip in clips:
        builder.append(clip)
    pcm, offsets, lengths = builder.finish()
    assert offsets.tolist() == [0, 30, 38, 88] and lengths.tolist() == [30, 3, 50, 7]
    assert pcm.shape == (96,) and torch.all(pcm[33:38] == 0) and torch.all(pcm[95:] == 0)
    for clip, start in zip(clips, offsets.tolist()):
        np.testing.assert_allclose(pcm[start:start + len(clip)].numpy() / 32768, clip, atol=1 / 32767)
