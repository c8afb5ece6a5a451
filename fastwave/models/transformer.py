"""The sample-level Transformer over mu-law tokens (Verma & Chafe, 2021), and its context-conditioned
variant, as one nn.Module.

Shapes: tokens (B, T) int64 in [0, classes); logits (B, classes, T) where ``logits[:, :, t]`` is the
distribution of token t + 1 given tokens 0..t: the same contract as ``fastwave.WaveNet``, so every
tool that takes a sample model takes either.

The model: token embedding -> ``layers`` pre-norm blocks (rotary positions, causal attention on
``fastwave.ops.causal_attention``, GELU MLP) -> LayerNorm -> linear head over the classes. Defaults
are the paper's 3-layer model (4 heads, width 128). Each position attends to the last ``context``
positions, itself included. On sequences longer than that the attention is a sliding window
(a band), so the full forward over any length is exactly what the KV-cache engine computes when a
generation outgrows the context. Positions are rotary (see ``blocks.py``): scores depend only on
distance, so cached keys stay valid as the window slides, and nothing ties the model to a length.

Conditioned variant (``SampleTransformer.conditioned()``, ``cond_window`` > 0): the paper lets a CNN
summarise a longer past than the attention sees (250 ms) as a latent code. Here a causal CNN reads
the mu-law-decoded waveform in patches of ``cond_hop`` samples (a strided conv, i.e. a learned
filterbank), then causal dilated convs at the patch rate whose receptive field covers at least
``cond_window`` samples. Positions in block q = [q * cond_hop, (q + 1) * cond_hop) receive the latent
computed from the ``cond_window``-odd samples before q * cond_hop, projected to the width and *added
to the token embedding* (the fusion: an additive input code, like a position embedding, so every
layer and the KV cache see it and decoding costs nothing extra per sample). The latent changes once
per block, so a generator recomputes it once per ``cond_hop`` samples. Samples before the start of
the sequence read as silence (amplitude 0).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_config_ints, check_tokens
from ..audio import mulaw_decode
from ..audio.emphasis import check_emphasis
from ..ops import DilatedCausalConv1d
from .blocks import TransformerBlock, check_transformer_config, init_gpt_weights, run_blocks
from .sample_model import SampleModel


@dataclass
class SampleTransformerConfig:
    layers: int = 3
    heads: int = 4
    width: int = 128
    mlp_ratio: int = 4
    context: int = 1600  # positions each position attends to (itself included): 100 ms at 16 kHz
    classes: int = 256
    sample_rate: int = 16000
    rope_base: float = 10000.0
    dropout: float = 0.0
    cond_window: int = 0  # past samples the conditioning CNN summarises; 0: no conditioning
    cond_hop: int = 250  # samples per conditioning block (the CNN's patch)
    cond_channels: int = 64
    cond_kernel: int = 4  # the patch-rate convs: dilations 1, k, k^2, ... until they cover the window
    pre_emphasis: float = 0.0  # tokens are mu-law of pre_emphasis(audio, this); 0: of the audio itself

    def __post_init__(self):
        check_transformer_config(self, "SampleTransformer")
        check_config_ints(self, "SampleTransformer", ("sample_rate", "cond_hop", "cond_channels"))
        check_config_ints(self, "SampleTransformer", ("cond_window",), minimum=0)
        check_config_ints(self, "SampleTransformer", ("classes",), 2, 2 ** 16, what=" (mu-law levels)")
        check_config_ints(self, "SampleTransformer", ("cond_kernel",), 2, 4)
        self.pre_emphasis = check_emphasis(self.pre_emphasis, "SampleTransformer pre_emphasis")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def cond_dilations(self) -> list[int]:
        """Dilations of the patch-rate convs: 1, k, k^2, ... until k^m patches cover the window."""
        if not self.cond_window:
            return []
        patches, dilations = -(-self.cond_window // self.cond_hop), []
        while self.cond_kernel ** len(dilations) < patches:
            dilations.append(self.cond_kernel ** len(dilations))
        return dilations

    @property
    def cond_patches(self) -> int:
        """Patches of cond_hop samples each latent reads (>= cond_window / cond_hop)."""
        return self.cond_kernel ** len(self.cond_dilations) if self.cond_window else 0

    @property
    def receptive_field(self) -> int:
        """Tokens the newest logits can depend on: ``context`` per layer through the attention chain,
        plus, when conditioned, the CNN's patches before the earliest block reached and that block."""
        span = self.layers * (self.context - 1) + 1
        return span + (self.cond_patches + 1) * self.cond_hop if self.cond_window else span

    def to_dict(self) -> dict:
        return asdict(self)


