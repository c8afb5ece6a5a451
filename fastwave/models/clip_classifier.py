"""What every clip classifier shares (the wavelet Audio Transformer and the log-mel CNN baseline):
the task fields' checks, the waveform check, the loss and the head.

A clip classifier maps waveform (B, S) float -> logits (B, num_classes); S is a whole number of the
model's input unit ``config.patch_size`` (a 25 ms patch for the Transformer, a 10 ms STFT hop for
the CNN) between one unit and ``config.clip_samples``. ``fastwave.tagging.classify`` trains and scores any
of them through this interface: ``config`` (num_classes, sample_rate, clip_samples, patch_size,
multi_label, labels), ``forward``, ``features`` (the clip embedding the head reads) and ``loss``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_config_ints
from .checkpoint import ConfiguredModule


class ClipTaskConfig:
    """Checks of the fields every clip classifier's config dataclass has: num_classes, multi_label,
    dropout and labels (sample_rate and clip_samples are checked with the model's own ints)."""

    def _check_task(self, model: str) -> None:
        if not isinstance(self.multi_label, bool):
            raise ValueError(f"{model} multi_label must be True or False, got {self.multi_label!r}")
        # One class is a valid multi-label task (present / absent); a softmax needs two.
        check_config_ints(self, model, ("num_classes",), 1 if self.multi_label else 2,
                          what="" if self.multi_label else " (single-label)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"{model} dropout must be in [0, 1), got {self.dropout!r}")
        if self.labels is None:
            return
        if isinstance(self.labels, str) or not isinstance(self.labels, (list, tuple)):
            raise ValueError(f"{model} labels must be a tuple of class names, got {type(self.labels).__name__}")
        self.labels = tuple(self.labels)
        if not all(isinstance(name, str) and name for name in self.labels) or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{model} labels must be distinct non-empty names (str)")
        if len(self.labels) != self.num_classes:
            raise ValueError(f"{model} has {self.num_classes} classes but {len(self.labels)} labels")

    def _check_tuple_of_ints(self, field: str, model: str, what: str) -> None:
        values = getattr(self, field)
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"{model} {field} must be a tuple of {what}, got {values!r}")
        setattr(self, field, tuple(values))  # a JSON round trip gives a list
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in values):
            raise ValueError(f"{model} {field} must hold positive ints, got {list(values)}")


class ClipClassifier(ConfiguredModule):
    """Base of the clip classifiers: subclasses build ``self.head`` and define ``features``."""

    def check_waveform(self, waveform) -> torch.Tensor:
        """waveform (B, S): a float tensor, S a multiple of patch_size in [patch_size, clip_samples],
        finite -> the same tensor (TypeError / ValueError otherwise)."""
        c = self.config
        if not isinstance(waveform, torch.Tensor):
            raise TypeError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
        if not waveform.dtype.is_floating_point:
            raise TypeError(f"waveform must be floating point audio, got dtype {waveform.dtype}")
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, S) samples, got shape {tuple(waveform.shape)}")
        samples = waveform.shape[1]
        if samples < c.patch_size:
            raise ValueError(f"waveform of {samples} samples is shorter than one patch of {c.patch_size} samples "
                             f"({1000 * c.patch_size / c.sample_rate:g} ms at {c.sample_rate / 1000:g} kHz)")
        if samples % c.patch_size:
            raise ValueError(f"waveform length {samples} is not a multiple of patch_size {c.patch_size}; "
                             f"trim or pad it to {samples - samples % c.patch_size} or "
                             f"{samples - samples % c.patch_size + c.patch_size} samples")
        if samples > c.clip_samples:
            raise ValueError(f"waveform of {samples} samples is longer than clip_samples ({c.clip_samples}, "
                             f"{c.clip_samples / c.sample_rate:g} s): the model takes at most "
                             f"{c.clip_samples // c.patch_size} patches")
        # One host sync; skipped while torch.compile traces, where a data-dependent branch would
        # break the graph.
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(waveform).all()):
            raise ValueError("waveform holds non-finite values (NaN or inf)")
        return waveform

    def features(self, waveform) -> torch.Tensor:
        """waveform (B, S) -> (B, F): the clip embedding the head reads."""
        raise NotImplementedError

    def forward(self, waveform) -> torch.Tensor:
        """waveform (B, S) float, S a multiple of patch_size in [patch_size, clip_samples] -> logits
        (B, num_classes), before any sigmoid / softmax."""
        return self.head(self.features(waveform))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss of logits (B, num_classes): multi-label, targets (B, num_classes) in [0, 1] and
        binary cross-entropy on the sigmoid; single-label, targets (B,) class ids and cross-entropy."""
        if self.config.multi_label:
            if targets.shape != logits.shape:
                raise ValueError(f"targets must be (B, num_classes) = {tuple(logits.shape)} for a multi-label "
                                 f"model, got shape {tuple(targets.shape)}")
            return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
        if targets.shape != logits.shape[:1] or targets.dtype.is_floating_point:
            raise ValueError(f"targets must be (B,) = ({logits.shape[0]},) class ids for a single-label model, "
                             f"got shape {tuple(targets.shape)} of dtype {targets.dtype}")
        return F.cross_entropy(logits, targets.long())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
