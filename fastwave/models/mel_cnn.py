"""A log-mel CNN clip classifier: the convolutional baseline the Audio Transformer papers compare
against (Verma & Berger, 2021, Table 1: CNNs of several times the parameters at 0.373-0.434 mAP on
FSD50K), in the VGG shape of PANNs' CNN6 / CNN10 (Kong et al., 2020).

Shapes: waveform (B, S) float, S a multiple of ``hop_length`` in [hop_length, clip_samples] ->
log-mel (B, n_mels, frames), frames = 1 + S // hop_length (centred STFT frames,
``fastwave.audio.log_mel_spectrogram``) -> BatchNorm per mel bin -> ``len(channels)`` blocks of
``convs_per_block`` x (3x3 conv, BatchNorm, ReLU) then 2x2 average pooling (rounding up, so short
inputs keep one row) -> mean over mel rows -> max + mean over time (B, channels[-1]) -> dropout ->
linear head -> logits (B, num_classes). Its input unit (``config.patch_size``) is one STFT hop.

Trained, evaluated and applied like the Transformer (``fastwave.tagging.classify``), and saved with its
config (``fastwave.load_model``). The default (4 blocks of 2 convs, 32 -> 256 channels, 200 classes)
has 1,224,168 parameters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_config_ints
from ..audio import log_mel_spectrogram
from .checkpoint import register_model
from .clip_classifier import ClipClassifier, ClipTaskConfig


@dataclass
class LogMelCNNConfig(ClipTaskConfig):
    num_classes: int = 200
    sample_rate: int = 16000
    clip_samples: int = 16000  # the longest input: 1 s at 16 kHz
    n_fft: int = 512  # 32 ms window at 16 kHz
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    channels: tuple = (32, 64, 128, 256)  # one conv block per entry
    convs_per_block: int = 2
    multi_label: bool = True
    dropout: float = 0.2
    labels: tuple | None = None

    def __post_init__(self):
        model = "LogMelCNN"
        check_config_ints(self, model, ("sample_rate", "clip_samples", "n_fft", "hop_length", "n_mels",
                                        "convs_per_block"))
        self._check_task(model)
        self._check_tuple_of_ints("channels", model, "conv widths")
        if not self.channels:
            raise ValueError(f"{model} channels needs at least one conv block")
        if self.clip_samples % self.hop_length:
            raise ValueError(f"{model} clip_samples ({self.clip_samples}) must be a multiple of hop_length "
                             f"({self.hop_length})")
        if self.n_fft // 2 + 1 < self.n_mels:
            raise ValueError(f"{model} n_mels ({self.n_mels}) exceeds the {self.n_fft // 2 + 1} STFT bins of "
                             f"n_fft={self.n_fft}")

    @property
    def patch_size(self) -> int:
        """The input unit: inputs are whole STFT hops."""
        return self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def conv_block(fan_in: int, fan_out: int, convs: int) -> nn.Sequential:
    layers = []
    for i in range(convs):
        layers += [nn.Conv2d(fan_in if i == 0 else fan_out, fan_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(fan_out), nn.ReLU()]
    return nn.Sequential(*layers)


@register_model
class LogMelCNN(ClipClassifier):
    """VGG-style CNN over log-mel spectrograms; see the module docstring. ``LogMelCNN(num_classes=16)``."""

    model_type = "log_mel_cnn"
    config_class = LogMelCNNConfig

    def __init__(self, config: LogMelCNNConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.mel_norm = nn.BatchNorm1d(c.n_mels)
        widths = (1, *c.channels)
        self.blocks = nn.ModuleList(conv_block(a, b, c.convs_per_block) for a, b in zip(widths[:-1], widths[1:]))
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.channels[-1], c.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # He init for the ReLU stack, as torchvision's VGG
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def log_mel(self, waveform) -> torch.Tensor:
        """waveform (B, S) -> (B, n_mels, 1 + S // hop_length) log mel energies in the model's dtype."""
        c = self.config
        waveform = self.check_waveform(waveform)
        mel = log_mel_spectrogram(waveform.float(), c.sample_rate, c.n_fft, c.hop_length, c.n_mels)
        return mel.to(self.head.weight.dtype)

    def features(self, waveform) -> torch.Tensor:
        """waveform (B, S) -> (B, channels[-1]): the last block's map averaged over mel rows, then
        max + mean over time (what the head reads)."""
        x = self.mel_norm(self.log_mel(waveform)).unsqueeze(1)  # (B, 1, n_mels, frames)
        for block in self.blocks:
            x = F.avg_pool2d(block(x), 2, ceil_mode=True)
        x = x.mean(2)  # (B, C, frames')
        return self.dropout(x.amax(2) + x.mean(2))
