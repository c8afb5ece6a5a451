"""Files a user keeps: writes that fail part-way leave the old file, reads refuse damaged files, and
the CLI refuses an output it cannot write before it starts (issue 24)."""
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import fastwave
from fastwave._files import check_writable, open_atomically, write_atomically
from fastwave.cli import main


def tone(seconds=0.5, rate=16000):
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with open_atomically(path) as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["result.json"]

    def fail(temporary):
        open(temporary, "w").write("partial")
        raise OSError("no space left")
    with pytest.raises(OSError):
        write_atomically(path, fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["result.json"]
    with open_atomically(path) as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["result.json"]


def test_save_audio_cut_off_by_a_file_size_limit_keeps_the_good_file(tmp_path):
    """A full disk, simulated in a subprocess with RLIMIT_FSIZE: the write fails part-way."""
    path = tmp_path / "take.wav"
    fastwave.save_audio(path, tone(), 16000)
    good = path.read_bytes()
    code = f"""
import resource, signal, numpy as np, fastwave
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
try:
    fastwave.save_audio({str(path)!r}, np.zeros(160000, np.float32), 16000)
    print("wrote")
except (ValueError, OSError) as error:
    print("refused", error)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused" in result.stdout, result.stdout + result.stderr
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["take.wav"]


def test_load_audio_refuses_a_truncated_wav(tmp_path):
    path = tmp_path / "cut.wav"
    fastwave.save_audio(path, tone(), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.wav.*truncated"):
        fastwave.load_audio(path)
    path.write_bytes(data)
    assert fastwave.load_audio(path)[0].shape == (8000,)


def test_audio_arguments_beyond_the_file_format_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="sample_rate must be at most"):
        fastwave.save_audio(tmp_path / "x.wav", tone(), 2 ** 31)
    with pytest.raises(ValueError, match="folder .* does not exist"):
        fastwave.save_audio(tmp_path / "missing" / "x.wav", tone(), 16000)


def test_a_forged_checkpoint_with_20000_layers_is_refused_at_once(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = tmp_path / "model.safetensors"
    fastwave.WaveNet(layers=2, cycles=1, residual_channels=8, gate_channels=8, skip_channels=8).save(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    config = json.loads(metadata["fastwave.config"])
    config.update(layers=20000, cycles=1)
    forged = tmp_path / "forged.safetensors"
    save_file(load_file(str(path)), str(forged), metadata={**metadata, "fastwave.config": json.dumps(config)})
    start = time.perf_counter()
    with pytest.raises(ValueError, match="layers=20000 but the file holds only"):
        fastwave.load_model(forged)
    assert time.perf_counter() - start < 30  # refused before building 20,000 layers (minutes)


def test_checkpoints_are_written_atomically_and_map_location_is_checked(tmp_path):
    path = tmp_path / "model.safetensors"
    model = fastwave.WaveNet(layers=2, cycles=1, residual_channels=8, gate_channels=8, skip_channels=8)
    model.save(path)
    model.save(path)  # over an existing file
    assert os.listdir(tmp_path) == ["model.safetensors"]
    with pytest.raises(ValueError, match="map_location must name a torch device"):
        fastwave.load_model(path, map_location="bogus")


def test_generate_refuses_an_output_folder_that_does_not_exist_before_generating(tmp_path, capsys):
    start = time.perf_counter()
    code = main(["generate", "--seconds", "30", "--out", str(tmp_path / "missing" / "x.wav"), "--quiet"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert time.perf_counter() - start < 20  # 30 s of audio would take longer than that to generate
    with pytest.raises(ValueError, match="is a directory"):
        check_writable(tmp_path)


def test_load_codes_refuses_damaged_files_by_name(tmp_path):
    from fastwave.codes.tokenizer import load_codes, save_codes

    path = tmp_path / "codes.npz"
    save_codes(path, ["a", "b"], [torch.tensor([1, 2, 3]), torch.tensor([0])], classes=4)
    names, codes, classes = load_codes(path)
    assert names == ["a", "b"] and [c.tolist() for c in codes] == [[1, 2, 3], [0]] and classes == 4
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    edits = {"two_d.npz": dict(codes=np.zeros((2, 2), np.int32)),
             "floats.npz": dict(codes=np.zeros(4, np.float32)),
             "negative.npz": dict(lengths=np.array([5, -1])),
             "no_classes.npz": dict(classes=np.int64(0))}
    for name, change in edits.items():
        fields = dict(names=np.array(["a", "b"]), codes=np.array([1, 2, 3, 0], np.int32),
                      lengths=np.array([3, 1]), classes=np.int64(4))
        fields.update(change)
        with open(tmp_path / name, "wb") as f:
            np.savez(f, **fields)
    for name in ["cut.npz", *edits]:
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            load_codes(tmp_path / name)


def test_train_classifier_refuses_an_out_dir_it_cannot_create_before_reading_data(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = main(["train-classifier", str(tmp_path / "no_data"), "--labels", str(tmp_path / "no.csv"),
                 "--out-dir", str(blocker / "run"), "--quiet"])
    assert code == 2 and "--out-dir: cannot create" in capsys.readouterr().err
