"""How good are code-LM representations? A linear probe against two baselines, and a sweep over the
dictionary size (Verma & Smith, 2020: 60.1% probe vs 71.3% supervised, 55.6% for SimCLR).

    rows = probe_report(lm, clip_codes, targets, splits)            # one table, three methods + chance
    rows = codes_sweep(tokenizer, clip_audio, targets, splits, codes=(16, 64, 256, 1024))
    print(format_table(rows))

clip_codes: one 1-D code sequence per clip (``CodeTokenizer.encode``); targets: (N,) class ids, or
(N, C) multi-hot for multi-label data; splits: {"train", "val", "test"} -> clip indices
(``fastwave.training.data.clip_splits``). The score is accuracy for multi-class data and mAP for multi-label
data, on the validation and test splits; the probe's L2 strength and the supervised model's stopping
step are chosen on validation, never on test.

The methods, all reading the same codes:
- **code LM probe**: logistic regression (``fastwave.codes.linear_probe``) on ``CodeLM.embed`` of the
  trained LM, frozen.
- **random-weights probe**: the same on a CodeLM of the same config with its initial random weights
  (what the architecture gives without learning).
- **supervised end to end**: the same architecture plus a linear head on the mean hidden state,
  trained with the labels (AdamW). ``fit_supervised`` also trains it on a vector per position in
  place of each code (``VectorClassifier``: the tokenizer's bottleneck before k-means, or its
  patches), which says whether the quantisation caps what a network learns from the codes.
- **chance**: the most frequent training class (multi-class only).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int_arg
from ..training.data import SPLITS, check_splits
from .linear_probe import chance_accuracy, evaluate_probe, fit_linear_probe
from ..training.metrics import headline_metric, headline_score
from ..models.code_lm import CodeLM, CodeLMConfig, code_clips, pad_clips, pool_states
from .lm_training import code_lm_metrics, train_code_lm
from ..training.loop import make_optimizer
from ..training.sample_models import seeded_rng


def probe_report(lm: CodeLM, clip_codes, targets, splits: dict, *, supervised_steps: int = 500, seed: int = 0,
                 progress: bool = False) -> list[dict]:
    """-> rows {"method", "metric", "val", "test"} for the code LM probe, the random-weights probe,
    the supervised model and (multi-class) chance; see the module docstring. With multi-class
    targets each row also holds "test_predictions": the class it gives each test clip, in the order
    of ``splits["test"]`` (for intervals over test items; ``format_table`` leaves it out)."""
    clips = code_clips(clip_codes, lm.config.classes, "clip_codes")
    targets, multi_label = _check_targets(targets, len(clips))
    splits = check_splits(splits, len(clips))
    metric = headline_metric(multi_label)
    device = next(lm.parameters()).device
    random_lm = random_weights_like(lm, seed)
    rows = []
    for method, model in (("code LM probe", lm), ("random-weights probe", random_lm)):
        val, test, scores = _probe(model.embed(clips), targets, splits, multi_label)
        rows.append(_row(method, metric, val, test, scores, multi_label))
    rows.append(supervised_row(lm.config, clips, targets, splits, steps=supervised_steps, seed=seed, device=device,
                               progress=progress))
    if not multi_label:
        train_y = targets[splits["train"]]
        majority = torch.zeros(len(splits["test"]), int(targets.max()) + 1)
        majority[:, int(np.bincount(train_y).argmax())] = 1.0  # the lowest id on ties, as chance_accuracy
        rows.append(_row("chance (most frequent class)", metric, chance_accuracy(train_y, targets[splits["val"]]),
                         chance_accuracy(train_y, targets[splits["test"]]), majority, multi_label))
    return rows


def supervised_row(config: CodeLMConfig, clips, targets, splits: dict, *, method: str = "supervised end to end",
                   **kwargs) -> dict:
    """``fit_supervised`` (keyword arguments pass through) -> its row as ``probe_report``'s, named
    ``method``: a longer budget, or vectors in place of codes, is a row of its own beside the report's."""
    clips, _ = classifier_inputs(clips, config)
    targets, multi_label = _check_targets(targets, len(clips))
    splits = check_splits(splits, len(clips))
    model, val = fit_supervised(config, clips, targets, splits, **kwargs)
    scores = _scores(model, clips, splits["test"])
    return _row(method, headline_metric(multi_label), val, headline_score(scores, targets[splits["test"]], multi_label),
                scores, multi_label)


def random_weights_like(lm: CodeLM, seed: int) -> CodeLM:
    """A CodeLM of ``lm``'s config with its initial weights from ``seed``, on ``lm``'s device: what the
    architecture gives without learning (the same network for every caller with that seed)."""
    with seeded_rng(seed, torch.device("cpu")):
        return CodeLM(lm.config).to(next(lm.parameters()).device)


def _row(method: str, metric: str, val: float, test: float, test_scores: torch.Tensor, multi_label: bool) -> dict:
    row = {"method": method, "metric": metric, "val": val, "test": test}
    if not multi_label:
        row["test_predictions"] = test_scores.argmax(dim=1).tolist()
    return row