class ContextEncoder(nn.Module):
    """The conditioned variant's causal CNN: waveform (B, S), S a multiple of hop -> latents (B, S / hop,
    width), where latent j reads patches j - cond_patches + 1 .. j of hop samples each."""

    def __init__(self, config: SampleTransformerConfig):
        super().__init__()
        c = config
        self.hop = c.cond_hop
        # The waveform value of every token, fixed: the CNN sees audio, not symbol ids.
        amplitude = mulaw_decode(np.arange(c.classes), classes=c.classes)  # numpy: also under the meta device
        self.register_buffer("amplitude", torch.tensor(amplitude), persistent=False)
        self.patch = nn.Conv1d(1, c.cond_channels, c.cond_hop, stride=c.cond_hop)
        self.convs = nn.ModuleList(DilatedCausalConv1d(c.cond_channels, c.cond_channels, c.cond_kernel, dilation=d)
                                   for d in c.cond_dilations)
        self.proj = nn.Linear(c.cond_channels, c.width)

    def forward(self, waveform):
        x = F.gelu(self.patch(waveform.unsqueeze(1).to(self.patch.weight.dtype)))  # (B, C, patches)
        for conv in self.convs:
            x = x + F.gelu(conv(x))
        return self.proj(x.transpose(1, 2))


