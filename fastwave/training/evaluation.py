"""Teacher-forced next-sample evaluation shared by every sample model (WaveNet, sample Transformers).

A sample model maps tokens (B, T) int64 in [0, classes) to logits (B, classes, T), where
``logits[:, :, t]`` predicts token t + 1 from tokens 0..t. Evaluating a stream of T tokens scores its
T - 1 next-sample targets: top-1 / top-5 accuracy and the negative log-likelihood (nats, and bits
per sample = nats / ln 2).

    metrics = evaluate_sample_model(model, tokens)          # tokens (T,), (N, T) or a list of (T_i,)
    metrics["bits_per_sample"], metrics["top1"]

``next_sample_metrics`` gives the summed counts of one batch as a ``SampleMetrics``; metrics of
several batches ``merge`` exactly (integer counts, an fp64 NLL sum), so any batching gives the same
result up to the fp64 summation order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_int_arg, check_tokens, token_streams
from .stream_cond import stream_cond

DEFAULT_SEGMENT = 4096  # model input length per evaluation window; at 16 kHz, 256 ms


@dataclass
class SampleMetrics:
    """Summed next-sample counts; ``merge`` accumulates batches, ``summary`` gives the rates."""

    positions: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    nll_nats_sum: float = 0.0

    def merge(self, other: SampleMetrics) -> SampleMetrics:
        return SampleMetrics(self.positions + other.positions, self.top1_correct + other.top1_correct,
                             self.top5_correct + other.top5_correct, self.nll_nats_sum + other.nll_nats_sum)

    __add__ = merge

    def summary(self) -> dict:
        """-> {"top1", "top5", "bits_per_sample", "nll_nats" (means per position), "positions"}."""
        if self.positions == 0:
            raise ValueError("no positions were scored: the metrics are empty")
        nll = self.nll_nats_sum / self.positions
        return {"top1": self.top1_correct / self.positions, "top5": self.top5_correct / self.positions,
                "bits_per_sample": nll / math.log(2), "nll_nats": nll, "positions": self.positions}


def next_sample_metrics(logits: torch.Tensor, targets) -> SampleMetrics:
    """Summed metrics of logits (B, A, T) against targets (B, T) int in [0, A).

    Top-k counts a target when fewer than k *other* classes have a logit >= the target's (a NaN logit
    counts as >=). Without ties this is the usual "target among the k largest logits"; with ties it
    is pessimistic and, unlike ``torch.topk``, does not depend on how ties are broken: a constant
    model scores top-1 = 0, not 1. With A <= 5 classes top-5 is therefore always correct.
    NLL is computed in fp32 per position and summed in fp64.
    """
    if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating point torch.Tensor, got {type(logits).__name__}"
                        + (f" of dtype {logits.dtype}" if isinstance(logits, torch.Tensor) else ""))
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, classes, T), got shape {tuple(logits.shape)}")
    batch, classes, length = logits.shape
    targets = check_tokens(targets, classes, "targets", allow_empty=True).to(logits.device)
    if tuple(targets.shape) != (batch, length):
        raise ValueError(f"targets must be (B, T) = {(batch, length)} to match logits {tuple(logits.shape)}, "
                         f"got {tuple(targets.shape)}")
    if targets.numel() == 0:
        return SampleMetrics()
    logits = logits.float()
    target_logit = logits.gather(1, targets.unsqueeze(1))  # (B, 1, T)
    # "not strictly below" is True for NaN on either side, so NaN never earns credit.
    others_at_or_above = (~(logits < target_logit)).sum(1) - 1  # (B, T), the target itself excluded
    nll = F.cross_entropy(logits, targets, reduction="none")
    return SampleMetrics(positions=targets.numel(), top1_correct=int((others_at_or_above < 1).sum()),
                         top5_correct=int((others_at_or_above < 5).sum()),
                         nll_nats_sum=float(nll.double().sum()))


def evaluate_sample_model(model, tokens, *, segment: int | None = None, burn_in: int = 0, batch_size: int = 8,
                          cond: dict | None = None, progress: bool = False) -> dict:
    """Teacher-forced next-sample metrics of ``model`` over every target of ``tokens``.

    model: a sample model (``model.config.classes``; forward(tokens (B, T)) -> logits (B, classes, T)).
    tokens: (T,) one stream, (N, T) streams, or a list of 1-D streams of any lengths >= 2; int tokens
      in [0, classes), numpy or torch. Every token after the first of each stream is a target.
    segment: the model's input length per window (default 4096, capped at the stream); any length
      works for every model (the sample Transformer attends over a sliding window). A window is ``segment + 1`` tokens
      (inputs and targets); windows of one stream start every ``segment - burn_in`` tokens, so they
      overlap by ``burn_in + 1`` tokens.
    burn_in: 0 <= burn_in < segment leading predictions of each window that are context only and not
      scored, except in a stream's first window (default 0: every prediction is scored, and the first
      ones of a window see a short past). Every target is scored exactly once, from at least
      ``burn_in + 1`` input tokens or the whole past. With burn_in >= receptive_field - 1 a WaveNet
      scores every target on its full receptive field (or the whole past), so the result does not
      depend on ``segment`` or ``batch_size`` (up to float rounding).
    cond: a conditioned WaveNet's {"global_cond": ids (N,) or one id, "local_cond": one (channels, F_i)
      array per stream} (fastwave.training.stream_cond); with local features, ``segment - burn_in`` must be a
      multiple of ``cond_hop`` so that every window starts on a frame.
    -> {"top1", "top5", "bits_per_sample", "nll_nats", "positions"}; the model runs in eval mode under
    torch.no_grad on its device (in its own dtype), and its training mode is restored afterwards.
    """
    classes = model_classes(model)
    streams = token_streams(tokens, classes, "tokens", min_length=2)
    segment = DEFAULT_SEGMENT if segment is None else check_int_arg(segment, "segment")
    burn_in = check_int_arg(burn_in, "burn_in", minimum=0)
    if burn_in >= segment:
        raise ValueError(f"burn_in ({burn_in}) must be < segment ({segment}): each window must score a target")
    batch_size = check_int_arg(batch_size, "batch_size")
    conds = stream_cond(model, cond, streams)
    if (segment - burn_in) % conds.hop:
        raise ValueError(f"segment - burn_in ({segment - burn_in}) must be a multiple of the model's cond_hop "
                         f"({conds.hop}): every window has to start on a local-conditioning frame")
    windows = _windows(streams, segment, burn_in)
    # Batches of equal-length windows: no padding, so nothing relies on the model being causal.
    windows.sort(key=lambda w: (-w[2], w[3]))
    device = next(model.parameters()).device
    metrics = SampleMetrics()
    was_training = model.training
    model.eval()
    from tqdm.auto import tqdm
    try:
        with torch.no_grad(), tqdm(total=sum(w[2] - w[3] for w in windows), unit="sample",
                                   disable=not progress, desc="evaluate") as bar:
            for batch in _equal_length_batches(windows, batch_size):
                metrics = metrics.merge(_score_batch(model, streams, batch, conds, device))
                bar.update(sum(w[2] - w[3] for w in batch))
    finally:
        model.train(was_training)
    return metrics.summary()


def _windows(streams, segment: int, burn_in: int) -> list[tuple[int, int, int, int]]:
    """(stream, start, n_predictions, unscored) per window: input stream[start : start + n], targets
    stream[start + 1 : start + 1 + n], the first ``unscored`` of them context only."""
    windows = []
    for index, stream in enumerate(streams):
        targets = len(stream) - 1
        start = 0
        while True:
            skip = 0 if start == 0 else burn_in
            if start + skip >= targets:
                break
            windows.append((index, start, min(segment, targets - start), skip))
            start += segment - burn_in
    return windows


def _equal_length_batches(windows, batch_size: int):
    """Consecutive windows with the same length and the same unscored prefix, batch_size at most."""
    batch = []
    for window in windows:
        if batch and (len(batch) == batch_size or batch[0][2:] != window[2:]):
            yield batch
            batch = []
        batch.append(window)
    if batch:
        yield batch


def _score_batch(model, streams, batch, conds, device) -> SampleMetrics:
    rows = torch.stack([streams[i][start:start + n + 1] for i, start, n, _ in batch]).to(device)
    kwargs = conds.for_windows([w[0] for w in batch], [w[1] for w in batch], rows.shape[1] - 1, device)
    logits = model(rows[:, :-1], **kwargs)
    _check_logits(logits, rows.shape[0], model_classes(model), rows.shape[1] - 1)
    skip = batch[0][3]  # the same for the whole batch
    return next_sample_metrics(logits[:, :, skip:], rows[:, 1 + skip:])


def _check_logits(logits, batch: int, classes: int, length: int) -> None:
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, classes, length):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits (B, classes, T) = {(batch, classes, length)}, got {got}")


# ---- shared with fastwave.training.sample_models -----------------------------------------------------------------

def model_classes(model) -> int:
    if not isinstance(model, torch.nn.Module) or not isinstance(getattr(getattr(model, "config", None),
                                                                        "classes", None), int):
        raise TypeError("model must be a sample model: a torch.nn.Module with config.classes, "
                        f"got {type(model).__name__}")
    return model.config.classes
