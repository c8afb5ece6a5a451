import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastwave
from fastwave import load_audio
from fastwave.cli import main
from fastwave.corpora.score import ROLL_HOP, SCORE_CHANNELS

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--layers", "4", "--cycles", "2", "--residual-channels", "8", "--gate-channels", "8",
        "--skip-channels", "8", "--classes", "64"]


def test_info_reports_the_native_module(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"native module\s+yes", out)
    assert re.search(r"CUDA compiled\s+(yes|no)", out) and "torch" in out


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--seconds", "0.05", "--repeats", "3", "--batch", "1,2", "--json", str(path)] + TINY) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "naive" in out and "torch" in out and "cpu" in out and "samples/s" in out
    # progress on stderr, per engine and batch, with the runs done
    for engine in ("naive", "torch", "cpu"):
        for batch in (1, 2):
            assert f"bench {engine} batch {batch}" in captured.err
    assert "3/3" in captured.err and "bench naive" not in out
    rows = json.loads(path.read_text())
    engines = ("naive", "torch", "cpu", "cpu-fp16", "cpu-int8")  # WaveNet's C++ engine stores three precisions
    assert {(r["engine"], r["batch"]) for r in rows} == {(e, b) for e in engines for b in (1, 2)}
    for row in rows:
        assert row["median_s"] > 0 and row["samples_per_s"] > 0
        assert row["realtime_factor"] == pytest.approx(row["samples_per_s"] / 16000)
        assert row["samples_per_s"] == pytest.approx(row["batch"] * row["samples_per_run"] / row["median_s"])
        assert row["flops_per_sample"] > 0 and row["weight_bytes_per_sample"] > 0
        # at most the samples asked for (800; the naive engine's 32), fewer if a run would pass the bound
        assert 1 <= row["samples_per_run"] <= row["samples_wanted"] == (32 if row["engine"] == "naive" else 800)
        assert row["max_seconds_per_run"] == 1.0 and row["usable_cores"] >= 1 and "load_average" in row
        assert isinstance(row["notes"], list) and row["precision"] == (row["engine"].partition("-")[2] or "fp32")
        if row["engine"].startswith("cpu"):  # the lower of the two floors, both measured
            floors = (row["bandwidth_floor_samples_per_s"], row["compute_floor_samples_per_s"])
            assert row["floor_samples_per_s"] == min(floors) > 0
            assert row["floor"] == ("compute" if floors[1] < floors[0] else "bandwidth")
    torch_row = next(r for r in rows if r["engine"] == "torch" and r["batch"] == 1)
    assert torch_row["speedup_vs_torch"] == pytest.approx(1.0)
    by_engine = {r["engine"]: r for r in rows if r["batch"] == 1}
    assert by_engine["cpu-fp16"]["weight_bytes_per_sample"] == by_engine["cpu"]["weight_bytes_per_sample"] / 2
    assert by_engine["cpu-int8"]["weight_bytes_per_sample"] > by_engine["cpu"]["weight_bytes_per_sample"] / 4


TINY_TRANSFORMER = ["--model", "transformer", "--layers", "1", "--heads", "2", "--width", "32", "--context", "16",
                    "--classes", "64"]