class SampleTransformer(SampleModel):
    """GPT-style Transformer over ``classes`` mu-law levels; see the module docstring."""

    model_type = "transformer"
    config_class = SampleTransformerConfig

    def __init__(self, config: SampleTransformerConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.embedding = nn.Embedding(c.classes, c.width)
        self.context_encoder = ContextEncoder(c) if c.cond_window else None
        self.layers = nn.ModuleList(TransformerBlock(c.width, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.classes)
        init_gpt_weights(self, c.layers)

    @classmethod
    def conditioned(cls, cond_window: int = 4000, **overrides) -> SampleTransformer:
        """The context-conditioned variant: a causal CNN over the last ``cond_window`` samples
        (default 4,000 = 250 ms at 16 kHz) conditions every position (module docstring)."""
        return cls(cond_window=cond_window, **overrides)

    @property
    def frame_hop(self) -> int:
        """Positions per conditioning block: a window of the model's input must start on a multiple."""
        return self.config.cond_hop if self.config.cond_window else 1

    @property
    def burn_in(self) -> int:
        """Leading positions of an input whose latents read silence instead of the audio before it
        (the conditioning CNN's window); training leaves their predictions out of the loss."""
        return self.config.cond_patches * self.config.cond_hop

    def forward(self, tokens):
        """tokens (B, T) int64 -> logits (B, classes, T)."""
        x, _ = self.trunk(tokens)
        return self.head(self.norm(x)).transpose(1, 2)

    def trunk(self, tokens, keep_kv: bool = False, start: int = 0):
        """The blocks without the final norm and head -> (x (B, T, W), per layer (k, v) each
        (B, heads, T, head_dim) after rotation, if kept). ``start``: the absolute position of
        tokens[:, 0], which the rotary angles of cached keys must carry (a multiple of frame_hop;
        scores depend only on distances, so the outputs do not change with it)."""
        tokens = check_tokens(tokens, self.config.classes, "tokens")
        c = self.config
        length = tokens.shape[1]
        x = self.embedding(tokens)
        if self.context_encoder is not None:
            x = x + self.context_latents(tokens).repeat_interleave(c.cond_hop, dim=1)[:, :length]
        kv = [] if keep_kv else None
        x = run_blocks(self.layers, x, start=start, context=c.context, head_dim=c.head_dim,
                       rope_base=c.rope_base, kv=kv)
        return x, kv or []

    def context_latents(self, tokens):
        """tokens (B, T) -> (B, ceil(T / hop), W): block q's latent, from the samples before q * hop."""
        hop, patches = self.config.cond_hop, self.config.cond_patches
        blocks = -(-tokens.shape[1] // hop)
        # Silence before the sequence: block 0 reads `patches` patches of zeros, block q the patches
        # ending at sample q * hop, so output j of the padded waveform belongs to block j - patches + 1.
        waveform = F.pad(self.context_encoder.amplitude[tokens], (patches * hop, 0))
        waveform = waveform[:, :(blocks + patches - 1) * hop]
        return self.context_encoder(waveform)[:, patches - 1:]

    def output_head(self, x):
        """x (B, ..., W) from the blocks -> logits (B, ..., classes)."""
        return self.head(self.norm(x))

    def prepare_cond(self, cond, batch: int, length: int) -> dict:
        """The conditioned variant conditions on its own past audio: no external conditioning."""
        if cond:
            raise ValueError(f"a SampleTransformer takes no cond (got keys {sorted(cond)}); the conditioned "
                             "variant reads its own past samples")
        return {}

    def slice_cond(self, cond: dict, start: int) -> dict:
        """Forward keyword arguments for a window of the input starting at position ``start``."""
        return {}

    # ---- exchange formats -------------------------------------------------------------------

    def export_weights(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The weight format every engine reads: (config, {name: contiguous float32 array}).

        Layout (W width, F = mlp_ratio * W, A classes, D head_dim, C cond_channels, h cond_hop):
          embedding                 (A, W)
          layers.{i}.norm1_weight, layers.{i}.norm1_bias          (W,)   LayerNorm, eps 1e-5
          layers.{i}.qkv_weight     (3W, W)  rows [0, W) queries, [W, 2W) keys, [2W, 3W) values;
                                             head j owns rows j * D .. (j + 1) * D of each
          layers.{i}.qkv_bias       (3W,)
          layers.{i}.out_weight     (W, W),  layers.{i}.out_bias  (W,)
          layers.{i}.norm2_weight, layers.{i}.norm2_bias          (W,)
          layers.{i}.fc_weight      (F, W),  layers.{i}.fc_bias   (F,)   then GELU (erf form)
          layers.{i}.proj_weight    (W, F),  layers.{i}.proj_bias (W,)
          norm_weight, norm_bias    (W,)
          head_weight (A, W), head_bias (A,)
        Conditioned variant (cond_window > 0):
          context.amplitude         (A,)       the waveform value of each token
          context.patch_weight      (C, h), context.patch_bias (C,)   strided conv over hop-sample patches
          context.convs.{j}.weight  (K, C, C)  tap k multiplies patch j' - (K-1-k) * cond_dilations[j]
          context.convs.{j}.bias    (C,)       each conv: x + GELU(conv(x))
          context.proj_weight (W, C), context.proj_bias (W,)
        Every weight is row-major "out x in": y = W @ x + b. Queries and keys are rotated after the
        projection (rotary: features d and d + D/2 by position * rope_base ** (-2d / D)); scores are
        scaled by 1 / sqrt(D). config adds "model", "head_dim", "cond_dilations", "cond_patches" and
        "receptive_field" to the constructor arguments.
        """
        def arr(t):
            return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

        weights = {"embedding": arr(self.embedding.weight)}
        for i, block in enumerate(self.layers):
            p = f"layers.{i}."
            named = {"norm1": block.norm1, "qkv": block.attention.qkv, "out": block.attention.out,
                     "norm2": block.norm2, "fc": block.mlp.fc, "proj": block.mlp.proj}
            for name, module in named.items():
                weights[p + name + "_weight"] = arr(module.weight)
                weights[p + name + "_bias"] = arr(module.bias)
        weights["norm_weight"], weights["norm_bias"] = arr(self.norm.weight), arr(self.norm.bias)
        weights["head_weight"], weights["head_bias"] = arr(self.head.weight), arr(self.head.bias)
        if self.context_encoder is not None:
            enc = self.context_encoder
            weights["context.amplitude"] = arr(enc.amplitude)
            weights["context.patch_weight"] = arr(enc.patch.weight[:, 0])
            weights["context.patch_bias"] = arr(enc.patch.bias)
            for j, conv in enumerate(enc.convs):
                weights[f"context.convs.{j}.weight"] = arr(conv.weight.permute(2, 0, 1))
                weights[f"context.convs.{j}.bias"] = arr(conv.bias)
            weights["context.proj_weight"], weights["context.proj_bias"] = arr(enc.proj.weight), arr(enc.proj.bias)
        c = self.config
        config = {"model": self.model_type, **c.to_dict(), "head_dim": c.head_dim,
                  "cond_dilations": c.cond_dilations, "cond_patches": c.cond_patches,
                  "receptive_field": self.receptive_field}
        return config, weights

    def step_cost(self, filled: int | None = None) -> tuple[int, int]:
        """(FLOPs, weight bytes) of one decode step per stream at batch 1.

        filled: the positions in the cache when the step attends, its own included (the first step
          of a generation attends to 1, step t of an unprompted one to t + 1); past ``context`` the
          window slides and the step attends to ``context``. None (the default): the context full,
          the steady state of a long generation.

        Counts the matrices every sample touches (QKV, output, MLP, head) and the attention over the
        min(filled, context) cached positions (scores and the weighted sum: 2 * width multiply-adds
        per position and layer), 2 FLOPs per multiply-add, fp32 weights. The weight bytes do not
        depend on ``filled``; the attention FLOPs grow with it. The conditioning CNN (once per
        cond_hop samples), the embedding row, norms, rotary angles and the softmax are left out.
        """
        from .._checks import check_int_arg

        c = self.config
        attended = c.context if filled is None else min(check_int_arg(filled, "filled"), c.context)
        matrix_macs = c.layers * (4 * c.width * c.width + 2 * c.width * c.mlp_ratio * c.width) + c.width * c.classes
        attention_macs = c.layers * 2 * attended * c.width
        return 2 * (matrix_macs + attention_macs), 4 * matrix_macs

    def state_bytes(self, filled: int | None = None) -> int:
        """Bytes of cached state one decode step reads per stream: the fp32 keys and values of every
        layer at the min(filled, context) positions it attends to (``filled`` as in ``step_cost``;
        None: the context full). This, not the weights, dominates at long contexts: at the default
        1,600 positions it is 4,915,200 bytes against 2,490,368 of weights."""
        from .._checks import check_int_arg

        c = self.config
        attended = c.context if filled is None else min(check_int_arg(filled, "filled"), c.context)
        return c.layers * 2 * attended * c.width * 4
