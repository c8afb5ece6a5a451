"""The baselines that explain a code-LM probe: where does its score come from, and what caps it?

    rows, sweep = probe_baselines(tokenizer, lm, clip_audio, targets, splits, seed=0)
    row, sweep = probe_layers(lm, codes, targets, splits, name="code LM")   # the layer sweep alone

clip_audio: one clip per item as ``CodeTokenizer.clip_patches`` takes it (arrays or paths); targets
and splits as ``probe_report``. Every method is the same linear probe (``fit_linear_probe``, L2
chosen on validation) on a different vector per clip:

- **bag-of-codes probe**: the clip's code histogram (K numbers, summing to 1). What the codes say
  without their order: a code LM that learned something about sequences should beat it.
- **autoencoder bottleneck probe**: the mean and std over the clip of the tokenizer's bottleneck
  vectors, before k-means (2 x bottleneck numbers). What the quantisation into K codes throws away:
  when it beats every method that reads codes, the tokenizer is the cap.
- **code LM probe, layer and pooling chosen on val** and **random-weights probe, layer and pooling
  chosen on val**: ``CodeLM.embed(layer=, pooling=)`` for every layer (0: the embeddings, to the
  final normed states) and every pooling (``POOLINGS``); the pair with the best validation score is
  scored on test. The LM's final layer serves next-code prediction, not the probe's task; a sweep
  gives both the trained and the random network the same chance.

-> (rows as ``probe_report``'s: {"method", "metric", "val", "test"} and, multi-class,
"test_predictions"; the chosen rows add "layer" and "pooling"), and the sweep: one
{"model", "layer", "pooling", "val", "test"} per pair.
"""
from __future__ import annotations

import torch

from ..models.code_lm import POOLINGS
from ..training.data import check_splits
from ..training.metrics import headline_metric
from .probing import _check_targets, _probe, _row, random_weights_like


def probe_baselines(tokenizer, lm, clip_audio, targets, splits: dict, *, seed: int = 0, poolings=POOLINGS,
                    progress: bool = False) -> tuple[list[dict], list[dict]]:
    """See the module docstring. ``lm`` must model the tokenizer's codes; the random-weights network
    is ``random_weights_like(lm, seed)``, the one ``probe_report`` probes."""
    from tqdm.auto import tqdm

    clip_audio = list(clip_audio)
    targets, multi_label = _check_targets(targets, len(clip_audio))
    splits = check_splits(splits, len(clip_audio))
    if lm.config.classes != tokenizer.config.codes:
        raise ValueError(f"lm models {lm.config.classes} codes but the tokenizer makes {tokenizer.config.codes}")
    unknown = [p for p in poolings if p not in POOLINGS]
    if not poolings or unknown:
        raise ValueError(f"poolings must be a non-empty subset of {POOLINGS}, got {poolings!r}")
    metric = headline_metric(multi_label)
    patches = [tokenizer.clip_patches(item, index)
               for index, item in enumerate(tqdm(clip_audio, desc="patches", unit="clip", disable=not progress))]
    codes = [tokenizer.encode_patches(p) for p in patches]
    if any(len(clip) == 0 for clip in codes):
        raise ValueError(f"a clip is shorter than one patch ({tokenizer.config.patch_samples} samples)")

    rows = []
    histograms = torch.stack([torch.bincount(c, minlength=tokenizer.config.codes).float() / len(c) for c in codes])
    latents = [tokenizer.latents(p) for p in patches]
    bottleneck = torch.stack([torch.cat([z.mean(0), z.std(0, unbiased=False)]) for z in latents])
    for method, features in (("bag-of-codes probe", histograms), ("autoencoder bottleneck probe", bottleneck)):
        val, test, scores = _probe(features, targets, splits, multi_label)
        rows.append(_row(method, metric, val, test, scores, multi_label))

    sweep = []
    for name, model in (("code LM", lm), ("random-weights", random_weights_like(lm, seed))):
        row, pairs = probe_layers(model, codes, targets, splits, name=name, poolings=poolings)
        rows.append(row)
        sweep += pairs
    return rows, sweep


def probe_layers(model, codes, targets, splits: dict, *, name: str, poolings=POOLINGS) -> tuple[dict, list[dict]]:
    """The linear probe of ``model.embed(codes, layer=, pooling=)`` (a ``CodeLM``) for every layer
    (0: the embeddings, to the final normed states) and pooling; the pair with the best validation
    score is scored on test. codes: one 1-D sequence per clip; targets and splits as
    ``probe_report`` -> (its row, method "<name> probe, layer and pooling chosen on val", with
    "layer" and "pooling"; the sweep: one {"model": name, "layer", "pooling", "val", "test"} per pair)."""
    codes = list(codes)
    if any(len(clip) == 0 for clip in codes):
        raise ValueError("every clip needs at least one code (a clip shorter than one patch has none)")
    targets, multi_label = _check_targets(targets, len(codes))
    splits = check_splits(splits, len(codes))
    unknown = [p for p in poolings if p not in POOLINGS]
    if not poolings or unknown:
        raise ValueError(f"poolings must be a non-empty subset of {POOLINGS}, got {poolings!r}")
    best, sweep = None, []
    for layer in range(model.config.layers + 1):
        for pooling in poolings:
            val, test, scores = _probe(model.embed(codes, layer=layer, pooling=pooling), targets, splits, multi_label)
            sweep.append({"model": name, "layer": layer, "pooling": pooling, "val": val, "test": test})
            if best is None or val > best[0]:  # ties keep the earlier (shallower, simpler) pair
                best = (val, test, scores, layer, pooling)
    val, test, scores, layer, pooling = best
    row = _row(f"{name} probe, layer and pooling chosen on val", headline_metric(multi_label), val, test, scores,
               multi_label)
    return {**row, "layer": layer, "pooling": pooling}, sweep