def codes_sweep(tokenizer, clip_audio, targets, splits: dict, *, codes=(16, 64, 256, 1024), lm_steps: int = 1000,
                lm_lr: float = 3e-4, lm_config: dict | None = None, seed: int = 0,
                progress: bool = False) -> list[dict]:
    """For each dictionary size K: refit the tokenizer's k-means on the training clips
    (``with_codes``; the autoencoder is kept), encode every clip, train a CodeLM (``lm_config``
    overrides its defaults) for ``lm_steps`` at peak rate ``lm_lr`` on the training clips, then
    report the next-code perplexity and top-1 on the test clips and the probe's score. The LMs train
    on the tokenizer's device; each clip is read once.
    clip_audio: one clip per item as ``CodeTokenizer.features_of`` takes (arrays or paths).
    -> rows {"codes", "perplexity", "top1", "metric", "val", "test"}."""
    clip_audio = list(clip_audio)
    targets, multi_label = _check_targets(targets, len(clip_audio))
    splits = check_splits(splits, len(clip_audio))
    device = tokenizer.centroids.device
    # Each clip is read and put through the STFT once; every K reuses the patches.
    patches = [tokenizer.clip_patches(item, index) for index, item in enumerate(clip_audio)]
    train_patches = torch.cat([patches[i] for i in splits["train"]])
    rows = []
    for k in codes:
        tok = tokenizer.with_codes(k, patches=train_patches, seed=seed)
        clips = [tok.encode_patches(p) for p in patches]
        with seeded_rng(seed, torch.device("cpu")):
            lm = CodeLM(**{**(lm_config or {}), "classes": k}).to(device)
        train_code_lm(lm, [clips[i] for i in splits["train"]], steps=lm_steps, lr=lm_lr, seed=seed,
                      progress=progress)
        heldout = code_lm_metrics(lm, [clips[i] for i in splits["test"] if len(clips[i]) >= 2])
        val, test, _ = _probe(lm.embed(clips), targets, splits, multi_label)
        rows.append({"codes": k, "perplexity": heldout["perplexity"], "top1": heldout["top1"],
                     "metric": headline_metric(multi_label), "val": val, "test": test})
    return rows


class CodeClassifier(nn.Module):
    """A CodeLM's blocks with a linear head on the mean final hidden state: (B, T) codes -> (B, C)."""

    def __init__(self, config: CodeLMConfig, num_classes: int):
        super().__init__()
        self.lm = CodeLM(config)
        self.classify = nn.Linear(config.width, num_classes)

    def forward(self, codes, lengths=None):
        return self.classify(self.lm.pooled(codes, lengths))


class VectorClassifier(nn.Module):
    """``CodeClassifier``'s network reading a vector per position instead of a code: (B, T, D) float
    vectors -> (B, C). The vectors are standardised with fixed per-dimension statistics (``mean``,
    ``std``: (D,), the training clips'), then a linear map to the width takes the code embedding's
    place; the blocks, pooling and head are the same. (The inner CodeLM's embedding and next-code
    head stay unused.)"""

    def __init__(self, config: CodeLMConfig, features: int, num_classes: int, mean=None, std=None):
        super().__init__()
        self.lm = CodeLM(config)
        self.register_buffer("mean", torch.zeros(features) if mean is None else torch.as_tensor(mean).float())
        std = torch.ones(features) if std is None else torch.as_tensor(std).float()
        # A dimension (nearly) constant in training would blow up wherever it differs later: floor it
        # at a thousandth of the typical spread.
        self.register_buffer("std", std.clamp_min(max(1e-6, 1e-3 * float(std.median()))))
        self.project = nn.Linear(features, config.width)
        # Standardised inputs times N(0, 0.02^2 / D) weights start the residual stream at the scale of
        # the GPT-initialised code embeddings (std 0.02), so both networks start alike.
        nn.init.normal_(self.project.weight, std=0.02 / math.sqrt(features))
        nn.init.zeros_(self.project.bias)
        self.classify = nn.Linear(config.width, num_classes)

    def forward(self, vectors, lengths=None):
        x = self.project((vectors - self.mean) / self.std)
        return self.classify(pool_states(self.lm.hidden_from(x), lengths))


def classifier_inputs(clips, config: CodeLMConfig) -> tuple[list[torch.Tensor], int | None]:
    """What ``fit_supervised`` reads -> (clips as a list of CPU tensors, D for (T_i, D) float vector
    clips, torch or numpy, or None for codes). The first clip decides which."""
    if not (isinstance(clips, (list, tuple)) and clips and _is_float_array(clips[0])):
        return code_clips(clips, config.classes, "clips"), None
    features = clips[0].shape[-1] if clips[0].ndim == 2 else 0
    vectors = []
    for i, clip in enumerate(clips):
        if not _is_float_array(clip) or clip.ndim != 2 or clip.shape[0] < 1 or features < 1 or clip.shape[1] != features:
            raise ValueError(f"vector clips must each be float (T_i >= 1, D >= 1) with one D (clip 0: "
                             f"{tuple(clips[0].shape)}), got clip {i}: {getattr(clip, 'dtype', type(clip))} "
                             f"of shape {tuple(getattr(clip, 'shape', ()))}")
        clip = torch.as_tensor(clip).detach().float().cpu()
        if not bool(torch.isfinite(clip).all()):
            raise ValueError(f"vector clip {i} holds NaN or inf")
        vectors.append(clip)
    return vectors, features


