"""`fastwave train-classifier`, `evaluate` and `analyze-frontend` end to end on a small FSD50K-style
set of generated clips (a CSV of comma-separated labels plus a folder of wav files)."""
import json

import pytest
import soundfile
import torch

import fastwave
from fastwave.cli import main
from synthetic_audio import SOUNDS, tagged_mixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tags")
    (root / "audio").mkdir()
    clips, targets = tagged_mixtures(30, seconds=(0.3, 1.5), seed=0)
    rows = ["fname,labels"]
    for i, (clip, row) in enumerate(zip(clips, targets)):
        soundfile.write(root / "audio" / f"{i}.wav", clip, 16000, subtype="PCM_16")
        names = ",".join(name for name, on in zip(SOUNDS, row) if on)
        rows.append(f'{i},"{names}"')
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


# Every augmentation on: the flags reach train_classifier and are recorded with the run.
AUGMENT = ["--shift-ms", "10", "--gain-db", "3", "--polarity", "--mix", "0.5"]


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train-classifier", str(dataset / "audio"), "--labels", str(dataset / "labels.csv"),
                     "--out-dir", str(out), "--layers", "1", "--width", "32", "--heads", "2", "--frontend", "32",
                     "--epochs", "3", "--batch-size", "8", "--device", "cpu", "--quiet", *AUGMENT])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out


def test_train_writes_checkpoints_and_a_test_report(trained, capsys):
    names = {p.name for p in trained.iterdir()}
    assert {"last.safetensors", "best.safetensors", "train_state.pt", "history.json", "report.json"} <= names
    model = fastwave.load_model(trained / "best.safetensors")
    assert isinstance(model, fastwave.WaveletClassifier)
    assert model.config.labels == tuple(sorted(SOUNDS)) and model.config.multi_label
    report = json.loads((trained / "report.json").read_text())
    assert 0 < report["test"]["metrics"]["mAP"] <= 1 and report["test"]["clips"] >= 3
    history = json.loads((trained / "history.json").read_text())
    assert len(history["eval"]) == 3
    assert history["settings"]["augment"] == {"shift": 160, "gain_db": 3.0, "polarity": True, "mix": 0.5}


def test_resume_of_a_finished_run_trains_nothing(dataset, trained, capsys):
    before = (trained / "last.safetensors").read_bytes()
    code = main(["train-classifier", str(dataset / "audio"), "--labels", str(dataset / "labels.csv"),
                 "--out-dir", str(trained), "--layers", "1", "--width", "32", "--heads", "2", "--frontend", "32",
                 "--epochs", "3", "--batch-size", "8", "--device", "cpu", "--quiet", "--resume", *AUGMENT])
    assert code == 0 and (trained / "last.safetensors").read_bytes() == before
    assert "mAP (macro, per class)" in capsys.readouterr().out


