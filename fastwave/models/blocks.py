"""Transformer pieces shared by the sequence models (the sample Transformer, the code LM): rotary
positions, causal self-attention on ``fastwave.ops.causal_attention``, the MLP and the pre-norm block.

Shapes: activations (B, T, W) with W = heads * head_dim; attention runs on (B, heads, T, head_dim).

Positions are rotary (RoPE, Su et al. 2021, the "rotate half" pairing of GPT-NeoX / LLaMA): query
and key features d and d + D/2 are rotated by the angle ``position * base ** (-2d / D)``. Attention
scores then depend only on the distance between positions, which is what lets a sliding-window KV
cache keep its keys as they were written while the window moves, and lets a model run on sequences
longer than it was trained on. The angles are computed in float64: at sample rate, positions reach
millions within minutes, where float32 angles would be off by whole radians.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_config_ints
from ..ops import causal_attention


def rope_tables(positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype):
    """positions (...,) int -> (cos, sin), each (..., head_dim // 2) in ``dtype``, angles in float64."""
    exponents = torch.arange(0, head_dim // 2, device=positions.device, dtype=torch.float64) * (2.0 / head_dim)
    angles = positions.to(torch.float64)[..., None] * base ** -exponents
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., D) with cos / sin broadcastable to (..., D // 2): features d and d + D/2 rotated."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary positions, optionally over a sliding window."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)  # rows: all query heads, then keys, then values
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def project(self, x, cos, sin):
        """x (B, T, W) -> rotated q, k and v, each (B, heads, T, head_dim)."""
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x, cos, sin, window: int | None = None, kv: list | None = None):
        """x (B, T, W); cos / sin (T, head_dim / 2); window: keys within the last ``window``
        positions (None: all earlier ones); ``kv``: when a list, (k, v) are appended to it."""
        q, k, v = self.project(x, cos, sin)
        if kv is not None:
            kv.append((k, v))
        attended = causal_attention(q, k, v, window=window)  # (B, heads, T, head_dim)
        batch, _, length, _ = attended.shape
        return self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, -1)))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class TransformerBlock(nn.Module):
    """Pre-norm: x + attention(norm(x)), then + MLP(norm(x)) (GPT-2)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio * width, dropout)

    def forward(self, x, cos, sin, window=None, kv=None):
        x = x + self.attention(self.norm1(x), cos, sin, window, kv)
        return x + self.mlp(self.norm2(x))


def run_blocks(blocks, x: torch.Tensor, *, start: int, context: int, head_dim: int, rope_base: float,
               kv: list | None = None) -> torch.Tensor:
    """x (B, T, W) through ``blocks`` -> (B, T, W). Positions are ``start .. start + T - 1`` (absolute:
    the rotary angles of cached keys carry them); each position attends to the last ``context``
    positions, itself included. ``kv``: when a list, each block appends its rotated (k, v)."""
    length = x.shape[1]
    positions = torch.arange(start, start + length, device=x.device)
    cos, sin = rope_tables(positions, head_dim, rope_base, x.dtype)
    window = context if length > context else None
    for block in blocks:
        x = block(x, cos, sin, window, kv)
    return x


def check_transformer_config(config, model: str) -> None:
    """The fields every Transformer config here shares: layers, heads, width, mlp_ratio, context,
    rope_base, dropout."""
    check_config_ints(config, model, ("layers", "heads", "width", "mlp_ratio", "context"))
    if config.width % config.heads or (config.width // config.heads) % 2:
        raise ValueError(f"{model} width ({config.width}) must split into {config.heads} heads of an "
                         "even size (rotary positions rotate feature pairs)")
    if not 16 <= config.width // config.heads <= 128:
        raise ValueError(f"{model} head size width / heads = {config.width // config.heads} must be in "
                         "[16, 128] (the attention kernels' range)")
    if not (isinstance(config.rope_base, (int, float)) and 1 < config.rope_base < float("inf")):
        raise ValueError(f"{model} rope_base must be a finite number > 1, got {config.rope_base!r}")
    if not (isinstance(config.dropout, (int, float)) and 0 <= config.dropout < 1):
        raise ValueError(f"{model} dropout must be in [0, 1), got {config.dropout!r}")


def init_gpt_weights(model: nn.Module, layers: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the projections that write into
    the residual stream scaled by 1 / sqrt(2 * layers) so its variance does not grow with depth."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = 0.02 / math.sqrt(2 * layers) if name.endswith(("attention.out", "mlp.proj")) else 0.02
            nn.init.normal_(module.weight, 0.0, std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
