"""The "wavelet" Audio Transformer classifier (Verma & Berger, 2021, "Audio Transformers: Transformer
architectures for large scale audio understanding. Adieu Convolutions").

What the paper did: classify 1 s of raw 16 kHz audio (FSD50K, 200 classes, multi-label) with no
convolutions. The waveform is cut into 40 non-overlapping 25 ms patches of 400 samples; a dense
front end (one layer of 2048 neurons, then one of 64, the Transformer width) embeds each patch, so
its first layer is a learned bank of 2048 FIR filters of 25 ms; a stack of bidirectional Transformer
encoder layers follows, with parameter-free pooling over time between layers (average pooling, or
the multi-scale "wavelet" step of ``pooling.py``), then a dense head.

Shapes: waveform (B, S) float, S a multiple of ``patch_size`` in [patch_size, clip_samples] ->
patches (B, F, patch_size) with F = S // patch_size -> front end (B, F, width) + positions ->
``layers`` encoder blocks, pooled between them ("none" and "wavelet" keep F frames, "avg" halves
them, rounding up) -> LayerNorm -> mean over frames (B, width) -> head -> logits (B, num_classes).
The model returns logits: ``loss`` applies the sigmoid (multi-label) or softmax (single-label).
With ``inputs="logmel"`` the front end reads each patch's log-mel frame (B, F, n_mels) instead of its
samples: the same Transformer with a fixed filterbank, to tell the front end's share from the
architecture's.

Our choices, where the paper leaves them open or we differ: positions are a learned (frames, width)
table added after the front end (a clip shorter than ``clip_samples`` uses its first rows);
attention is one ``torch.nn.functional.scaled_dot_product_attention`` call over all frames (no
mask); blocks are pre-norm (GPT-2: x + attn(norm(x)), x + mlp(norm(x)), GELU MLP of
``mlp_ratio * width``), with a final LayerNorm; the blocks and the head start from GPT-2's N(0, 0.02),
the front end from He initialisation (so that its output keeps the audio's scale; see ``__init__``).
The default config (6 layers, width 64, 4 heads, front end 400 -> 2048 -> 64, 200 classes) has
1,267,976 parameters, of which 952,384 are the front end; the paper reports 2.3 M for its "large"
6-layer model, so its layers (or front end) must be wider than ours in some way it does not spell
out; we do not claim to match its size.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_config_ints
from ..audio import log_mel_spectrogram
from .blocks import MLP, init_gpt_weights
from .checkpoint import register_model
from .clip_classifier import ClipClassifier, ClipTaskConfig
from .pooling import (
    DEFAULT_WAVELET_FRACTIONS,
    average_pool_time,
    check_wavelet_fractions,
    wavelet_channel_split,
    wavelet_pool,
)

POOLINGS = ("none", "avg", "wavelet")
INPUTS = ("waveform", "logmel")


@dataclass
class WaveletClassifierConfig(ClipTaskConfig):
    num_classes: int = 200  # FSD50K's vocabulary
    sample_rate: int = 16000
    clip_samples: int = 16000  # the longest input: 1 s at 16 kHz
    patch_size: int = 400  # 25 ms at 16 kHz
    frontend: tuple = (2048,)  # hidden widths of the dense front end, before its last layer to `width`
    inputs: str = "waveform"  # what the front end reads per patch: its samples, or "logmel": its log-mel frame
    n_mels: int = 64  # "logmel" only: mel bands of each patch's frame
    width: int = 64
    heads: int = 4
    layers: int = 6
    mlp_ratio: int = 4
    pooling: str = "wavelet"  # between layers: "none", "avg" (halve the frames) or "wavelet"
    wavelet_fractions: tuple = DEFAULT_WAVELET_FRACTIONS  # channels per scale (see pooling.py)
    multi_label: bool = True  # sigmoid per class (FSD50K) rather than one softmax
    dropout: float = 0.1
    labels: tuple | None = None  # the class names, in class order (stored so a CSV maps onto the classes)

    def __post_init__(self):
        model = "WaveletClassifier"
        check_config_ints(self, model, ("sample_rate", "clip_samples", "patch_size", "width", "heads", "layers",
                                        "mlp_ratio", "n_mels"))
        self._check_task(model)
        self._check_tuple_of_ints("frontend", model, "hidden widths")
        if self.clip_samples % self.patch_size:
            raise ValueError(f"{model} clip_samples ({self.clip_samples}) must be a multiple of patch_size "
                             f"({self.patch_size})")
        if self.width % self.heads:
            raise ValueError(f"{model} width ({self.width}) must be a multiple of heads ({self.heads})")
        if self.inputs not in INPUTS:
            raise ValueError(f"{model} inputs must be one of {', '.join(map(repr, INPUTS))}, got {self.inputs!r}")
        if self.inputs == "logmel" and self.patch_size // 2 + 1 < self.n_mels:
            raise ValueError(f"{model} n_mels ({self.n_mels}) exceeds the {self.patch_size // 2 + 1} STFT bins of "
                             f"one patch of {self.patch_size} samples")
        if self.pooling not in POOLINGS:
            raise ValueError(f"{model} pooling must be one of {', '.join(map(repr, POOLINGS))}, got {self.pooling!r}")
        self.wavelet_fractions = check_wavelet_fractions(self.wavelet_fractions, f"{model} wavelet_fractions")
        if self.pooling == "wavelet":  # the split must leave every scale a channel at this width
            wavelet_channel_split(self.width, self.wavelet_fractions, name=f"{model} wavelet_fractions")

    @property
    def frames(self) -> int:
        """Patches in a full clip (40 by default)."""
        return self.clip_samples // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def input_size(self) -> int:
        """Numbers the front end reads per patch: its samples, or its mel bands."""
        return self.patch_size if self.inputs == "waveform" else self.n_mels

    def to_dict(self) -> dict:
        return asdict(self)  # tuples become JSON lists; __post_init__ turns them back


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: every frame attends to every frame of its clip."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim, self.attention_dropout = heads, width // heads, dropout
        self.qkv = nn.Linear(width, 3 * width)  # rows: all query heads, then keys, then values
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, W) -> (B, T, W)."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attention_dropout if self.training else 0.0)
        return self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, width)))


class EncoderBlock(nn.Module):
    """Pre-norm: x + attention(norm(x)), then + MLP(norm(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio * width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@register_model
class WaveletClassifier(ClipClassifier):
    """Audio Transformer over 25 ms patches; see the module docstring.
    ``WaveletClassifier(pooling="avg", num_classes=10)`` or from a config."""

    model_type = "wavelet_classifier"
    config_class = WaveletClassifierConfig

    def __init__(self, config: WaveletClassifierConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        sizes = (c.input_size, *c.frontend, c.width)
        # log-mel inputs are standardised per band, as the CNN's (their level is arbitrary: a log)
        self.input_norm = nn.BatchNorm1d(c.n_mels) if c.inputs == "logmel" else None
        front = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            front += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.frontend = nn.Sequential(*front[:-1])  # no ReLU after the last layer: it writes the embedding
        self.positions = nn.Parameter(torch.empty(c.frames, c.width))
        self.layers = nn.ModuleList(EncoderBlock(c.width, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.num_classes)
        init_gpt_weights(self, c.layers)
        nn.init.normal_(self.positions, 0.0, 0.02)
        # The front end embeds raw audio, so the audio's level sets its output's. He initialisation
        # (fan-in, with ReLU's gain on the hidden layers) carries a patch's RMS through the layers
        # whatever their widths: at initialisation the embedding's RMS is the audio's (0.05-0.2 at
        # ordinary levels) against the positions' 0.02, content before position as in a ViT's patch
        # embedding. GPT-2's N(0, 0.02) here made the output's scale depend on the width: 9% of the
        # audio's RMS at 256 hidden units (25% at 2,048), below the positions' at ordinary levels.
        layers = [module for module in self.frontend if isinstance(module, nn.Linear)]
        for i, layer in enumerate(layers):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if i < len(layers) - 1 else "linear")
            nn.init.zeros_(layer.bias)

    def patches(self, waveform) -> torch.Tensor:
        """waveform (B, S) float -> (B, S // patch_size, patch_size) in the model's dtype (a view when
        the dtype already matches). S must be a multiple of patch_size in [patch_size, clip_samples]."""
        c = self.config
        waveform = self.check_waveform(waveform)
        batch, samples = waveform.shape
        return waveform.to(self.positions.dtype).reshape(batch, samples // c.patch_size, c.patch_size)

    def inputs(self, waveform) -> torch.Tensor:
        """waveform (B, S) -> what the front end reads: (B, F, patch_size) samples, or for
        ``inputs="logmel"`` (B, F, n_mels): each patch's Hann-windowed log-mel frame (one STFT
        frame per patch, no overlap), standardised per band."""
        patches = self.patches(waveform)
        c = self.config
        if c.inputs == "waveform":
            return patches
        mel = log_mel_spectrogram(patches.float().flatten(0, 1), c.sample_rate, n_fft=c.patch_size,
                                  hop_length=c.patch_size, n_mels=c.n_mels, center=False)  # (B * F, n_mels, 1)
        mel = self.input_norm(mel[..., 0].to(patches.dtype))
        return mel.unflatten(0, patches.shape[:2])

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The step between two layers: (B, T, W) -> (B, T, W), or (B, ceil(T / 2), W) for "avg"."""
        if self.config.pooling == "avg":
            return average_pool_time(x)
        if self.config.pooling == "wavelet":
            return wavelet_pool(x, self.config.wavelet_fractions)
        return x

    def features(self, waveform) -> torch.Tensor:
        """waveform (B, S) -> (B, width): the final hidden states (after the last norm) averaged over
        frames, what the head reads (and a clip embedding a linear probe can read)."""
        inputs = self.inputs(waveform)
        x = self.frontend(inputs) + self.positions[:inputs.shape[1]]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.pool(x)
        return self.norm(x).mean(1)

    def frontend_filters(self) -> torch.Tensor:
        """The first dense layer's weights, (frontend[0], patch_size) float32 on the CPU (width rows
        when there is no hidden front-end layer), a copy: each row is a learned 25 ms FIR filter.
        A log-mel model has no filters to show (ValueError)."""
        if self.config.inputs != "waveform":
            raise ValueError(f"this model reads {self.config.inputs} patches: its front end learned no FIR filters")
        return self.frontend[0].weight.detach().to("cpu", torch.float32, copy=True)


def parameter_count(config: WaveletClassifierConfig) -> int:
    """Parameters of a WaveletClassifier built from ``config``, by formula (no model is built)."""
    c = config
    sizes = (c.input_size, *c.frontend, c.width)
    frontend = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
    frontend += 2 * c.n_mels if c.inputs == "logmel" else 0  # the input norm's scale and shift
    hidden = c.mlp_ratio * c.width
    norms, attention = 2 * 2 * c.width, (c.width + 1) * 4 * c.width  # qkv and out projections
    block = norms + attention + (c.width + 1) * hidden + (hidden + 1) * c.width
    return frontend + c.frames * c.width + c.layers * block + 2 * c.width + (c.width + 1) * c.num_classes