def test_bench_and_generate_a_transformer(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--seconds", "0.003", "--repeats", "2", "--quiet", "--json", str(path)] + TINY_TRANSFORMER) == 0
    captured = capsys.readouterr()
    assert "cost per sample as the context fills" in captured.out
    assert "bench cpu" not in captured.err and "run/s" not in captured.err  # --quiet: no progress bars
    from fastwave.engines.generation import cpu_precisions
    rows = json.loads(path.read_text())
    precisions = cpu_precisions(fastwave.SampleTransformer())  # a cpu-<precision> row for each but fp32
    assert precisions == ("fp32", "fp16", "int8")
    assert [r["engine"] for r in rows] == ["naive", "torch", "cpu", "cpu-fp16", "cpu-int8"]
    assert all(r["model"] == "transformer" for r in rows)
    torch_row, cpu_row, fp16_row, int8_row = rows[1:]
    # fp16 stores the weights and the keys and values in half; int8 in bytes, with fp32 scales
    assert fp16_row["precision"] == "fp16" and fp16_row["weight_bytes_per_sample"] == cpu_row["weight_bytes_per_sample"] / 2
    assert fp16_row["state_bytes_per_sample"] == cpu_row["state_bytes_per_sample"] / 2
    # 2 heads of 16 features: 32 bytes and 2 scales per position and K or V, against 32 floats
    assert int8_row["state_bytes_per_sample"] == cpu_row["state_bytes_per_sample"] * (32 + 2 * 4) / (32 * 4)
    # the decode step reads every layer's keys and values with the context full: 1 * 2 * 16 * 32 fp32
    assert torch_row["state_bytes_per_sample"] == 1 * 2 * 16 * 32 * 4 and torch_row["samples_per_s"] > 0
    # ... and fewer while the cache fills: 1, 4, 8 and 16 of the 16 positions
    assert [c["filled"] for c in torch_row["cost_by_fill"]] == [1, 4, 8, 16]
    assert torch_row["cost_by_fill"][-1]["kv_bytes_per_stream"] == torch_row["state_bytes_per_sample"]
    out = tmp_path / "t.wav"
    assert main(["generate", "--seconds", "0.002", "--out", str(out), "--quiet", "--cond-window", "32"]
                + TINY_TRANSFORMER) == 0
    assert load_audio(out)[0].shape == (32,)
    assert main(["bench", "--residual-channels", "8"] + TINY_TRANSFORMER) == 2
    assert "--residual-channels do not apply to --model transformer" in capsys.readouterr().err


def test_generate_writes_audio(tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["generate", "--seconds", "0.01", "--out", str(out), "--quiet", "--temperature", "0.5"] + TINY) == 0
    audio, rate = load_audio(out)
    assert rate == 16000 and audio.shape == (160,)
    int8 = tmp_path / "int8.wav"
    assert main(["generate", "--seconds", "0.01", "--out", str(int8), "--quiet", "--precision", "int8"] + TINY) == 0
    assert load_audio(int8)[0].shape == (160,)
    capsys.readouterr()
    assert main(["generate", "--seconds", "0.01", "--out", str(int8), "--engine", "torch", "--precision", "fp16"]
                + TINY) == 2
    assert "needs engine='cpu'" in capsys.readouterr().err


def test_generate_with_no_model_plays_the_shipped_piano_wavenet(tmp_path, capsys, monkeypatch):
    from fastwave import pretrained
    model = pretrained.piano_wavenet()
    assert isinstance(model, fastwave.WaveNet) and model.config.classes == 256 and model.sample_rate == 16000
    assert pathlib.Path(pretrained.PIANO_WAVENET).stat().st_size <= 10 * 2 ** 20  # the 10 MB
    # it reads the roll and each key's onset envelope
    assert model.config.local_channels == SCORE_CHANNELS == pretrained.PIANO_CHANNELS and model.config.cond_hop == ROLL_HOP
    out = tmp_path / "piano.wav"
    assert main(["generate", "--seconds", "0.01", "--out", str(out), "--quiet"]) == 0
    assert "shipped piano WaveNet plays random score 0" in capsys.readouterr().err
    # the CLI plays score --seed: the same audio as the Python API with that score
    cond = pretrained.piano_cond(160, [0])
    fastwave.save_audio(tmp_path / "api.wav", fastwave.mulaw_decode(fastwave.generate(model, 160, cond=cond))[0], 16000)
    assert np.array_equal(load_audio(out)[0], load_audio(tmp_path / "api.wav")[0])
    assert main(["generate", "--seconds", "0.01", "--out", str(out), "--quiet", "--seed", "1"]) == 0
    assert not np.array_equal(load_audio(out)[0], load_audio(tmp_path / "api.wav")[0])
    # a size flag (or --model) still asks for a random-weight model
    assert main(["generate", "--seconds", "0.01", "--out", str(out), "--quiet"] + TINY) == 0
    assert "random-weight wavenet" in capsys.readouterr().err
    monkeypatch.setattr(pretrained, "PIANO_WAVENET", str(tmp_path / "absent.safetensors"))
    assert main(["generate", "--seconds", "0.01", "--out", str(out), "--quiet"]) == 2
    assert "no shipped piano model" in capsys.readouterr().err


def test_generate_continues_a_prompt_file(tmp_path):
    import numpy as np
    from fastwave import save_audio
    prompt = tmp_path / "prompt.wav"
    save_audio(prompt, 0.3 * np.sin(np.linspace(0, 100, 441)).astype(np.float32), 44100)  # resampled to 16 kHz
    out = tmp_path / "continued.wav"
    greedy = ["--seconds", "0.005", "--quiet", "--temperature", "0"] + TINY
    assert main(["generate", "--out", str(out), "--prompt", str(prompt)] + greedy) == 0
    assert main(["generate", "--out", str(tmp_path / "unprompted.wav")] + greedy) == 0
    continued = load_audio(out)[0]
    assert continued.shape == (80,) and not np.array_equal(continued, load_audio(tmp_path / "unprompted.wav")[0])
    assert main(["generate", "--out", str(out), "--prompt", str(tmp_path / "absent.wav")] + TINY) == 2


def test_generate_from_a_checkpoint_with_two_streams(tmp_path):
    model = fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4,
                             sample_rate=8000)
    model.save(tmp_path / "m.safetensors")
    out = tmp_path / "gen.wav"
    args = ["generate", "--seconds", "0.01", "--out", str(out), "--checkpoint", str(tmp_path / "m.safetensors"),
            "--batch", "2", "--quiet"]
    assert main(args) == 0
    for i in range(2):
        audio, rate = load_audio(tmp_path / f"gen_{i}.wav")
        assert rate == 8000 and audio.shape == (80,)


