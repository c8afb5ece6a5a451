"""The pipeline end to end on generated tones: tokenizer -> code LM -> linear probe vs baselines."""
import math

import numpy as np
import pytest
import torch

from fastwave.codes.probing import codes_sweep, fit_supervised, format_table, probe_report, train_supervised
from fastwave.codes.lm_training import code_lm_metrics
from small_models import TINY_CODE_LM as LM

def test_the_code_lm_predicts_held_out_codes(corpus):
    _, _, _, codes, splits, lm = corpus
    metrics = code_lm_metrics(lm, [codes[i] for i in splits["test"]])
    assert metrics["perplexity"] < 4  # of 16 codes: the sustained tones make codes predictable
    assert metrics["top1"] > 0.6


def test_probe_beats_chance_on_timbres(corpus):
    _, labels, _, codes, splits, lm = corpus
    rows = {row["method"]: row for row in probe_report(lm, codes, labels, splits, supervised_steps=100)}
    assert set(rows) == {"code LM probe", "random-weights probe", "supervised end to end",
                         "chance (most frequent class)"}
    chance = rows["chance (most frequent class)"]["test"]
    assert math.isclose(chance, 1 / 3, abs_tol=0.01)  # stratified split of balanced classes
    assert rows["code LM probe"]["test"] >= chance + 0.4, rows
    assert rows["code LM probe"]["val"] >= chance + 0.4, rows
    assert rows["supervised end to end"]["test"] >= chance + 0.3, rows
    assert all(row["metric"] == "accuracy" for row in rows.values())
    test_labels = np.asarray(labels)[splits["test"]]
    for row in rows.values():  # each test clip's prediction, for intervals over test items
        assert len(row["test_predictions"]) == len(test_labels)
        assert np.mean(np.asarray(row["test_predictions"]) == test_labels) == pytest.approx(row["test"]), row["method"]
    assert len(set(rows["chance (most frequent class)"]["test_predictions"])) == 1
    table = format_table(list(rows.values()))
    assert table.splitlines()[0] == "| method | metric | val | test |" and "code LM probe" in table


def test_multi_label_targets_report_map(corpus):
    _, labels, _, codes, splits, lm = corpus
    # two attributes: "has odd harmonics" (square, saw) and "has even harmonics" (saw)
    targets = np.stack([labels >= 1, labels == 2], axis=1).astype(np.float32)
    rows = probe_report(lm, codes, targets, splits, supervised_steps=50)
    assert [row["method"] for row in rows] == ["code LM probe", "random-weights probe", "supervised end to end"]
    assert all(row["metric"] == "mAP" and 0 <= row["test"] <= 1 and "test_predictions" not in row for row in rows)
    assert rows[0]["test"] > 0.8


def test_supervised_keeps_the_best_validation_weights(corpus, monkeypatch):
    import fastwave.codes.probing as code_probe

    _, labels, _, codes, splits, lm = corpus
    seen = []
    real = code_probe.headline_score

    def spy(scores, targets, multi_label):
        seen.append((len(targets), real(scores, targets, multi_label)))
        return seen[-1][1]

    monkeypatch.setattr(code_probe, "headline_score", spy)
    val, test = train_supervised(lm.config, codes, labels, splits, steps=60, eval_every=20)
    val_scores = [score for _, score in seen[:-1]]  # every 20 steps on val, then once on test
    assert len(val_scores) == 3 and val == max(val_scores)
    assert seen[-1] == (len(splits["test"]), test)
    monkeypatch.setattr(code_probe, "headline_score", real)
    assert train_supervised(lm.config, codes, labels, splits, steps=60, eval_every=20) == (val, test)  # seeded
    with pytest.raises(ValueError, match="eval_every"):
        train_supervised(lm.config, codes, labels, splits, steps=1, eval_every=0)


