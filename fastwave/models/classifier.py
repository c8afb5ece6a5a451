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

Our choices, where the paper leaves them open or we differ: positions are a learned (frames, width)
table added after the front end (a clip shorter than ``clip_samples`` uses its first rows);
attention is one ``torch.nn.functional.scaled_dot_product_attention`` call over all frames (no
mask); blocks are pre-norm (GPT-2: x + attn(norm(x)), x + mlp(norm(x)), GELU MLP of
``mlp_ratio * width``), with a final LayerNorm; every dense layer starts from GPT-2's N(0, 0.02).
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
from .blocks import MLP, init_gpt_weights
from .checkpoint import ConfiguredModule, register_model
from .pooling import (
    DEFAULT_WAVELET_FRACTIONS,
    average_pool_time,
    check_wavelet_fractions,
    wavelet_channel_split,
    wavelet_pool,
)

POOLINGS = ("none", "avg", "wavelet")


@dataclass
class WaveletClassifierConfig:
    num_classes: int = 200  # FSD50K's vocabulary
    sample_rate: int = 16000
    clip_samples: int = 16000  # the longest input: 1 s at 16 kHz
    patch_size: int = 400  # 25 ms at 16 kHz
    frontend: tuple = (2048,)  # hidden widths of the dense front end, before its last layer to `width`
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
                                        "mlp_ratio"))
        if not isinstance(self.multi_label, bool):
            raise ValueError(f"{model} multi_label must be True or False, got {self.multi_label!r}")
        # One class is a valid multi-label task (present / absent); a softmax needs two.
        check_config_ints(self, model, ("num_classes",), 1 if self.multi_label else 2,
                          what="" if self.multi_label else " (single-label)")
        self._check_frontend(model)
        if self.clip_samples % self.patch_size:
            raise ValueError(f"{model} clip_samples ({self.clip_samples}) must be a multiple of patch_size "
                             f"({self.patch_size})")
        if self.width % self.heads:
            raise ValueError(f"{model} width ({self.width}) must be a multiple of heads ({self.heads})")
        if self.pooling not in POOLINGS:
            raise ValueError(f"{model} pooling must be one of {', '.join(map(repr, POOLINGS))}, got {self.pooling!r}")
        self.wavelet_fractions = check_wavelet_fractions(self.wavelet_fractions, f"{model} wavelet_fractions")
        if self.pooling == "wavelet":  # the split must leave every scale a channel at this width
            wavelet_channel_split(self.width, self.wavelet_fractions, name=f"{model} wavelet_fractions")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"{model} dropout must be in [0, 1), got {self.dropout!r}")
        self._check_labels(model)

    def _check_labels(self, model: str) -> None:
        if self.labels is None:
            return
        if isinstance(self.labels, str) or not isinstance(self.labels, (list, tuple)):
            raise ValueError(f"{model} labels must be a tuple of class names, got {type(self.labels).__name__}")
        self.labels = tuple(self.labels)
        if not all(isinstance(name, str) and name for name in self.labels) or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{model} labels must be distinct non-empty names (str)")
        if len(self.labels) != self.num_classes:
            raise ValueError(f"{model} has {self.num_classes} classes but {len(self.labels)} labels")

    def _check_frontend(self, model: str) -> None:
        if not isinstance(self.frontend, (list, tuple)):
            raise ValueError(f"{model} frontend must be a tuple of hidden widths, got {self.frontend!r}")
        self.frontend = tuple(self.frontend)  # a JSON round trip gives a list
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.frontend):
            raise ValueError(f"{model} frontend must hold positive ints, got {list(self.frontend)}")

    @property
    def frames(self) -> int:
        """Patches in a full clip (40 by default)."""
        return self.clip_samples // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

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
class WaveletClassifier(ConfiguredModule):
    """Audio Transformer over 25 ms patches; see the module docstring.
    ``WaveletClassifier(pooling="avg", num_classes=10)`` or from a config."""

    model_type = "wavelet_classifier"
    config_class = WaveletClassifierConfig

    def __init__(self, config: WaveletClassifierConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        sizes = (c.patch_size, *c.frontend, c.width)
        front = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            front += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.frontend = nn.Sequential(*front[:-1])  # no ReLU after the last layer: it writes the embedding
        self.positions = nn.Parameter(torch.empty(c.frames, c.width))
        self.layers = nn.ModuleList(EncoderBlock(c.width, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.num_classes)
        # One rule for every dense layer, the front end included: N(0, 0.02) is close to PyTorch's
        # fan-in default for the 400-sample patches (1 / sqrt(3 * 400) = 0.029), and LayerNorm
        # rescales each frame before every block, so only the front end's scale relative to the
        # positions (also N(0, 0.02)) matters, and at ordinary audio levels the two are comparable.
        init_gpt_weights(self, c.layers)
        nn.init.normal_(self.positions, 0.0, 0.02)

    def patches(self, waveform) -> torch.Tensor:
        """waveform (B, S) float -> (B, S // patch_size, patch_size) in the model's dtype (a view when
        the dtype already matches). S must be a multiple of patch_size in [patch_size, clip_samples]."""
        c = self.config
        if not isinstance(waveform, torch.Tensor):
            raise TypeError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
        if not waveform.dtype.is_floating_point:
            raise TypeError(f"waveform must be floating point audio, got dtype {waveform.dtype}")
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, S) samples, got shape {tuple(waveform.shape)}")
        batch, samples = waveform.shape
        if samples < c.patch_size:
            raise ValueError(f"waveform of {samples} samples is shorter than one patch of {c.patch_size} samples "
                             f"({1000 * c.patch_size / c.sample_rate:g} ms at {c.sample_rate / 1000:g} kHz)")
        if samples % c.patch_size:
            raise ValueError(f"waveform length {samples} is not a multiple of patch_size {c.patch_size}; "
                             f"trim or pad it to {samples - samples % c.patch_size} or "
                             f"{samples - samples % c.patch_size + c.patch_size} samples")
        if samples > c.clip_samples:
            raise ValueError(f"waveform of {samples} samples is longer than clip_samples ({c.clip_samples}, "
                             f"{c.clip_samples / c.sample_rate:g} s): the model has positions for "
                             f"{c.frames} patches only")
        # One host sync; skipped while torch.compile traces, where a data-dependent branch would
        # break the graph.
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(waveform).all()):
            raise ValueError("waveform holds non-finite values (NaN or inf)")
        return waveform.to(self.positions.dtype).reshape(batch, samples // c.patch_size, c.patch_size)

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
        patches = self.patches(waveform)
        x = self.frontend(patches) + self.positions[:patches.shape[1]]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.pool(x)
        return self.norm(x).mean(1)

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

    def frontend_filters(self) -> torch.Tensor:
        """The first dense layer's weights, (frontend[0], patch_size) float32 on the CPU (width rows
        when there is no hidden front-end layer), a copy: each row is a learned 25 ms FIR filter."""
        return self.frontend[0].weight.detach().to("cpu", torch.float32, copy=True)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def parameter_count(config: WaveletClassifierConfig) -> int:
    """Parameters of a WaveletClassifier built from ``config``, by formula (no model is built)."""
    c = config
    sizes = (c.patch_size, *c.frontend, c.width)
    frontend = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
    hidden = c.mlp_ratio * c.width
    norms, attention = 2 * 2 * c.width, (c.width + 1) * 4 * c.width  # qkv and out projections
    block = norms + attention + (c.width + 1) * hidden + (hidden + 1) * c.width
    return frontend + c.frames * c.width + c.layers * block + 2 * c.width + (c.width + 1) * c.num_classes