def test_bad_input_is_an_error_message_not_a_traceback(tmp_path, capsys):
    assert main(["generate", "--seconds", "0.01", "--out", str(tmp_path / "x.wav"), "--engine", "warp"] + TINY) == 2
    assert "engine must be one of" in capsys.readouterr().err
    assert main(["generate", "--out", str(tmp_path / "x.wav"), "--checkpoint", str(tmp_path / "none")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["bench", "--engines", "cuda"] + TINY) == 2
    for seconds in ("0", "-3", "inf", "nan"):
        assert main(["generate", "--seconds", seconds, "--out", str(tmp_path / "x.wav")] + TINY) == 2
        assert "--seconds must be a positive" in capsys.readouterr().err
    assert main(["bench", "--repeats", "0"] + TINY) == 2
    assert main(["generate", "--seconds", "0.01", "--out", str(tmp_path / "x.mp9")] + TINY) == 2
    assert "extension" in capsys.readouterr().err
    conditioned = tmp_path / "conditioned.safetensors"
    fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, global_classes=2).save(conditioned)
    assert main(["generate", "--out", str(tmp_path / "x.wav"), "--checkpoint", str(conditioned)]) == 2
    assert "conditioned" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--batch", "one"])
    # the shipped model's path used to fail later, on its scores ("seeds must name at least one score")
    assert main(["generate", "--batch", "0", "--out", str(tmp_path / "x.wav")]) == 2
    assert "--batch must be a positive number of streams, got 0" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "fastwave.cli", "bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--json" in result.stdout and "--engines" in result.stdout


def test_version_license_and_every_generate_flag_explained(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["--version"])
    assert exit_code.value.code == 0 and capsys.readouterr().out.strip() == f"fastwave {fastwave.__version__}"
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    blocks = re.findall(r"^  (-[-\w]+)(.*(?:\n {6,}.*)*)", text, flags=re.M)  # flag, then its help
    assert {"--top-k", "--top-p", "--device", "--prompt"} <= {flag for flag, _ in blocks}
    unexplained = [flag for flag, rest in blocks if not re.search(r"\s{2,}\S|\n", rest)]
    assert unexplained == [], unexplained
    assert "continuation only" in text  # --prompt: the file holds the continuation, not the prompt
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()


