"""Training, evaluating and applying clip classifiers (``fastwave.WaveletClassifier``) on clips cut
into windows (``fastwave.training.clip_windows.WindowedClips``):

    splits = clip_splits(clips)                                   # split clips first, then window them
    train = WindowedClips.from_clips(clips, indices=splits["train"])
    val = WindowedClips.from_clips(clips, indices=splits["val"])
    history = train_classifier(model, train, val, epochs=30, checkpoint_dir="runs/tagger")
    print(evaluate_classifier(model, test).table())               # per clip: window scores averaged
    probabilities = classify_audio(model, audio, sample_rate=16000)

Each window is trained on its clip's labels (FSD50K's labels are per clip, "weak") with the model's
``loss``: binary cross-entropy over the classes for multi-label data, cross-entropy for multi-class. A clip's
prediction is the mean over its windows of the window probabilities (sigmoid or softmax), and the
metrics (``fastwave.training.metrics``) are computed per clip: mAP, micro-AP and d' for multi-label data,
accuracy (and top-5) for multi-class data.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from .._checks import check_int_arg
from ..training.augment import WaveAugment, augmented_batch
from ..training.clip_windows import WindowedClips, average_by_clip, clip_windows
from ..training.metrics import accuracy, headline_metric, multilabel_metrics
from ..training.loop import autocast_for, run_training, step_generator

AUGMENT_STREAM = 1  # the step_generator stream of augmentation draws (stream 0 orders the epoch)


def check_data(model, data, name: str = "data") -> None:
    """ValueError unless ``data`` (a WindowedClips) fits ``model``: same sample rate, windows the
    model takes, the same number of classes and kind of labels, and the same label names when both
    have them."""
    if not isinstance(data, WindowedClips):
        raise TypeError(f"{name} must be a fastwave.training.clip_windows.WindowedClips, got {type(data).__name__}")
    c = model.config
    if data.sample_rate != c.sample_rate:
        raise ValueError(f"{name} is at {data.sample_rate} Hz but the model takes {c.sample_rate} Hz audio: "
                         f"load it with sample_rate={c.sample_rate} (files are resampled on loading)")
    if data.window % c.patch_size or not c.patch_size <= data.window <= c.clip_samples:
        raise ValueError(f"{name} has windows of {data.window} samples; the model takes a multiple of its "
                         f"patch ({c.patch_size}) up to {c.clip_samples} samples")
    if data.multi_label != c.multi_label:
        kind = {True: "multi-label", False: "multi-class"}
        raise ValueError(f"{name} is {kind[data.multi_label]} but the model is {kind[c.multi_label]}")
    classes = data.targets.shape[1] if data.multi_label else len(data.vocabulary or []) or None
    if classes is not None and classes != c.num_classes:
        raise ValueError(f"{name} has {classes} classes but the model has {c.num_classes}")
    if not data.multi_label and int(data.targets.max()) >= c.num_classes:
        raise ValueError(f"{name} holds class id {int(data.targets.max())}; the model has {c.num_classes} classes")
    labels = getattr(c, "labels", None)
    if labels and data.vocabulary and list(labels) != list(data.vocabulary):
        raise ValueError(f"{name}'s label names differ from the model's (e.g. {data.vocabulary[:3]} vs "
                         f"{list(labels)[:3]}): load the clips with vocabulary=model.config.labels")


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """(B, C) logits -> fp32 probabilities: per-class sigmoid (multi-label) or softmax (multi-class)."""
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


@torch.no_grad()
def window_probabilities(model, windows: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """windows (N, samples) float -> (N, C) fp32 CPU probabilities, in batches, in eval mode (the
    model's mode is restored)."""
    batch_size = check_int_arg(batch_size, "batch_size")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = []
        for first in range(0, len(windows), batch_size):
            with autocast_for(device):
                logits = model(windows[first:first + batch_size].to(device))
            out.append(probabilities(logits, model.config.multi_label).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def clip_probabilities(model, data: WindowedClips, batch_size: int = 256, name: str = "data") -> torch.Tensor:
    """(num_clips, C) fp32: each clip's window probabilities averaged over its windows."""
    check_data(model, data, name)
    scores = []
    for first in range(0, len(data), batch_size):
        windows, _ = data.batch(torch.arange(first, min(first + batch_size, len(data))))
        scores.append(window_probabilities(model, windows, batch_size))
    return average_by_clip(torch.cat(scores), data.clip_of_window, data.num_clips)


def classify_audio(model, audio, sample_rate: int, *, hop: int | None = None, batch_size: int = 256) -> torch.Tensor:
    """One clip of any length -> (C,) fp32 probabilities, averaged over its windows.

    audio: (samples,) float at ``sample_rate``, which must be the model's (resample with
    ``fastwave.audio.resample``); at least one patch long (25 ms for the default model). Windows of
    the model's clip length at hops of ``hop`` (default: the clip length), the last one aligned to
    the end; a clip shorter than a window is zero-padded.
    """
    c = model.config
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate != c.sample_rate:
        raise ValueError(f"audio is at sample_rate={sample_rate!r} but the model takes {c.sample_rate} Hz: "
                         "resample it first (fastwave.audio.resample)")
    windows = clip_windows(audio, c.clip_samples, hop, min_samples=c.patch_size)
    return window_probabilities(model, windows, batch_size).mean(0)


@dataclasses.dataclass
class ClassifierReport:
    """Per-clip metrics of a classifier on a data set (``evaluate_classifier``)."""

    multi_label: bool
    clips: int
    windows: int
    metrics: dict  # multi-label: mAP, micro_ap, d_prime, classes_scored, classes_skipped; else accuracy, top5

    @property
    def headline(self) -> float:
        """mAP (multi-label) or accuracy (multi-class)."""
        return self.metrics[headline_metric(self.multi_label)]

    def table(self) -> str:
        """A plain-text table of every metric."""
        names = {"mAP": "mAP (macro, per class)", "micro_ap": "micro-average precision", "d_prime": "d-prime",
                 "classes_scored": "classes scored (>= 1 positive)", "classes_skipped": "classes skipped (no positive)",
                 "accuracy": "accuracy (top-1)", "top5": "top-5 accuracy"}
        rows = [("clips", str(self.clips)), ("windows", str(self.windows))]
        for key, value in self.metrics.items():
            rows.append((names.get(key, key), str(value) if isinstance(value, int) else f"{value:.4f}"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_classifier(model, data: WindowedClips, batch_size: int = 256, name: str = "data") -> ClassifierReport:
    """Per-clip metrics of ``model`` on ``data`` (window probabilities averaged per clip)."""
    scores = clip_probabilities(model, data, batch_size, name)
    targets = data.targets
    if data.multi_label:
        result = multilabel_metrics(scores, targets)
        metrics = {"mAP": result.mAP, "micro_ap": result.micro_ap, "d_prime": result.d_prime,
                   "classes_scored": result.classes_scored, "classes_skipped": result.classes_skipped}
    else:
        top5 = scores.topk(min(5, scores.shape[1]), dim=1).indices
        metrics = {"accuracy": accuracy(scores, targets),
                   "top5": float((top5 == targets[:, None]).any(1).float().mean())}
    return ClassifierReport(data.multi_label, data.num_clips, len(data), metrics)


def train_classifier(model, train: WindowedClips, val: WindowedClips | None = None, *, epochs: int = 10,
                     steps: int | None = None, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.01,
                     warmup: int | None = None, min_lr_ratio: float = 0.01, grad_clip: float | None = 1.0,
                     seed: int = 0, checkpoint_dir=None, resume: bool = False, eval_every: int | None = None,
                     eval_batch_size: int = 256, augment: WaveAugment | None = None, progress: bool = True) -> dict:
    """Train ``model`` (in place, on its device) on the windows of ``train`` for ``epochs`` epochs, or
    for ``steps`` updates when given (a budget that does not grow with the data, as a data-scaling
    curve wants; ``epochs`` is then ignored).

    Each epoch visits every window once in an order fixed by (seed, epoch), in batches of
    ``batch_size`` (the last partial batch is dropped); under torchrun each rank takes batch_size /
    world of every batch. With ``val``, the model is evaluated after every epoch, or every
    ``eval_every`` steps, and after the last (per clip: mAP or accuracy); the best evaluation's
    weights are kept in ``checkpoint_dir``/best.safetensors. The
    schedule, checkpoints and exact resume are ``fastwave.training.loop.run_training``'s; warmup defaults
    to one epoch (capped at 1000 steps). Under torchrun, move the model to
    ``fastwave.training.loop.training_device()`` (this rank's GPU) before calling. ``augment``
    (``fastwave.training.augment.WaveAugment``: shift, gain, polarity, on-the-fly mixing) draws
    afresh for every step, from (seed, step), so augmented runs resume exactly too.

    -> the history: {"loss", "lr" per step, "eval": [{"step", "epoch", metric...}], "best"}.
    """
    check_data(model, train, "train")
    if val is not None:
        check_data(model, val, "val")
    epochs = check_int_arg(epochs, "epochs")
    batch_size = check_int_arg(batch_size, "batch_size")
    steps_per_epoch = len(train) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"train has {len(train)} windows, fewer than batch_size={batch_size}")
    steps = epochs * steps_per_epoch if steps is None else check_int_arg(steps, "steps")
    eval_every = steps_per_epoch if eval_every is None else check_int_arg(eval_every, "eval_every")
    device = next(model.parameters()).device
    order = {}  # the current epoch's permutation, drawn once per epoch

    def batch_at(step: int, rank: int, world: int):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must split evenly over {world} processes")
        epoch, index = divmod(step, steps_per_epoch)
        if epoch not in order:
            order.clear()
            order[epoch] = torch.randperm(len(train), generator=step_generator(seed, epoch))
        picked = order[epoch][index * batch_size:(index + 1) * batch_size]
        if augment is None or not augment.active:
            return train.batch(picked[rank::world])
        return augmented_batch(augment, train, picked, step_generator(seed, step, stream=AUGMENT_STREAM),
                               rows=slice(rank, None, world))

    def loss_of(trained, batch) -> torch.Tensor:
        windows, targets = batch
        return model.loss(trained(windows.to(device)).float(), targets.to(device))

    def evaluate(trained) -> dict:
        report = evaluate_classifier(trained, val, eval_batch_size, "val")
        return {k: v for k, v in report.metrics.items() if isinstance(v, float) and not math.isnan(v)}

    metric = headline_metric(model.config.multi_label)
    if augment is not None and augment.mix and not model.config.multi_label:
        raise ValueError("augment.mix needs a multi-label model: a mixture of single-label clips has no one label")
    settings = {"epochs": steps / steps_per_epoch, "batch_size": batch_size,
                "train_windows": len(train), "train_clips": train.num_clips,
                **({"augment": dataclasses.asdict(augment)} if augment is not None and augment.active else {})}
    history = run_training(
        model, steps=steps, batch_at=batch_at, loss_of=loss_of, lr=lr, weight_decay=weight_decay,
        warmup=min(1000, steps_per_epoch) if warmup is None else warmup, min_lr_ratio=min_lr_ratio,
        grad_clip=grad_clip, seed=seed, evaluate=None if val is None else evaluate, eval_every=eval_every,
        select=None if val is None else (metric, "max"), checkpoint_dir=checkpoint_dir, resume=resume,
        settings=settings, progress=progress, desc="train",
        describe_eval=lambda r: ", ".join(f"{k} {v:.4f}" for k, v in r.items()))
    for entry in history["eval"]:
        entry["epoch"] = entry["step"] // steps_per_epoch
    return history
