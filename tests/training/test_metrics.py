import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from fastwave.training.metrics import (MultiLabelMetrics, accuracy, average_precision, multilabel_metrics,
                              roc_auc)


def _reference_ap(scores, positives):
    """Step-wise PR area, one threshold per distinct score, written as plainly as possible."""
    scores, positives = np.asarray(scores, float), np.asarray(positives, bool)
    ap, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        predicted = scores >= threshold
        tp = (predicted & positives).sum()
        recall = tp / positives.sum()
        ap += (recall - previous_recall) * tp / predicted.sum()
        previous_recall = recall
    return ap


# --- average precision -------------------------------------------------------------------------

def test_ap_by_hand():
    # Positives at ranks 1 and 3: precisions 1/1 and 2/3 -> AP = (1 + 2/3) / 2.
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # Perfect ranking -> 1; the only positive last of 4 -> 1/4.
    assert average_precision([0.9, 0.8, 0.7], [1, 1, 0]) == pytest.approx(1.0)
    assert average_precision([0.9, 0.8, 0.7, 0.6], [0, 0, 0, 1]) == pytest.approx(0.25)


def test_ap_ties_counted_as_one_block():
    # P = 3. Threshold 0.9: 1 predicted, tp 1 -> precision 1, recall gain 1/3.
    # Threshold 0.5 (the tied block of 3, 2 positives): 4 predicted, tp 3 -> precision 3/4, gain 2/3.
    # AP = 1/3 * 1 + 2/3 * 3/4 = 5/6 (ordering the tie pessimistically would give 29/36, optimistically 1).
    scores = [0.9, 0.5, 0.5, 0.5, 0.2]
    positives = [1, 1, 0, 1, 0]
    assert average_precision(scores, positives) == pytest.approx(5 / 6)
    # The order of tied items in the input does not matter.
    assert average_precision([0.9, 0.5, 0.5, 0.5, 0.2], [1, 0, 1, 1, 0]) == pytest.approx(5 / 6)
    # All tied: one block, precision = prevalence.
    assert average_precision([0.5, 0.5, 0.5], [1, 1, 0]) == pytest.approx(2 / 3)


def test_ap_matches_reference_on_random_data_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 6, size=40) / 5.0  # many ties
        positives = rng.random(40) < 0.3
        positives[0] = True
        assert average_precision(scores, positives) == pytest.approx(_reference_ap(scores, positives))


# --- ROC AUC -----------------------------------------------------------------------------------

def test_auc_by_hand():
    # Pairs (pos, neg): (.9,.8) (.9,.6) (.7,.6) correct, (.7,.8) wrong -> 3/4.
    assert roc_auc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    # Ties: (.5 vs .5) earns 1/2, (.5 vs .2), (.8 vs .5), (.8 vs .2) earn 1 -> 3.5 / 4.
    assert roc_auc([0.5, 0.5, 0.2, 0.8], [1, 0, 0, 1]) == pytest.approx(0.875)
    assert roc_auc([0.3, 0.3, 0.3], [1, 0, 1]) == pytest.approx(0.5)
    assert roc_auc([0.1, 0.9], [1, 0]) == pytest.approx(0.0)


def test_auc_matches_mann_whitney():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 10, size=200).astype(float)
    positives = rng.random(200) < 0.4
    u = stats.mannwhitneyu(scores[positives], scores[~positives]).statistic
    assert roc_auc(scores, positives) == pytest.approx(u / (positives.sum() * (~positives).sum()))


# --- multi-label -------------------------------------------------------------------------------

def _multilabel_case():
    scores = np.array([[0.9, 0.1, 0.05],
                       [0.8, 0.4, 0.5],
                       [0.7, 0.3, 0.35],
                       [0.6, 0.2, 0.15]])
    targets = np.array([[1, 0, 0],
                        [0, 1, 0],
                        [1, 0, 0],
                        [0, 0, 0]])  # class 2 has no positive
    return scores, targets


