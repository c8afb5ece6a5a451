"""WaveNet over mu-law tokens (van den Oord et al., 2016), as one readable nn.Module.

Shapes: tokens (B, T) int64 in [0, classes); logits (B, classes, T) where ``logits[:, :, t]`` is the
distribution of token t + 1 given tokens 0..t (teacher forcing: feed ``audio[:, :-1]``, target
``audio[:, 1:]``).

A layer with dilation d and kernel size K reads its input at t, t - d, ..., t - (K - 1) d, so the
model sees ``receptive_field = 1 + (K - 1) * sum(dilations)`` tokens. Each layer: dilated causal
conv (residual -> gate channels, plus conditioning) -> tanh(first half) * sigmoid(second half) ->
1x1 skip projection, and a 1x1 residual projection added to the layer input (the last layer has
none: nothing reads it). The head is ReLU -> 1x1 -> ReLU -> 1x1 over the sum of the skips.

Conditioning, both optional and added to every layer's conv output before the gate:
- global: an id per stream (B,) -> a learned embedding -> a per-layer linear projection;
- local: features (B, local_channels, F) at a lower frame rate; frame f covers positions
  [f * cond_hop, (f + 1) * cond_hop) (nearest-neighbour upsampling), projected per layer by a 1x1
  conv. Projecting at the frame rate and then repeating equals repeating then projecting, and lets
  engines do the projection once per frame instead of once per sample.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_config_ints, check_global_cond, check_local_cond, check_tokens
from ..audio.emphasis import check_emphasis
from ..ops import wavenet_block, wavenet_block_reference
from ..ops._backend import use_triton
from .sample_model import SampleModel


@dataclass
class WaveNetConfig:
    layers: int = 20
    cycles: int = 2
    kernel_size: int = 2
    residual_channels: int = 64
    gate_channels: int = 128
    skip_channels: int = 128
    classes: int = 256
    sample_rate: int = 16000
    global_classes: int = 0  # 0: no global conditioning
    global_channels: int = 16
    local_channels: int = 0  # 0: no local conditioning
    cond_hop: int = 256  # samples per local-conditioning frame
    pre_emphasis: float = 0.0  # tokens are mu-law of pre_emphasis(audio, this); 0: of the audio itself
    dilations: list[int] = field(init=False)

    def __post_init__(self):
        check_config_ints(self, "WaveNet", ("layers", "cycles", "residual_channels", "gate_channels",
                                            "skip_channels", "sample_rate", "global_channels", "cond_hop"))
        check_config_ints(self, "WaveNet", ("global_classes", "local_channels"), minimum=0)
        check_config_ints(self, "WaveNet", ("classes",), 2, 2 ** 16, what=" (mu-law levels)")
        if self.kernel_size not in (2, 3):
            raise ValueError(f"WaveNet kernel_size must be 2 or 3, got {self.kernel_size!r}")
        if self.layers % self.cycles:
            raise ValueError(f"WaveNet layers ({self.layers}) must be a multiple of cycles ({self.cycles})")
        if self.gate_channels % 2:
            raise ValueError(f"WaveNet gate_channels must be even (tanh and sigmoid halves), got {self.gate_channels}")
        self.pre_emphasis = check_emphasis(self.pre_emphasis, "WaveNet pre_emphasis")
        per_cycle = self.layers // self.cycles
        self.dilations = [2 ** (i % per_cycle) for i in range(self.layers)]

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def to_dict(self) -> dict:
        config = asdict(self)
        del config["dilations"]  # derived
        return config


class WaveNetLayer(nn.Module):
    def __init__(self, config: WaveNetConfig, dilation: int, last: bool):
        super().__init__()
        c = config
        self.dilation = dilation
        self.conv = nn.Conv1d(c.residual_channels, c.gate_channels, c.kernel_size, dilation=dilation)
        half = c.gate_channels // 2
        self.res = None if last else nn.Conv1d(half, c.residual_channels, 1)
        self.skip = nn.Conv1d(half, c.skip_channels, 1)
        self.global_proj = nn.Linear(c.global_channels, c.gate_channels, bias=False) if c.global_classes else None
        self.local_proj = nn.Conv1d(c.local_channels, c.gate_channels, 1, bias=False) if c.local_channels else None

    def forward(self, x, cond_gate=None, fused: bool = False, skip_in=None):
        """x (B, R, T); cond_gate (B, G, T) or (B, G, 1) or None; skip_in (B, S, T) or None: the
        previous layers' skip sum -> (residual (B, R, T) or None, skip_in + this layer's skip (B, S, T)).

        ``fused``: run the layer as one Triton kernel (fastwave.ops.wavenet_block) instead of its
        torch composition; both compute the same function."""
        block = wavenet_block if fused else wavenet_block_reference
        res_weight, res_bias = (None, None) if self.res is None else (self.res.weight, self.res.bias)
        return block(x, self.conv.weight, self.conv.bias, res_weight, res_bias, self.skip.weight, self.skip.bias,
                     self.dilation, cond_gate, skip_in)


class WaveNet(SampleModel):
    """WaveNet over ``classes`` mu-law levels; see the module docstring for shapes and conditioning.

    ``fused`` (default True) runs each layer as one Triton kernel when the activations are on a GPU
    (fastwave.ops.wavenet_block; the ops backend decides, see fastwave.ops); False keeps the torch
    composition everywhere. It is a run-time choice, not part of the config or checkpoints."""

    model_type = "wavenet"
    config_class = WaveNetConfig

    def __init__(self, config: WaveNetConfig | None = None, *, fused: bool = True, **overrides):
        super().__init__(config, **overrides)
        self.fused = fused
        c = self.config
        self.embedding = nn.Embedding(c.classes, c.residual_channels)
        self.global_embedding = nn.Embedding(c.global_classes, c.global_channels) if c.global_classes else None
        self.layers = nn.ModuleList(
            WaveNetLayer(c, d, last=(i == c.layers - 1)) for i, d in enumerate(c.dilations))
        self.head = nn.ModuleList([nn.Conv1d(c.skip_channels, c.skip_channels, 1),
                                   nn.Conv1d(c.skip_channels, c.classes, 1)])

    @property
    def frame_hop(self) -> int:
        """Positions per local-conditioning frame: a window of the input must start on a multiple."""
        return self.config.cond_hop if self.config.local_channels else 1

    def forward(self, tokens, global_cond=None, local_cond=None):
        """tokens (B, T) int64 -> logits (B, classes, T); conditioning as in the module docstring."""
        skip, _ = self.trunk(tokens, global_cond, local_cond)
        return self.output_head(skip)

    def trunk(self, tokens, global_cond=None, local_cond=None, keep_layer_inputs=False):
        """The layers without the head: -> (skip sum (B, S, T), [layer input (B, R, T)] if kept)."""
        tokens = check_tokens(tokens, self.config.classes, "tokens")
        batch, length = tokens.shape
        cond = self.conditioning(batch, length, global_cond, local_cond, tokens.device)
        x = self.embedding(tokens).transpose(1, 2)
        fused = self.fused and use_triton(x)
        skip, layer_inputs = None, []
        for layer, cond_gate in zip(self.layers, cond):
            if keep_layer_inputs:
                layer_inputs.append(x)
            x, skip = layer(x, cond_gate, fused, skip)
        return skip, layer_inputs

    def output_head(self, skip):
        """skip (B, S, T) -> logits (B, classes, T)."""
        first, second = self.head
        return second(F.relu(first(F.relu(skip))))

    def conditioning(self, batch, length, global_cond, local_cond, device):
        """Per-layer terms added before the gate: a list of (B, G, T) / (B, G, 1) tensors or Nones."""
        c = self.config
        terms = [None] * c.layers
        if c.global_classes:
            ids = check_global_cond(global_cond, batch, c.global_classes, device)
            g = self.global_embedding(ids)  # (B, global_channels)
            terms = [layer.global_proj(g).unsqueeze(-1) for layer in self.layers]
        elif global_cond is not None:
            raise ValueError("global_cond was given but this WaveNet has global_classes=0")
        if c.local_channels:
            feats = check_local_cond(local_cond, batch, c.local_channels, length, c.cond_hop, device)
            frames = -(-length // c.cond_hop)
            feats = feats[:, :, :frames].to(self.embedding.weight.dtype)
            for i, layer in enumerate(self.layers):
                local = layer.local_proj(feats).repeat_interleave(c.cond_hop, dim=2)[:, :, :length]
                terms[i] = local if terms[i] is None else terms[i] + local
        elif local_cond is not None:
            raise ValueError("local_cond was given but this WaveNet has local_channels=0")
        return terms

    def prepare_cond(self, cond, batch: int, length: int) -> dict:
        """Validate generation conditioning (a dict of forward's keyword arguments) for ``length``
        positions -> {"global_cond": (B,) int64, "local_cond": (B, C, F) float32} on the model's device."""
        if cond is None:
            cond = {}
        if not isinstance(cond, dict):
            raise TypeError(f"cond must be a dict with keys global_cond / local_cond, got {type(cond).__name__}")
        unknown = set(cond) - {"global_cond", "local_cond"}
        if unknown:
            raise ValueError(f"cond has unknown keys {sorted(unknown)}; WaveNet takes global_cond, local_cond")
        c, device = self.config, self.embedding.weight.device
        out = {}
        if c.global_classes or cond.get("global_cond") is not None:
            if not c.global_classes:
                raise ValueError("cond['global_cond'] was given but this WaveNet has global_classes=0")
            out["global_cond"] = check_global_cond(cond.get("global_cond"), batch, c.global_classes, device)
        if c.local_channels or cond.get("local_cond") is not None:
            if not c.local_channels:
                raise ValueError("cond['local_cond'] was given but this WaveNet has local_channels=0")
            feats = check_local_cond(cond.get("local_cond"), batch, c.local_channels, length, c.cond_hop, device)
            out["local_cond"] = feats.float()
        return out

    def slice_cond(self, cond: dict, start: int) -> dict:
        """Forward keyword arguments (from ``prepare_cond``) for a window of the input starting at
        position ``start``, a multiple of ``frame_hop``."""
        out = dict(cond)
        if out.get("local_cond") is not None:
            out["local_cond"] = out["local_cond"][:, :, start // self.config.cond_hop:]
        return out

    # ---- exchange formats -------------------------------------------------------------------

    def export_weights(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The one weight format every native engine reads: (config, {name: contiguous float32 array}).

        Layout (R residual, G gate, H = G / 2, S skip, A classes, K kernel size, L layers):
          embedding                 (A, R)
          global_embedding          (global_classes, global_channels)   if global conditioning
          layers.{i}.conv_weight    (K, G, R)  tap k multiplies the layer input at t - (K-1-k) * d_i
          layers.{i}.conv_bias      (G,)       rows [0, H) feed tanh, rows [H, G) feed sigmoid
          layers.{i}.res_weight     (R, H)     absent for the last layer
          layers.{i}.res_bias       (R,)       absent for the last layer
          layers.{i}.skip_weight    (S, H)
          layers.{i}.skip_bias      (S,)
          layers.{i}.global_weight  (G, global_channels)                if global conditioning
          layers.{i}.local_weight   (G, local_channels)                 if local conditioning
          head.0.weight (S, S), head.0.bias (S,), head.1.weight (A, S), head.1.bias (A,)
        Every weight is row-major "out x in": y = W @ x + b. config adds "model", "dilations" and
        "receptive_field" to the constructor arguments.
        """
        def arr(t):
            return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

        weights = {"embedding": arr(self.embedding.weight)}
        if self.global_embedding is not None:
            weights["global_embedding"] = arr(self.global_embedding.weight)
        for i, layer in enumerate(self.layers):
            p = f"layers.{i}."
            weights[p + "conv_weight"] = arr(layer.conv.weight.permute(2, 0, 1))
            weights[p + "conv_bias"] = arr(layer.conv.bias)
            if layer.res is not None:
                weights[p + "res_weight"] = arr(layer.res.weight[:, :, 0])
                weights[p + "res_bias"] = arr(layer.res.bias)
            weights[p + "skip_weight"] = arr(layer.skip.weight[:, :, 0])
            weights[p + "skip_bias"] = arr(layer.skip.bias)
            if layer.global_proj is not None:
                weights[p + "global_weight"] = arr(layer.global_proj.weight)
            if layer.local_proj is not None:
                weights[p + "local_weight"] = arr(layer.local_proj.weight[:, :, 0])
        for j, conv in enumerate(self.head):
            weights[f"head.{j}.weight"] = arr(conv.weight[:, :, 0])
            weights[f"head.{j}.bias"] = arr(conv.bias)
        config = {"model": self.model_type, **self.config.to_dict(),
                  "dilations": list(self.config.dilations), "receptive_field": self.receptive_field}
        return config, weights

    def step_cost(self) -> tuple[int, int]:
        """(FLOPs, weight bytes) that one incremental step reads per stream at batch 1: the floor.

        Counts the matrices touched every sample (conv taps, residual, skip, head), 2 FLOPs per
        multiply-add, fp32 weights. Embedding rows and the conditioning projections (once per stream
        or per frame) are left out.
        """
        c = self.config
        half = c.gate_channels // 2
        per_layer = c.kernel_size * c.residual_channels * c.gate_channels + half * c.skip_channels
        macs = c.layers * per_layer + (c.layers - 1) * half * c.residual_channels
        macs += c.skip_channels * c.skip_channels + c.skip_channels * c.classes
        return 2 * macs, 4 * macs

    def state_bytes(self) -> int:
        """Bytes of cached state one incremental step reads per stream: each layer's K - 1 past
        inputs (fp32) from its ring buffer."""
        c = self.config
        return c.layers * (c.kernel_size - 1) * c.residual_channels * 4