def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"^## In Python\n\n```python\n(.*?)^```", readme, flags=re.M | re.S).group(1)
    monkeypatch.chdir(tmp_path)  # it writes wavenet.safetensors and out.wav
    scope = {}
    exec(compile(example, "README.md (In Python)", "exec"), scope)
    assert scope["tokens"].shape == (2, 64000) and scope["chunk"].shape == (1, 1600)
    assert set(scope["cond"]) == {"local_cond"} and scope["cond"]["local_cond"].shape == (2, SCORE_CHANNELS, 1000)
    assert load_audio(tmp_path / "out.wav")[0].shape == (16000,)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(pip install .*pytest)$", readme, flags=re.M)
    assert len(commands) == 1
    assert commands[0] in (ROOT / ".ci" / "run").read_text().splitlines()
    assert re.search(r"^pip install .* && fastwave bench$", readme, flags=re.M)


def test_generate_takes_a_conditioned_checkpoints_conditioning_from_a_file(tmp_path, capsys):
    """--cond FILE.npz: the same tokens as fastwave.generate with that cond (one stream's arrays serve
    every stream); what is missing or misshapen is named."""
    torch.manual_seed(0)
    model = fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, classes=16,
                             global_classes=3, local_channels=2, cond_hop=4, sample_rate=8000).eval()
    model.save(tmp_path / "m.safetensors")
    local = np.random.default_rng(0).standard_normal((2, 30)).astype(np.float32)
    np.savez(tmp_path / "cond.npz", global_cond=np.array(2), local_cond=local)
    out = tmp_path / "c.wav"
    assert main(["generate", "--seconds", "0.01", "--out", str(out), "--checkpoint", str(tmp_path / "m.safetensors"),
                 "--cond", str(tmp_path / "cond.npz"), "--batch", "2", "--seed", "3", "--quiet"]) == 0
    tokens = fastwave.generate(model, 80, batch=2, seed=3, cond={"global_cond": torch.tensor([2, 2]),
                                                                   "local_cond": torch.from_numpy(local).expand(2, 2, 30)})
    for b in range(2):
        audio, _ = load_audio(tmp_path / f"c_{b}.wav")
        expected = fastwave.mulaw_decode(tokens[b], classes=16).numpy()
        assert np.allclose(audio, expected, atol=1 / 32768 + 1e-6)
    capsys.readouterr()
    checkpoint = ["--checkpoint", str(tmp_path / "m.safetensors"), "--out", str(out), "--seconds", "0.01"]
    np.savez(tmp_path / "local_only.npz", local_cond=local)
    np.savez(tmp_path / "odd.npz", speaker=np.array(1))
    np.savez(tmp_path / "floats.npz", global_cond=np.array(1.5), local_cond=local)
    np.savez(tmp_path / "short.npz", global_cond=np.array(1), local_cond=local[:, :5])
    for name, message in (("local_only", "global_cond"), ("odd", "holds speaker"), ("floats", "must hold integers"),
                          ("short", "local_cond")):
        assert main(["generate", *checkpoint, "--cond", str(tmp_path / f"{name}.npz")]) == 2, name
        assert message in capsys.readouterr().err, name
    plain = tmp_path / "plain.safetensors"
    fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4).save(plain)
    assert main(["generate", "--checkpoint", str(plain), "--out", str(out), "--cond", str(tmp_path / "cond.npz")]) == 2
    assert "not conditioned" in capsys.readouterr().err
    assert main(["generate", *checkpoint, "--score", str(tmp_path / "cond.npz")]) == 2
    assert "piano-score WaveNet" in capsys.readouterr().err


