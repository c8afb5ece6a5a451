"""The naive engine: the full model over the receptive field for every new sample.

This is how popular PyTorch WaveNet code generates, and the baseline the other engines are measured
against: O(receptive field) work per sample, but exactly the model's own forward.
"""
from __future__ import annotations

import torch

from .step_engine import StepEngine


class NaiveEngine(StepEngine):
    """Re-runs ``model(window)`` per sample; ``cond`` holds the model's forward keyword arguments, which
    ``model.slice_cond`` cuts to the window, and ``model.frame_hop`` the positions per conditioning
    frame."""

    def __init__(self, model, batch: int, cond: dict):
        self.model = model
        self.device = next(model.parameters()).device
        self.cond = cond
        self.hop = model.frame_hop  # conditioning is per frame: windows start on a frame boundary
        # Enough history for one receptive field that starts on a frame boundary.
        self.keep = model.receptive_field + self.hop
        self.history = None
        self.offset = 0  # absolute position of history[:, 0]

    def prefill(self, prompt):
        self.history, self.offset = prompt, 0
        return self._last_logits()

    def step(self, tokens):
        self.history = torch.cat([self.history, tokens[:, None]], dim=1)
        drop = self.history.shape[1] - self.keep
        if drop > 0:
            self.history, self.offset = self.history[:, drop:], self.offset + drop
        return self._last_logits()

    def _last_logits(self):
        end = self.offset + self.history.shape[1]  # one past the newest position
        start = max(0, end - self.model.receptive_field)
        start -= start % self.hop  # local frames index absolute positions
        window = self.history[:, start - self.offset:]
        return self.model(window, **self.model.slice_cond(self.cond, start))[:, :, -1].float()
