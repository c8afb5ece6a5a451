"""What every sample model shares: the properties the engines and tools read (config and ``save``
come from ``ConfiguredModule``).

A sample model maps tokens (B, T) int64 in [0, config.classes) to logits (B, classes, T), where
``logits[:, :, t]`` predicts token t + 1; subclasses set ``model_type`` (the checkpoint and engine
key) and ``config_class`` (a dataclass with ``to_dict``, ``receptive_field`` and ``sample_rate``).
"""
from __future__ import annotations

from ..audio import de_emphasis, mulaw_decode, mulaw_encode, pre_emphasis
from .checkpoint import ConfiguredModule


class SampleModel(ConfiguredModule):

    @property
    def receptive_field(self) -> int:
        """Tokens the newest logits can depend on."""
        return self.config.receptive_field

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def audio_to_tokens(self, audio):
        """Audio (..., T) in [-1, 1] at ``sample_rate`` -> the tokens this model reads (..., T) int64:
        mu-law of the audio, after ``pre_emphasis`` when the config sets one. Same kind as given
        (numpy or torch)."""
        return mulaw_encode(pre_emphasis(audio, self.config.pre_emphasis), classes=self.config.classes)

    def tokens_to_audio(self, tokens):
        """Generated tokens (..., T) -> float32 audio (..., T): the inverse of ``audio_to_tokens``
        (``de_emphasis`` runs from silence at the first token given, so decode a prompt and its
        continuation together), clipped to [-1, 1]: de-emphasis has a gain of (1 + a) / (1 - a) at
        0 Hz, and tokens that no audio in range encodes to (a random model's) would leave it."""
        audio = mulaw_decode(tokens, classes=self.config.classes)
        if self.config.pre_emphasis == 0:
            return audio
        audio = de_emphasis(audio, self.config.pre_emphasis)
        return audio.clip(-1.0, 1.0)

    @property
    def frame_hop(self) -> int:
        """Positions per conditioning frame: a window of the input must start on a multiple."""
        return 1

    @property
    def burn_in(self) -> int:
        """Leading positions of a training crop left out of the loss (0: none)."""
        return 0