def test_multilabel_by_hand():
    scores, targets = _multilabel_case()
    m = multilabel_metrics(scores, targets)
    assert isinstance(m, MultiLabelMetrics)
    assert (m.classes_scored, m.classes_skipped) == (2, 1)
    # Class 0: AP 5/6 (test_ap_by_hand); class 1: its positive ranks first -> 1; class 2 skipped.
    assert m.mAP == pytest.approx((5 / 6 + 1) / 2)
    # Pooled, descending: .9(+) .8 .7(+) .6 .5 .4(+) .35 .3 .2 .15 .1 .05: positives at ranks 1, 3, 6
    # -> (1/1 + 2/3 + 3/6) / 3 = 13/18.
    assert m.micro_ap == pytest.approx(13 / 18)
    # AUC: class 0 = 3/4, class 1 = 1 (.4 above .1 .3 .2) -> macro 7/8.
    assert m.d_prime == pytest.approx(math.sqrt(2) * NormalDist().inv_cdf(0.875))
    assert m.d_prime == pytest.approx(1.6268, abs=1e-4)


def test_d_prime_chance_perfect_and_undefined():
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    assert multilabel_metrics(np.zeros((4, 2)), targets).d_prime == pytest.approx(0.0, abs=1e-12)
    perfect = multilabel_metrics(targets * 1.0, targets)
    assert perfect.mAP == 1.0 and math.isfinite(perfect.d_prime) and perfect.d_prime > 6
    # Every scored class is positive on every clip: AUC (and d') undefined, AP still 1.
    all_positive = multilabel_metrics(np.ones((3, 1)), np.ones((3, 1)))
    assert all_positive.mAP == 1.0 and math.isnan(all_positive.d_prime)


def test_torch_inputs_and_inputs_unchanged():
    scores, targets = _multilabel_case()
    scores_t, targets_t = torch.tensor(scores, requires_grad=True), torch.tensor(targets, dtype=torch.bool)
    copy = scores.copy()
    assert multilabel_metrics(scores_t, targets_t) == multilabel_metrics(scores, targets)
    assert np.array_equal(scores, copy)
    assert average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]).bfloat16(), torch.tensor([1, 0, 1, 0])) \
        == pytest.approx(5 / 6)


# --- accuracy ----------------------------------------------------------------------------------

def test_accuracy_ties_pick_lowest_index():
    logits = [[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.0, 0.0, 3.0]]
    assert accuracy(logits, [0, 1, 2]) == 1.0  # row 0 -> 0, row 1 -> 1
    assert accuracy(logits, [1, 2, 2]) == pytest.approx(1 / 3)
    assert accuracy(torch.tensor(logits), torch.tensor([0, 2, 0])) == pytest.approx(1 / 3)


# --- errors ------------------------------------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match="positives must have shape"):
        average_precision([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="targets must have shape"):
        multilabel_metrics(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"scores must be \(N, C\)"):
        multilabel_metrics(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        average_precision([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="non-finite"):
        accuracy([[0.0, float("inf")]], [0])
    with pytest.raises(ValueError, match="only 0 and 1"):
        roc_auc([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="no positive"):
        average_precision([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="no positive"):
        multilabel_metrics(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        accuracy(np.zeros((2, 3)), [0, 3])
    with pytest.raises(TypeError, match="integer class ids"):
        accuracy(np.zeros((2, 3)), [0.0, 1.0])
    with pytest.raises(ValueError, match="empty"):
        average_precision([], [])
    with pytest.raises(TypeError, match="numpy array or torch.Tensor"):
        average_precision("abc", [1])


def test_matches_sklearn_on_random_data():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    scores = np.round(rng.random((300, 5)), 1)  # rounded: ties
    targets = rng.random((300, 5)) < 0.2
    for c in range(5):
        assert average_precision(scores[:, c], targets[:, c]) == pytest.approx(
            sk.average_precision_score(targets[:, c], scores[:, c]))
        assert roc_auc(scores[:, c], targets[:, c]) == pytest.approx(sk.roc_auc_score(targets[:, c], scores[:, c]))
    assert multilabel_metrics(scores, targets).mAP == pytest.approx(
        sk.average_precision_score(targets, scores, average="macro"))
    assert multilabel_metrics(scores, targets).micro_ap == pytest.approx(
        sk.average_precision_score(targets, scores, average="micro"))
