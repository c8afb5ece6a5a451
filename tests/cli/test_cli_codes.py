"""The pipeline's commands: fit-tokenizer -> encode -> train-code-lm -> probe, on generated tones."""
import json

import numpy as np
import pytest
import torch

import fastwave
from fastwave.cli import main
from fastwave.codes.tokenizer import CodeTokenizer, load_codes, save_codes
from synthetic_audio import TIMBRES, timbre_clips

TOKENIZER = ["--codes", "8", "--n-mels", "32", "--hidden", "64,32", "--bottleneck", "16", "--steps", "150",
             "--batch-size", "32", "--quiet"]
LM = ["--layers", "1", "--heads", "2", "--width", "32", "--context", "16", "--quiet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """clips/<timbre>/<i>.wav, 8 clips of 0.5 s per timbre."""
    root = tmp_path_factory.mktemp("clips")
    clips, labels = timbre_clips(per_class=8, seconds=0.5, seed=2)
    for i, (clip, label) in enumerate(zip(clips, labels)):
        (root / TIMBRES[label]).mkdir(exist_ok=True)
        fastwave.save_audio(root / TIMBRES[label] / f"{i}.wav", clip, 16000)
    return root


def test_the_pipeline_from_the_command_line(folder, tmp_path, capsys):
    tok, codes, lm = tmp_path / "tok.safetensors", tmp_path / "codes.npz", tmp_path / "lm.safetensors"
    assert main(["fit-tokenizer", str(folder), "--out", str(tok)] + TOKENIZER) == 0
    assert "fitted on 288 patches" in capsys.readouterr().out
    assert CodeTokenizer.load(tok).config.codes == 8

    assert main(["encode", str(folder), "--tokenizer", str(tok), "--out", str(codes), "--quiet"]) == 0
    names, clips, classes = load_codes(codes)
    assert classes == 8 and len(names) == 24 and all(len(c) == 12 for c in clips)
    torch.testing.assert_close(clips[0], CodeTokenizer.load(tok).encode_item(names[0]), rtol=0, atol=0)

    metrics = tmp_path / "lm.json"
    assert main(["train-code-lm", str(codes), "--out", str(lm), "--steps", "30", "--lr", "3e-3",
                 "--json", str(metrics)] + LM) == 0
    out = capsys.readouterr().out
    assert "held-out 2 clips" in out and "perplexity" in out
    saved = json.loads(metrics.read_text())  # what it printed, for scripts
    assert saved["steps"] == 30 and saved["train_clips"] == 22 and saved["heldout_clips"] == 2
    assert f"perplexity {saved['heldout']['perplexity']:.2f}" in out and 1.0 <= saved["heldout"]["perplexity"] <= 8
    assert isinstance(fastwave.load_model(lm), fastwave.CodeLM)

    report = tmp_path / "probe.json"
    assert main(["probe", str(folder), "--tokenizer", str(tok), "--lm", str(lm), "--supervised-steps", "20",
                 "--json", str(report), "--baselines", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "24 clips, 3 labels (multi-class)" in out and "| code LM probe | accuracy |" in out
    assert "| bag-of-codes probe | accuracy |" in out
    saved = json.loads(report.read_text())
    rows = saved["rows"]
    assert [r["method"] for r in rows][:3] == ["code LM probe", "random-weights probe", "supervised end to end"]
    assert [r["method"] for r in rows][4:] == [
        "bag-of-codes probe", "autoencoder bottleneck probe", "code LM probe, layer and pooling chosen on val",
        "random-weights probe, layer and pooling chosen on val"]
    assert len(saved["sweep"]) == 2 * 2 * 3  # two networks, layers 0..1 (a 1-layer LM), three poolings
    assert len(saved["test_clips"]) == len(saved["test_targets"]) == len(rows[0]["test_predictions"]) > 0
    for row in rows:  # the predictions, clips and targets line up: they reproduce each row's accuracy
        hits = [p == t for p, t in zip(row["test_predictions"], saved["test_targets"])]
        assert sum(hits) / len(hits) == pytest.approx(row["test"])

    assert main(["probe", str(folder), "--tokenizer", str(tok), "--sweep-codes", "4,8", "--lm-steps", "10",
                 "--quiet"]) == 0
    assert "| codes | perplexity |" in capsys.readouterr().out


def test_probe_reads_an_fsd50k_csv(folder, tmp_path, capsys):
    tok = tmp_path / "tok.safetensors"
    assert main(["fit-tokenizer", str(folder), "--out", str(tok)] + TOKENIZER) == 0
    lm = tmp_path / "lm.safetensors"
    fastwave.CodeLM(classes=8, layers=1, heads=2, width=32).save(lm)
    files = sorted(folder.rglob("*.wav"))
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = ["fname,labels"]
    for path in files:
        (flat / path.name).write_bytes(path.read_bytes())
        lines.append(f'{path.stem},"{path.parent.name},tone"')  # multi-label: every clip is also a "tone"
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    assert main(["probe", str(flat), "--tokenizer", str(tok), "--lm", str(lm), "--labels",
                 str(tmp_path / "labels.csv"), "--supervised-steps", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "24 clips, 4 labels (multi-label)" in out and "| code LM probe | mAP |" in out


def test_codes_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "c.npz"
    save_codes(path, ["a.wav", "b.wav"], [torch.tensor([1, 2, 3]), np.array([0])], 4)
    names, clips, classes = load_codes(path)
    assert names == ["a.wav", "b.wav"] and classes == 4 and [c.tolist() for c in clips] == [[1, 2, 3], [0]]
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        save_codes(path, ["a"], [torch.tensor([4])], 4)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a codes file"):
        load_codes(tmp_path / "bad.npz")


def test_command_errors(folder, tmp_path, capsys):
    tok = tmp_path / "tok.safetensors"
    assert main(["fit-tokenizer", str(folder), "--out", str(tok), "--codes", "1000"] + TOKENIZER[2:]) == 2
    assert "codes=1000 but the audio gives only 288 patches" in capsys.readouterr().err
    assert not tok.exists()
    assert main(["fit-tokenizer", str(tmp_path / "missing"), "--out", str(tok)] + TOKENIZER) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["probe", str(folder), "--tokenizer", str(tok)]) == 2
    assert "--lm is required" in capsys.readouterr().err
    assert main(["probe", str(folder), "--tokenizer", str(tok), "--sweep-codes", "4", "--baselines"]) == 2
    assert "--baselines probes one --lm" in capsys.readouterr().err
    assert main(["fit-tokenizer", str(folder), "--out", str(tmp_path / "no" / "t.safetensors")] + TOKENIZER) == 2
    assert "does not exist" in capsys.readouterr().err


def test_mismatched_or_foreign_checkpoints(folder, tmp_path, capsys):
    tok, lm = tmp_path / "tok.safetensors", tmp_path / "lm.safetensors"
    assert main(["fit-tokenizer", str(folder), "--out", str(tok)] + TOKENIZER) == 0
    fastwave.CodeLM(classes=64, layers=1, heads=2, width=32).save(lm)
    capsys.readouterr()
    assert main(["probe", str(folder), "--tokenizer", str(tok), "--lm", str(lm), "--quiet"]) == 2
    assert "models 64 codes but --tokenizer" in capsys.readouterr().err
    assert main(["probe", str(folder), "--tokenizer", str(lm), "--lm", str(lm), "--quiet"]) == 2
    assert "not a code tokenizer" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(lm), "--out", str(tmp_path / "x.wav"), "--quiet"]) == 2
    assert "holds a code_lm, not a sample model" in capsys.readouterr().err