def _is_float_array(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.is_floating_point()
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def train_supervised(config: CodeLMConfig, clips, targets, splits: dict, **kwargs) -> tuple[float, float]:
    """``fit_supervised`` (its keyword arguments pass through), then the model scored on the test
    clips. -> (val, test)."""
    row = supervised_row(config, clips, targets, splits, **kwargs)
    return row["val"], row["test"]


def fit_supervised(config: CodeLMConfig, clips, targets, splits: dict, *, steps: int = 500,
                   batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.01, eval_every: int = 50,
                   seed: int = 0, device=None, progress: bool = False) -> tuple[nn.Module, float]:
    """Train ``CodeClassifier(config)`` on ``device`` (default CPU) with the labels of the training
    clips (cross-entropy, or binary cross-entropy for multi-hot targets), keeping the weights of the
    best validation score (checked every ``eval_every`` steps). clips: codes as ``code_clips`` takes
    them, or a list of (T_i, D) float vector sequences, which train a ``VectorClassifier`` instead
    (standardised with the training clips' statistics). -> (the model, in eval mode, with those
    weights; its validation score)."""
    from tqdm.auto import tqdm

    clips, features = classifier_inputs(clips, config)
    targets, multi_label = _check_targets(targets, len(clips))
    splits = check_splits(splits, len(clips))
    steps, batch_size = check_int_arg(steps, "steps"), check_int_arg(batch_size, "batch_size")
    eval_every = check_int_arg(eval_every, "eval_every")
    device = torch.device(device or "cpu")
    num_classes = targets.shape[1] if multi_label else int(targets.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    with seeded_rng(seed, torch.device("cpu")):
        if features is None:
            model = CodeClassifier(config, num_classes)
        else:
            train_vectors = torch.cat([clips[i] for i in splits["train"]])
            if len(train_vectors) < 2:
                raise ValueError("vector clips need at least 2 training positions to standardise them")
            model = VectorClassifier(config, features, num_classes, train_vectors.mean(0), train_vectors.std(0))
        model = model.to(device)
        optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay)
        train = torch.as_tensor(splits["train"])
        best, best_state = -math.inf, None
        for step in tqdm(range(steps), desc="supervised", disable=not progress):
            model.train()
            batch = train[torch.randint(len(train), (min(batch_size, len(train)),), generator=generator)].tolist()
            rows, lengths = pad_clips([clips[i] for i in batch])
            logits = model(rows.to(device), lengths)
            target = torch.as_tensor(targets[batch], device=device)
            loss = (F.binary_cross_entropy_with_logits(logits, target.float()) if multi_label
                    else F.cross_entropy(logits, target.long()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                score = headline_score(_scores(model, clips, splits["val"]), targets[splits["val"]], multi_label)
                if score > best:
                    best, best_state = score, copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
    return model.eval(), best


def format_table(rows: list[dict]) -> str:
    """Rows of ``probe_report`` / ``codes_sweep`` as a markdown table."""
    keys = [key for key, value in rows[0].items() if not isinstance(value, list)]
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


# ---- helpers -------------------------------------------------------------------------------------

def _probe(embeddings, targets, splits, multi_label) -> tuple[float, float, torch.Tensor]:
    """A linear probe on the clips' embeddings -> (val score, test score, test scores (N_test, C))."""
    x = {name: embeddings[splits[name]] for name in SPLITS}
    y = {name: targets[splits[name]] for name in SPLITS}
    probe = fit_linear_probe(x["train"], y["train"], x["val"], y["val"], multi_label=multi_label,
                             num_classes=targets.shape[1] if multi_label else int(targets.max()) + 1)
    key = headline_metric(multi_label)
    return (evaluate_probe(probe, x["val"], y["val"])[key], evaluate_probe(probe, x["test"], y["test"])[key],
            probe.scores(x["test"]))


@torch.no_grad()
def _scores(model, clips, indices, batch_size: int = 64) -> torch.Tensor:
    model.eval()
    out = []
    device = next(model.parameters()).device
    for first in range(0, len(indices), batch_size):
        rows, lengths = pad_clips([clips[i] for i in indices[first:first + batch_size]])
        out.append(model(rows.to(device), lengths).float().cpu())
    return torch.cat(out)


def _check_targets(targets, n: int) -> tuple[np.ndarray, bool]:
    targets = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if targets.ndim not in (1, 2) or targets.shape[0] != n:
        raise ValueError(f"targets must be (N,) class ids or (N, C) multi-hot with N = {n} clips, "
                         f"got shape {targets.shape}")
    if targets.ndim == 1 and (targets.dtype.kind not in "iu" or targets.min() < 0):
        raise ValueError(f"targets (N,) must be class ids >= 0 (ints), got dtype {targets.dtype}")
    return targets, targets.ndim == 2