def test_evaluate_prints_the_metric_table(dataset, trained, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(trained / "best.safetensors"), str(dataset / "audio"),
                 "--labels", str(dataset / "labels.csv"), "--split", "test", "--json", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    for row in ("clips", "windows", "mAP (macro, per class)", "micro-average precision", "d-prime",
                "classes scored", "classes skipped"):
        assert row in text
    report = json.loads(out.read_text())
    saved = json.loads((trained / "report.json").read_text())["test"]
    assert report["metrics"] == pytest.approx(saved["metrics"])  # the same split for the same --seed


def test_evaluate_refuses_labels_outside_the_vocabulary(dataset, trained, tmp_path, capsys):
    csv = tmp_path / "other.csv"
    csv.write_text('fname,labels\n0,"low_tone,dog_bark"\n')
    code = main(["evaluate", str(trained / "best.safetensors"), str(dataset / "audio"), "--labels", str(csv)])
    err = capsys.readouterr().err
    assert code == 2 and "'dog_bark'" in err and "not in the vocabulary" in err


def test_evaluate_refuses_a_model_that_is_not_a_classifier(dataset, tmp_path, capsys):
    path = tmp_path / "wavenet.safetensors"
    fastwave.WaveNet(layers=2, cycles=1, residual_channels=8, gate_channels=16, skip_channels=16).save(path)
    assert main(["evaluate", str(path), str(dataset / "audio"), "--labels", str(dataset / "labels.csv")]) == 2
    assert "not a classifier" in capsys.readouterr().err


def test_analyze_frontend_writes_the_figure(trained, tmp_path, capsys):
    out = tmp_path / "frontend.png"
    assert main(["analyze-frontend", str(trained / "best.safetensors"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "32" in text and "1 kHz" in text and f"wrote {out}" in text


def test_clip_shorter_than_a_patch_is_refused(dataset, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(4):
        soundfile.write(audio / f"{i}.wav", tagged_mixtures(1, seed=i)[0][0], 16000)
    soundfile.write(audio / "tiny.wav", tagged_mixtures(1, seed=9)[0][0][:300], 16000)  # 18.75 ms
    (tmp_path / "labels.csv").write_text("fname,labels\n" + "".join(f"{i},low_tone\n" for i in range(4)) +
                                         "tiny,high_tone\n")
    code = main(["train-classifier", str(audio), "--labels", str(tmp_path / "labels.csv"), "--out-dir",
                 str(tmp_path / "run"), "--epochs", "1", "--quiet"])
    assert code == 2 and "tiny.wav" in capsys.readouterr().err


def test_the_cnn_baseline_trains_and_evaluates_through_the_same_commands(dataset, tmp_path, capsys):
    out = tmp_path / "cnn"
    code = main(["train-classifier", str(dataset / "audio"), "--labels", str(dataset / "labels.csv"),
                 "--out-dir", str(out), "--arch", "cnn", "--channels", "4,8", "--epochs", "2", "--batch-size", "8",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    model = fastwave.load_model(out / "best.safetensors")
    assert isinstance(model, fastwave.LogMelCNN) and model.config.channels == (4, 8)
    assert model.config.dropout == 0.2 and model.config.labels == tuple(sorted(SOUNDS))
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.safetensors"), str(dataset / "audio"),
                 "--labels", str(dataset / "labels.csv"), "--quiet"]) == 0
    assert "mAP (macro, per class)" in capsys.readouterr().out
    assert main(["analyze-frontend", str(out / "best.safetensors"), "--out", str(tmp_path / "f.png")]) == 2
    assert "not a wavelet Audio Transformer" in capsys.readouterr().err


def test_the_logmel_transformer_arm_trains_through_the_same_command(dataset, tmp_path, capsys):
    out = tmp_path / "logmel"
    code = main(["train-classifier", str(dataset / "audio"), "--labels", str(dataset / "labels.csv"),
                 "--out-dir", str(out), "--inputs", "logmel", "--n-mels", "32", "--layers", "1", "--width", "32",
                 "--heads", "2", "--frontend", "32", "--steps", "5", "--eval-every", "2", "--warmup", "1",
                 "--batch-size", "8", "--device", "cpu", "--quiet"])
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert [e["step"] for e in history["eval"]] == [2, 4, 5] and history["settings"]["warmup"] == 1
    model = fastwave.load_model(out / "best.safetensors")
    assert isinstance(model, fastwave.WaveletClassifier)
    assert (model.config.inputs, model.config.n_mels, model.frontend[0].in_features) == ("logmel", 32, 32)
    capsys.readouterr()
    assert main(["analyze-frontend", str(out / "best.safetensors"), "--out", str(tmp_path / "f.png")]) == 2
    assert "no FIR filters" in capsys.readouterr().err


def test_the_command_line_choices_are_the_models():
    from fastwave.cli import tagging
    from fastwave.models import classifier

    assert tagging.POOLINGS == classifier.POOLINGS and tagging.INPUTS == classifier.INPUTS
