"""Waveform augmentation for clip classifiers, drawn per step so that training stays exactly resumable.

    augment = WaveAugment(shift=1600, gain_db=6.0, polarity=True, mix=0.5)
    train_classifier(model, train, val, augment=augment)      # fastwave train-classifier --augment ...

Each window of a batch gets, independently:
- **shift**: moved by a whole number of samples uniform in [-shift, shift], the gap zero-filled (the
  window is a view of its clip, so a shift stands for a slightly different cut);
- **gain**: scaled by a gain uniform in [-gain_db, +gain_db] dB;
- **polarity**: negated with probability 1/2 (a sign flip changes no label);
- **mix**: with probability ``mix``, another window of the same batch added at a gain uniform in
  [-12, 0] dB, its labels joined to the window's (multi-label data only: a mixture of two
  single-label clips has no single label).

Every draw comes from the step's generator, over the whole batch before it is split between
processes, so a run is the same on 1 or N processes and resumes bit for bit. Shapes: windows
(B, S) float, targets (B, C) multi-hot (or (B,) class ids without mixing); both are returned new.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

MIX_GAIN_DB = (-12.0, 0.0)  # the partner's level, as the mixtures corpus mixes its sources


@dataclass(frozen=True)
class WaveAugment:
    shift: int = 0
    gain_db: float = 0.0
    polarity: bool = False
    mix: float = 0.0

    def __post_init__(self):
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ValueError(f"shift must be an int >= 0 (samples), got {self.shift!r}")
        if not (isinstance(self.gain_db, (int, float)) and 0 <= self.gain_db <= 40):
            raise ValueError(f"gain_db must lie in [0, 40] dB, got {self.gain_db!r}")
        if not isinstance(self.polarity, bool):
            raise ValueError(f"polarity must be a bool, got {self.polarity!r}")
        if not (isinstance(self.mix, (int, float)) and 0 <= self.mix <= 1):
            raise ValueError(f"mix must be a probability in [0, 1], got {self.mix!r}")

    @property
    def active(self) -> bool:
        return bool(self.shift or self.gain_db or self.polarity or self.mix)

    def draw(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random choices for a batch of ``batch`` windows, each (batch,): drawn in one fixed
        order whatever is switched on, so that a setting changes only its own draws."""
        uniform = lambda: torch.rand(batch, generator=generator, dtype=torch.float64)  # noqa: E731
        draws = {"shift": uniform(), "gain": uniform(), "flip": uniform(), "mix": uniform(),
                 "partner": uniform(), "partner_gain": uniform()}
        shifts = torch.floor(draws["shift"] * (2 * self.shift + 1)).long() - self.shift
        gains = 10 ** ((2 * draws["gain"] - 1) * self.gain_db / 20)
        signs = torch.where(self.polarity & (draws["flip"] < 0.5), -1.0, 1.0).double()
        mixed = draws["mix"] < self.mix
        # Partner of window i: another window j != i of the batch, uniform.
        partner = (torch.arange(batch) + 1 + torch.floor(draws["partner"] * max(batch - 1, 1)).long()) % batch
        low, high = MIX_GAIN_DB
        partner_gains = 10 ** ((low + (high - low) * draws["partner_gain"]) / 20)
        return {"shift": shifts, "scale": gains * signs, "mixed": mixed & (batch > 1), "partner": partner,
                "partner_scale": partner_gains}

    def apply(self, windows: torch.Tensor, targets: torch.Tensor, draws: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``draws`` (from ``draw``, rows matching ``windows``; ``partner`` indexes into
        ``partner_windows`` / ``partner_targets`` given in ``draws`` under those keys) -> new
        (windows, targets)."""
        if self.mix and targets.dim() != 2:
            raise ValueError("mix needs multi-label targets (B, C): a mixture of single-label clips has no one label")
        out = _shift(windows, draws["shift"]) * draws["scale"].to(windows.dtype)[:, None]
        targets = targets.clone()
        if bool(draws["mixed"].any()):
            rows = draws["mixed"]
            partner = _shift(draws["partner_windows"][rows], draws["partner_shift"][rows])
            out[rows] += partner * draws["partner_scale"][rows].to(windows.dtype)[:, None]
            targets[rows] = torch.maximum(targets[rows], draws["partner_targets"][rows].to(targets.dtype))
        return out, targets


def _shift(windows: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Row i moved by shifts[i] samples (positive: later), zero-filled -> a new (B, S) tensor."""
    batch, samples = windows.shape
    source = torch.arange(samples)[None, :] - shifts[:, None]  # where each output sample comes from
    inside = (source >= 0) & (source < samples)
    gathered = windows.gather(1, source.clamp(0, samples - 1))
    return torch.where(inside, gathered, torch.zeros((), dtype=windows.dtype))


def augmented_batch(augment: WaveAugment, data, picked: torch.Tensor, generator: torch.Generator,
                    rows=slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows ``picked`` (the whole step's batch, indices into ``data``, a WindowedClips) with
    ``augment`` drawn from ``generator`` for the whole batch, then the ``rows`` this process trains
    on -> (windows (b, S), targets)."""
    draws = augment.draw(len(picked), generator)
    mine = {key: value[rows] for key, value in draws.items()}
    windows, targets = data.batch(picked[rows])
    if bool(mine["mixed"].any()):
        partner_windows, partner_targets = data.batch(picked[draws["partner"][rows]])
        partner_shift = draws["shift"][draws["partner"][rows]]
        mine.update(partner_windows=partner_windows, partner_targets=partner_targets, partner_shift=partner_shift)
    return augment.apply(windows, targets, mine)