def test_codes_sweep(corpus):
    clips, labels, tokenizer, _, splits, _ = corpus
    rows = codes_sweep(tokenizer, clips, labels, splits, codes=(8, 32), lm_steps=100, lm_lr=3e-3, lm_config=LM)
    assert [row["codes"] for row in rows] == [8, 32]
    for row in rows:  # the LM learns something of the codes, and the probe beats chance (1/3)
        assert 1 <= row["perplexity"] < 0.5 * row["codes"] and row["test"] > 0.6, rows
    with pytest.raises(ValueError, match="codes=4096 but the audio gives only"):
        codes_sweep(tokenizer, clips, labels, splits, codes=(4096,), lm_steps=1, lm_config=LM)


def test_bad_inputs(corpus):
    _, labels, _, codes, splits, lm = corpus
    with pytest.raises(ValueError, match="targets must be"):
        probe_report(lm, codes, labels[:-1], splits)
    with pytest.raises(ValueError, match="splits must be a dict"):
        probe_report(lm, codes, labels, {"train": splits["train"]})
    with pytest.raises(ValueError, match=r"splits\['test'\]"):
        probe_report(lm, codes, labels, {**splits, "test": [len(codes)]})
    with pytest.raises(ValueError, match="overlap"):
        probe_report(lm, codes, labels, {**splits, "test": splits["train"][:3]})
    with pytest.raises(ValueError, match="class ids"):
        probe_report(lm, codes, labels.astype(np.float32), splits)


def test_supervised_reads_vectors_in_place_of_codes(corpus):
    clips, labels, tokenizer, codes, splits, lm = corpus
    latents = [tokenizer.latents(tokenizer.clip_patches(clip)) for clip in clips]  # (T_i, bottleneck) each
    val, test = train_supervised(lm.config, latents, labels, splits, steps=60, eval_every=20)
    assert test >= 1 / 3 + 0.3 and val >= 1 / 3 + 0.3  # three timbres, balanced
    # The vectors are what it reads: the same labels on shuffled vectors leave it at chance.
    shuffled = [latents[i] for i in np.random.default_rng(0).permutation(len(latents))]
    _, test_shuffled = train_supervised(lm.config, shuffled, labels, splits, steps=60, eval_every=20)
    assert test_shuffled < test - 0.2
    with pytest.raises(ValueError, match=r"got clip 1: torch.float32 of shape \(3, 8\)"):
        train_supervised(lm.config, [torch.zeros(3, 16), torch.zeros(3, 8)], labels[:2], splits, steps=1)
    with pytest.raises(ValueError, match=r"got clip 1: torch.int64"):
        train_supervised(lm.config, [torch.zeros(3, 16), torch.zeros(3, 16, dtype=torch.int64)], labels[:2], splits)
    with pytest.raises(ValueError, match=r"D >= 1"):
        train_supervised(lm.config, [torch.zeros(3, 0)] * 2, labels[:2], splits)
    # numpy arrays serve as well, and standardisation reads the training clips only
    model, _ = fit_supervised(lm.config, [z.numpy() for z in latents], labels, splits, steps=1)
    train = torch.cat([latents[i] for i in splits["train"]])
    assert torch.allclose(model.mean, train.mean(0)) and torch.allclose(model.std, train.std(0))
    with pytest.raises(ValueError, match="NaN or inf"):
        bad = [z.clone() for z in latents]
        bad[5][0, 0] = float("nan")
        train_supervised(lm.config, bad, labels, splits, steps=1)


def test_pooling_any_states_matches_the_lm_pooled(corpus):
    from fastwave.models.code_lm import pool_states

    *_, codes, _, lm = corpus
    rows = torch.stack([codes[0][:6], codes[1][:6]])
    for pooling in ("mean", "mean+max", "mean+std"):
        expected = lm.pooled(rows, [4, 6], pooling=pooling)
        assert torch.allclose(pool_states(lm.hidden_from(lm.embedding(rows)), [4, 6], pooling), expected)
    with pytest.raises(ValueError, match="x must be"):
        lm.hidden_from(torch.zeros(1, 3, 5))
