"""What every sample model shares: the properties the engines and tools read (config and ``save``
come from ``ConfiguredModule``).

A sample model maps tokens (B, T) int64 in [0, config.classes) to logits (B, classes, T), where
``logits[:, :, t]`` predicts token t + 1; subclasses set ``model_type`` (the checkpoint and engine
key) and ``config_class`` (a dataclass with ``to_dict``, ``receptive_field`` and ``sample_rate``).
"""
from __future__ import annotations

from .checkpoint import ConfiguredModule


class SampleModel(ConfiguredModule):

    @property
    def receptive_field(self) -> int:
        """Tokens the newest logits can depend on."""
        return self.config.receptive_field

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_hop(self) -> int:
        """Positions per conditioning frame: a window of the input must start on a multiple."""
        return 1

    @property
    def burn_in(self) -> int:
        """Leading positions of a training crop left out of the loss (0: none)."""
        return 0
