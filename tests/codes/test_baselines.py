"""The baselines that explain a code-LM probe (fastwave.codes.baselines) on generated tones."""
import numpy as np
import pytest
import torch

from fastwave.codes.baselines import probe_baselines, probe_layers
from fastwave.codes.probing import probe_report
from fastwave.models.code_lm import POOLINGS, CodeLM

CHOSEN = ("code LM probe, layer and pooling chosen on val", "random-weights probe, layer and pooling chosen on val")


@pytest.fixture(scope="module")
def baselines(corpus):
    clips, labels, tokenizer, _, splits, lm = corpus
    return probe_baselines(tokenizer, lm, clips, labels, splits, seed=3)


def test_every_method_reads_the_timbres(corpus, baselines):
    _, labels, _, _, splits, _ = corpus
    rows, _ = baselines
    assert [row["method"] for row in rows] == ["bag-of-codes probe", "autoencoder bottleneck probe", *CHOSEN]
    test_labels = np.asarray(labels)[splits["test"]]
    for row in rows:  # three balanced timbres: chance is 1/3
        assert row["metric"] == "accuracy" and row["test"] >= 1 / 3 + 0.3, row
        assert np.mean(np.asarray(row["test_predictions"]) == test_labels) == pytest.approx(row["test"]), row["method"]


def test_the_sweep_covers_every_layer_and_pooling_and_the_choice_is_the_best_on_val(corpus, baselines):
    lm = corpus[-1]
    rows, sweep = baselines
    for row, model in zip(rows[2:], ("code LM", "random-weights")):
        entries = [e for e in sweep if e["model"] == model]
        assert {(e["layer"], e["pooling"]) for e in entries} == {(l, p) for l in range(lm.config.layers + 1) for p in POOLINGS}
        best = max(entries, key=lambda e: e["val"])
        assert row["val"] == best["val"]
        chosen = next(e for e in entries if (e["layer"], e["pooling"]) == (row["layer"], row["pooling"]))
        assert (chosen["val"], chosen["test"]) == (row["val"], row["test"])


def test_the_final_mean_entries_are_probe_reports_methods(corpus, baselines):
    """The sweep's (final layer, mean) pairs are the probes ``probe_report`` runs: the same trained and
    random networks (a different random seed would give a different network and other scores)."""
    _, labels, _, codes, splits, lm = corpus
    report = {row["method"]: row for row in probe_report(lm, codes, labels, splits, supervised_steps=10, seed=3)}
    _, sweep = baselines
    final = {e["model"]: e for e in sweep if e["layer"] == lm.config.layers and e["pooling"] == "mean"}
    for model, method in (("code LM", "code LM probe"), ("random-weights", "random-weights probe")):
        assert (final[model]["val"], final[model]["test"]) == (report[method]["val"], report[method]["test"])


def test_bad_arguments(corpus):
    clips, labels, tokenizer, _, splits, lm = corpus
    with pytest.raises(ValueError, match="lm models 8 codes but the tokenizer makes 16"):
        probe_baselines(tokenizer, CodeLM(classes=8, layers=1, heads=2, width=32), clips, labels, splits)
    with pytest.raises(ValueError, match="poolings"):
        probe_baselines(tokenizer, lm, clips, labels, splits, poolings=("max",))
    with pytest.raises(ValueError, match="targets"):
        probe_baselines(tokenizer, lm, clips, labels[:-1], splits)


def test_the_layer_sweep_alone_is_probe_baselines_own(corpus, baselines):
    """``probe_layers`` on the codes is the chosen LM row of ``probe_baselines`` (which calls it), and
    reads any codes a CodeLM models: here a second LM's own."""
    _, labels, _, codes, splits, lm = corpus
    row, sweep = probe_layers(lm, codes, labels, splits, name="code LM", poolings=("mean",))
    assert row["method"] == CHOSEN[0] and [(e["layer"], e["pooling"]) for e in sweep] == [(l, "mean") for l in range(lm.config.layers + 1)]
    full = {(e["layer"], e["pooling"]): e for e in baselines[1] if e["model"] == "code LM"}
    assert all((e["val"], e["test"]) == (full[(e["layer"], "mean")]["val"], full[(e["layer"], "mean")]["test"]) for e in sweep)
    with pytest.raises(ValueError, match="poolings"):
        probe_layers(lm, codes, labels, splits, name="x", poolings=())
    with pytest.raises(ValueError, match="targets"):
        probe_layers(lm, codes, labels[:-1], splits, name="x")
    with pytest.raises(ValueError, match="at least one code"):
        probe_layers(lm, [codes[0][:0], *codes[1:]], labels, splits, name="x")


def test_latents_are_what_k_means_quantises(corpus):
    clips, _, tokenizer, codes, _, _ = corpus
    latents = tokenizer.latents(tokenizer.patches(clips[0]))
    assert latents.shape == (len(codes[0]), tokenizer.config.bottleneck)
    nearest = torch.cdist(latents, tokenizer.centroids.float()).argmin(dim=1)
    assert torch.equal(nearest, codes[0])