@pytest.mark.parametrize("envelope", [False, True], ids=["roll", "roll+envelope"])
def test_generate_plays_a_midi_or_piano_roll_score_on_the_piano_model(tmp_path, capsys, envelope):
    """--score: a MIDI file becomes the piano roll it spells (the same tokens as generating with that
    roll, or with the roll and its onset envelope for a model that reads both), a roll .npy is read as
    is; both replace the random score."""
    mido = pytest.importorskip("mido")
    from fastwave.corpora.score import ROLL_CHANNELS, ROLL_HOP, SCORE_CHANNELS, notes_from_midi, piano_roll, score_features

    torch.manual_seed(0)
    channels = SCORE_CHANNELS if envelope else ROLL_CHANNELS
    model = fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, classes=16,
                             local_channels=channels, cond_hop=ROLL_HOP, sample_rate=16000).eval()
    model.save(tmp_path / "piano.safetensors")
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track += [mido.MetaMessage("set_tempo", tempo=500000), mido.Message("note_on", note=60, velocity=100, time=0),
              mido.Message("note_on", note=64, velocity=80, time=240), mido.Message("note_off", note=60, time=240),
              mido.Message("note_on", note=64, velocity=0, time=480)]
    midi.save(tmp_path / "score.mid")
    notes = notes_from_midi(tmp_path / "score.mid")
    assert [(n.pitch, n.velocity, n.start, n.duration) for n in notes] == [(60, 100, 0.0, 0.5), (64, 80, 0.25, 0.75)]
    out = tmp_path / "p.wav"
    common = ["generate", "--checkpoint", str(tmp_path / "piano.safetensors"), "--seconds", "0.02", "--seed", "1",
              "--quiet", "--out", str(out)]
    assert main([*common, "--score", str(tmp_path / "score.mid")]) == 0
    roll = piano_roll(notes, 320)
    feats = torch.from_numpy(score_features(roll, channels))[None]
    expected = fastwave.mulaw_decode(fastwave.generate(model, 320, seed=1, cond={"local_cond": feats})[0],
                                     classes=16).numpy()
    assert np.allclose(load_audio(out)[0], expected, atol=1 / 32768 + 1e-6)
    np.save(tmp_path / "roll.npy", roll)
    assert main([*common, "--score", str(tmp_path / "roll.npy")]) == 0
    assert np.allclose(load_audio(out)[0], expected, atol=1 / 32768 + 1e-6)
    np.save(tmp_path / "wide.npy", score_features(roll, SCORE_CHANNELS))  # features, not a roll
    capsys.readouterr()
    assert main([*common, "--score", str(tmp_path / "wide.npy")]) == 2
    assert "a piano roll is (96, frames)" in capsys.readouterr().err
    for missing in ("missing.npy", "missing.mid"):  # a message, not a traceback
        assert main([*common, "--score", str(tmp_path / missing)]) == 2
        assert "missing" in capsys.readouterr().err
    track.append(mido.Message("note_on", note=20, velocity=90, time=0))  # below the roll's keys
    midi.save(tmp_path / "low.mid")
    assert main([*common, "--score", str(tmp_path / "low.mid")]) == 2
    assert "pitch 20 is outside" in capsys.readouterr().err


def test_generate_plays_a_pre_emphasis_checkpoint_through_its_de_emphasis(tmp_path):
    model = fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4,
                             pre_emphasis=0.85)
    model.save(tmp_path / "m.safetensors")
    out = tmp_path / "gen.wav"
    assert main(["generate", "--seconds", "0.01", "--out", str(out), "--checkpoint", str(tmp_path / "m.safetensors"),
                 "--seed", "3", "--quiet"]) == 0
    tokens = fastwave.generate(model, 160, seed=3)
    expected = model.tokens_to_audio(tokens)[0].numpy()
    assert not np.allclose(expected, fastwave.mulaw_decode(tokens)[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(load_audio(out)[0], expected, atol=2 / 32768)  # 16-bit file
