"""Classification metrics shared by the library (linear probes, audio taggers): numpy or torch in,
python floats out. Nothing passed in is modified.

* ``accuracy``: argmax of (N, C) scores equals the (N,) class id; ties go to the lowest index.
* ``average_precision``: the area under the step-wise precision-recall curve with one threshold per
  distinct score, as sklearn's ``average_precision_score``: sum over thresholds of
  (recall gain) x (precision there). Tied scores form one block, so a tie between a positive and a
  negative costs the positive half a rank, not a coin flip. Without ties this is the mean over the
  positives of the precision at each positive's rank.
* ``roc_auc``: the Mann-Whitney statistic, P(score of a positive > score of a negative), a tie
  counting 1/2 (average ranks).
* ``headline_score``: accuracy for multi-class data, mAP for multi-label data (one number to select
  and report by).
* ``multilabel_metrics`` (FSD50K / AudioSet convention): mAP is the macro mean of per-class AP over
  the classes with at least one positive; classes without positives are skipped and counted.
  micro AP pools every (clip, class) pair. d' = sqrt(2) * Phi^-1(macro AUC), the AUC averaged over
  the classes holding both positives and negatives and clamped into [1e-6, 1 - 1e-6] so that
  perfect scores give a finite d'; NaN when no class has both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

_AUC_CLAMP = 1e-6


def _as_array(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()  # numpy has no bfloat16
        return value.numpy()
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(value)
    raise TypeError(f"{name} must be a numpy array or torch.Tensor, got {type(value).__name__}")


def _scores(value, name: str, rank: int) -> np.ndarray:
    """Real, finite, non-empty scores of the given rank -> float64 (a new array)."""
    array = _as_array(value, name)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != rank:
        shape = "(N,)" if rank == 1 else "(N, C)"
        raise ValueError(f"{name} must be {shape}, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return array


def _binary(value, name: str, shape: tuple) -> np.ndarray:
    """0/1 (or bool) targets of exactly ``shape`` -> bool."""
    array = _as_array(value, name)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold 0/1 or bool values, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape} to match the scores, got {array.shape}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1 (multi-hot / binary), got other values")
    return array.astype(bool)


def _class_ids(value, name: str, n: int, classes: int) -> np.ndarray:
    """Integer class ids (n,) in [0, classes) -> int64."""
    array = _as_array(value, name)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the scores, got {array.shape}")
    if array.min() < 0 or array.max() >= classes:
        raise ValueError(f"{name} must lie in [0, {classes}), got values in [{array.min()}, {array.max()}]")
    return array.astype(np.int64)


def _ap(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of validated 1-D float scores / bool positives with at least one positive."""
    order = np.argsort(-scores, kind="stable")
    scores, positives = scores[order], positives[order]
    # The last index of each block of tied scores: one threshold per distinct score.
    ends = np.append(np.flatnonzero(np.diff(scores)), scores.size - 1)
    tp = np.cumsum(positives)[ends]
    precision = tp / (ends + 1)
    recall_gain = np.diff(tp, prepend=0) / tp[-1]
    return float(np.sum(recall_gain * precision))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (ascending), tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_values) != 0])
    ends = np.r_[starts[1:], values.size]  # exclusive
    block_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(block_rank, ends - starts)
    return ranks


def _auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Mann-Whitney AUC of validated inputs holding both positives and negatives."""
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    rank_sum = _average_ranks(scores)[positives].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(logits_or_scores, targets) -> float:
    """Fraction of rows of (N, C) scores whose argmax (lowest index on ties) equals the (N,) id."""
    scores = _scores(logits_or_scores, "logits_or_scores", rank=2)
    ids = _class_ids(targets, "targets", scores.shape[0], scores.shape[1])
    return float(np.mean(np.argmax(scores, axis=1) == ids))


def average_precision(scores, positives) -> float:
    """AP of (N,) scores against (N,) binary labels (ties as sklearn); ValueError without positives."""
    scores = _scores(scores, "scores", rank=1)
    positives = _binary(positives, "positives", scores.shape)
    if not positives.any():
        raise ValueError("positives has no positive example: average precision is undefined")
    return _ap(scores, positives)


def roc_auc(scores, positives) -> float:
    """ROC AUC of (N,) scores against (N,) binary labels, ties counting 1/2; needs both labels."""
    scores = _scores(scores, "scores", rank=1)
    positives = _binary(positives, "positives", scores.shape)
    if positives.all() or not positives.any():
        raise ValueError("positives must hold both positive and negative examples for ROC AUC")
    return _auc(scores, positives)


@dataclass
class MultiLabelMetrics:
    mAP: float  # macro mean of per-class AP over the classes_scored classes
    micro_ap: float  # AP of every (clip, class) pair pooled
    d_prime: float  # sqrt(2) * Phi^-1(macro AUC); NaN when no class has positives and negatives
    classes_scored: int  # classes with >= 1 positive (those in mAP)
    classes_skipped: int  # classes with no positive


def multilabel_metrics(scores, targets) -> MultiLabelMetrics:
    """mAP, micro AP and d' of (N, C) scores against (N, C) multi-hot targets (module docstring)."""
    scores = _scores(scores, "scores", rank=2)
    targets = _binary(targets, "targets", scores.shape)
    n_pos = targets.sum(axis=0)
    scored = np.flatnonzero(n_pos > 0)
    if scored.size == 0:
        raise ValueError("targets has no positive in any class: mAP is undefined")
    per_class_ap = [_ap(scores[:, c], targets[:, c]) for c in scored]
    aucs = [_auc(scores[:, c], targets[:, c]) for c in scored if n_pos[c] < targets.shape[0]]
    if aucs:
        auc = min(max(float(np.mean(aucs)), _AUC_CLAMP), 1.0 - _AUC_CLAMP)
        d_prime = math.sqrt(2.0) * NormalDist().inv_cdf(auc)
    else:
        d_prime = math.nan
    return MultiLabelMetrics(mAP=float(np.mean(per_class_ap)),
                             micro_ap=_ap(scores.ravel(), targets.ravel()),
                             d_prime=d_prime, classes_scored=int(scored.size),
                             classes_skipped=int(targets.shape[1] - scored.size))


def headline_score(scores, targets, multi_label: bool) -> float:
    """The one number a model is selected and reported by: ``accuracy`` of (N, C) scores against (N,)
    class ids, or the ``multilabel_metrics`` mAP against (N, C) multi-hot targets."""
    return multilabel_metrics(scores, targets).mAP if multi_label else accuracy(scores, targets)


def headline_metric(multi_label: bool) -> str:
    """The name of ``headline_score``'s number."""
    return "mAP" if multi_label else "accuracy"
