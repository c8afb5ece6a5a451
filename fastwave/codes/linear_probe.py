"""Logistic-regression probe on frozen embeddings: the standard evaluation of self-supervised audio
representations.

    probe = fit_linear_probe(train_x, train_y, val_x, val_y)            # features (N, D)
    evaluate_probe(probe, test_x, test_y)["accuracy"], chance_accuracy(train_y, test_y)

Features are standardised with the training split's mean / std. For each L2 strength of the grid a
full-batch L-BFGS fit (float64, from zeros) minimises the mean loss over clips + wd * ||W||^2 (bias
free); the strength with the best validation accuracy (multi-class) or mAP (multi-label) wins, ties
going to the larger strength (the simpler model). The multi-label loss sums the per-class BCE and
averages over clips, so every class is its own logistic regression and a strength means the same
whatever the number of classes. Deterministic; nothing passed in is modified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import as_tensor, check_int_arg
from ..training.metrics import accuracy, headline_score, multilabel_metrics

STD_FLOOR = 1e-6  # a constant feature stays 0 after standardisation instead of dividing by 0


def _features(x, name: str, dim: int | None = None) -> torch.Tensor:
    """(N, D) finite floating-point features -> float64 (a new tensor or one never written to)."""
    x = as_tensor(x, name).detach()
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must hold floating-point features, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty (N, D) features, got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has D = {x.shape[1]} features but the training split has {dim}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return x.to(device="cpu", dtype=torch.float64)


def _labels(y, name: str, n: int | None, multi_label: bool, classes: int | None) -> torch.Tensor:
    """Multi-class ids (n,) in [0, classes) -> int64, or multi-hot (n, classes) -> float64.
    n=None: any length; classes=None: any number of classes."""
    y = as_tensor(y, name).detach().cpu()
    rows = "N" if n is None else n
    if multi_label:
        if y.dim() != 2 or y.shape[1] == 0 or (n is not None and y.shape[0] != n) or (classes is not None and y.shape[1] != classes):
            want = f"({rows}, {classes if classes is not None else 'C'})"
            raise ValueError(f"{name} must be {want} multi-hot targets, got shape {tuple(y.shape)}")
        if y.dtype.is_complex or not bool(((y == 0) | (y == 1)).all()):
            raise ValueError(f"{name} must hold only 0 and 1 (multi-hot)")
        return y.to(torch.float64)
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    if y.dim() != 1 or (n is not None and y.shape[0] != n):
        raise ValueError(f"{name} must be ({rows},) class ids to match the features, got shape {tuple(y.shape)}")
    if y.numel() == 0:
        raise ValueError(f"{name} is empty")
    low, high = int(y.min()), int(y.max())
    if low < 0 or (classes is not None and high >= classes):
        bound = f"[0, {classes})" if classes is not None else "[0, C)"
        raise ValueError(f"{name} must lie in {bound}, got values in [{low}, {high}]")
    return y.long()


@dataclass
class LinearProbe:
    weight: torch.Tensor  # (C, D) float64, acting on standardised features
    bias: torch.Tensor  # (C,) float64
    mean: torch.Tensor  # (D,) training-split feature mean
    std: torch.Tensor  # (D,) training-split feature std (floored at STD_FLOOR)
    weight_decay: float  # the L2 strength chosen on validation
    multi_label: bool

    def scores(self, features) -> torch.Tensor:
        """Logits (N, C) float64 of raw (N, D) features: softmax (multi-class) or sigmoid inputs."""
        x = _features(features, "features", self.weight.shape[1])
        return ((x - self.mean) / self.std) @ self.weight.T + self.bias


def _fit_one(x: torch.Tensor, y: torch.Tensor, classes: int, weight_decay: float,
             multi_label: bool, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = x @ weight.T + bias
        if multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / x.shape[0]
        else:
            loss = F.cross_entropy(logits, y)
        loss = loss + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # the caller may be inside torch.no_grad()
        optimizer.step(closure)  # one step runs up to max_iter L-BFGS iterations
    return weight.detach(), bias.detach()


def fit_linear_probe(train_x, train_y, val_x, val_y, *, multi_label: bool = False,
                     weight_decays=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), max_iter: int = 200,
                     num_classes: int | None = None) -> LinearProbe:
    """Fit a probe per L2 strength on (train_x (N, D), train_y) and keep the best on (val_x, val_y).

    train_y / val_y: (N,) int class ids in [0, C) or, with multi_label, (N, C) multi-hot targets.
    num_classes: C; default max train label + 1 (multi-class) or train_y.shape[1] (multi-label).
    """
    max_iter = check_int_arg(max_iter, "max_iter")
    if num_classes is not None:
        num_classes = check_int_arg(num_classes, "num_classes", minimum=2 if not multi_label else 1)
    try:
        decays = [float(d) for d in weight_decays]
    except (TypeError, ValueError):
        decays = None
    if not decays or not all(math.isfinite(d) and d > 0 for d in decays):
        raise ValueError(f"weight_decays must be a non-empty sequence of positive finite floats, "
                         f"got {weight_decays!r}")

    train_x = _features(train_x, "train_x")
    val_x = _features(val_x, "val_x", train_x.shape[1])
    train_y = _labels(train_y, "train_y", train_x.shape[0], multi_label, num_classes)
    if multi_label:
        classes = train_y.shape[1]
    else:
        classes = num_classes if num_classes is not None else int(train_y.max()) + 1
        if int(train_y.unique().numel()) < 2:
            raise ValueError("train_y must hold at least 2 distinct classes for a multi-class probe")
    val_y = _labels(val_y, "val_y", val_x.shape[0], multi_label, classes)
    if multi_label and not bool(val_y.any()):
        raise ValueError("val_y has no positive in any class: validation mAP is undefined")

    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False).clamp_min(STD_FLOOR)
    train_z, val_z = (train_x - mean) / std, (val_x - mean) / std

    best = None
    for decay in sorted(decays):  # ascending with >=: a tie goes to the larger decay
        weight, bias = _fit_one(train_z, train_y, classes, decay, multi_label, max_iter)
        val_logits = val_z @ weight.T + bias
        score = headline_score(val_logits, val_y, multi_label)
        if best is None or score >= best[0]:
            best = (score, decay, weight, bias)
    _, decay, weight, bias = best
    return LinearProbe(weight=weight, bias=bias, mean=mean, std=std, weight_decay=decay,
                       multi_label=multi_label)


def evaluate_probe(probe: LinearProbe, x, y) -> dict:
    """{"accuracy"} (multi-class, y (N,) ids) or {"mAP", "micro_ap", "d_prime"} (y (N, C) multi-hot)."""
    logits = probe.scores(x)
    y = _labels(y, "y", logits.shape[0], probe.multi_label, logits.shape[1])
    if not probe.multi_label:
        return {"accuracy": accuracy(logits, y)}
    m = multilabel_metrics(logits, y)
    return {"mAP": m.mAP, "micro_ap": m.micro_ap, "d_prime": m.d_prime}


def chance_accuracy(train_y, test_y) -> float:
    """Accuracy on test_y (N,) of always predicting train_y's most frequent class (lowest id on ties)."""
    train_y = _labels(train_y, "train_y", None, False, None)
    test_y = _labels(test_y, "test_y", None, False, None)
    majority = int(torch.bincount(train_y).argmax())  # argmax returns the first maximum
    return float((test_y == majority).double().mean())
