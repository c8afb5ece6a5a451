"""A causal Transformer over audio codes (Verma & Smith, 2020): the language model half of the
"audio as a language" pipeline (``fastwave.CodeTokenizer`` turns audio into codes).

Shapes: codes (B, T) int64 in [0, classes) where ``classes`` is the tokenizer's number of codes;
``forward`` -> logits (B, classes, T), ``logits[:, :, t]`` predicting code t + 1 — the contract of
the sample models, so the sample models' training and scoring apply unchanged
(``fastwave.codes.train_code_lm``, ``fastwave.codes.code_lm_metrics``). ``embed`` -> (N, width), one
vector per clip: by default the final hidden states (after the last norm) averaged over the clip,
the representation a linear probe reads; ``layer=`` reads an earlier block's output and
``pooling=`` adds the max or the std over the clip (a probe's sweep chooses them on validation).

The blocks are the sample Transformer's (``blocks.py``: rotary positions, causal attention on
``fastwave.ops.causal_attention``, pre-norm, GELU MLP); positions past ``context`` attend over a
sliding window, so clips of any length run.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .._checks import check_config_ints, check_int_arg, check_tokens, token_streams
from .blocks import TransformerBlock, check_transformer_config, init_gpt_weights, run_blocks
from .checkpoint import ConfiguredModule

POOLINGS = ("mean", "mean+max", "mean+std")  # how ``CodeLM.pooled`` turns a clip's states into one vector


@dataclass
class CodeLMConfig:
    classes: int = 16  # the tokenizer's number of codes (Verma & Smith's example dictionary has 16)
    layers: int = 4
    heads: int = 4
    width: int = 128
    mlp_ratio: int = 4
    context: int = 256  # codes each position attends to: 10 s of audio at the tokenizer's 25 codes/s
    rope_base: float = 10000.0
    dropout: float = 0.0

    def __post_init__(self):
        check_transformer_config(self, "CodeLM")
        check_config_ints(self, "CodeLM", ("classes",), 2, 2 ** 16, what=" (codes)")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def receptive_field(self) -> int:
        return self.layers * (self.context - 1) + 1

    def to_dict(self) -> dict:
        return asdict(self)


class CodeLM(ConfiguredModule):
    """GPT over codes; see the module docstring. ``CodeLM(classes=64, layers=6)`` or from a config."""

    model_type = "code_lm"
    config_class = CodeLMConfig

    def __init__(self, config: CodeLMConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.embedding = nn.Embedding(c.classes, c.width)
        self.layers = nn.ModuleList(TransformerBlock(c.width, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.classes)
        init_gpt_weights(self, c.layers)

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    def hidden(self, codes, layer: int | None = None) -> torch.Tensor:
        """codes (B, T) -> hidden states (B, T, width). ``layer`` None (or ``layers``): the final
        states, after the last norm. 0 .. layers - 1: the residual stream after that many blocks (0:
        the code embeddings), un-normed; only those blocks run."""
        codes = check_tokens(codes, self.config.classes, "codes")
        return self.hidden_from(self.embedding(codes), layer)

    def hidden_from(self, x, layer: int | None = None) -> torch.Tensor:
        """``hidden`` from inputs already in the model's width: x (B, T, width) float in place of the
        code embeddings -> (B, T, width). A network that reads vectors instead of codes (the
        supervised baseline on the tokenizer's bottleneck) runs the same blocks through it."""
        c = self.config
        if x.ndim != 3 or x.shape[-1] != c.width:
            raise ValueError(f"x must be (B, T, width={c.width}), got {tuple(x.shape)}")
        layer = self._check_layer(layer)
        x = run_blocks(self.layers[:layer], x, start=0, context=c.context, head_dim=c.head_dim, rope_base=c.rope_base)
        return self.norm(x) if layer == c.layers else x

    def forward(self, codes) -> torch.Tensor:
        """codes (B, T) int64 -> logits (B, classes, T)."""
        return self.head(self.hidden(codes)).transpose(1, 2)

    def pooled(self, codes, lengths=None, *, layer: int | None = None, pooling: str = "mean") -> torch.Tensor:
        """codes (B, T), the first ``lengths[b]`` (1 <= lengths[b] <= T) of row b real -> (B, width)
        (or (B, 2 * width) for the paired poolings): the ``hidden(codes, layer)`` states over those
        positions pooled by ``pooling`` (one of ``POOLINGS``); differentiable (the supervised baseline
        trains through it). Padding after a clip cannot change its states: attention is causal."""
        return pool_states(self.hidden(codes, layer), lengths, pooling)

    def _check_layer(self, layer) -> int:
        if layer is None:
            return self.config.layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= self.config.layers:
            raise ValueError(f"layer must be None or an int in [0, {self.config.layers}] (0: the embeddings, "
                             f"{self.config.layers}: the final normed states), got {layer!r}")
        return layer

    @torch.no_grad()
    def embed(self, codes, batch_size: int = 64, *, layer: int | None = None, pooling: str = "mean") -> torch.Tensor:
        """One vector per clip: codes (T,), (N, T) or a list of N 1-D clips of any lengths >= 1 ->
        (N, width) float32 on the CPU ((N, 2 * width) for the paired poolings); ``layer`` and
        ``pooling`` as ``pooled``. Runs in eval mode (dropout off; the mode is restored)."""
        clips = code_clips(codes, self.config.classes)
        batch_size = check_int_arg(batch_size, "batch_size")
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            order = sorted(range(len(clips)), key=lambda i: len(clips[i]))  # similar lengths pad little
            vectors = [None] * len(clips)
            for first in range(0, len(order), batch_size):
                chunk = order[first:first + batch_size]
                rows, lengths = pad_clips([clips[i] for i in chunk])
                pooled = self.pooled(rows.to(device), lengths, layer=layer, pooling=pooling).float().cpu()
                for row, i in enumerate(chunk):
                    vectors[i] = pooled[row]
        finally:
            self.train(was_training)
        return torch.stack(vectors)


def pool_states(states, lengths=None, pooling: str = "mean") -> torch.Tensor:
    """states (B, T, D), the first ``lengths[b]`` (1 <= lengths[b] <= T; None: all T) of row b real ->
    (B, D), or (B, 2 * D) for the paired poolings: ``CodeLM.pooled``'s pooling, for any network's
    states; differentiable."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if lengths is None and pooling == "mean":
        return states.mean(1)
    if lengths is None:
        lengths = [states.shape[1]] * states.shape[0]
    lengths = torch.as_tensor(lengths, device=states.device)
    if lengths.shape != (states.shape[0],) or bool((lengths < 1).any()) or bool((lengths > states.shape[1]).any()):
        raise ValueError(f"lengths must be (B,) = ({states.shape[0]},) ints in [1, {states.shape[1]}], "
                         f"got {lengths.tolist()}")
    mask = (torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None])[..., None]
    count = lengths[:, None].to(states.dtype)
    mean = (states * mask).sum(1) / count
    if pooling == "mean":
        return mean
    if pooling == "mean+max":
        return torch.cat([mean, states.masked_fill(~mask, -torch.inf).amax(1)], dim=1)
    variance = ((states - mean[:, None]).pow(2) * mask).sum(1) / count  # population variance over the clip
    return torch.cat([mean, variance.clamp_min(1e-12).sqrt()], dim=1)  # the floor keeps sqrt's gradient finite


def pad_clips(clips: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Clips (T_i, ...) of one dtype and trailing shape (1-D codes, or (T_i, D) vectors) -> (rows (N,
    longest, ...) of their dtype, zero-padded at the end (code 0 for codes), lengths)."""
    lengths = [len(clip) for clip in clips]
    rows = torch.zeros(len(clips), max(lengths), *clips[0].shape[1:], dtype=clips[0].dtype)
    for row, clip in enumerate(clips):
        rows[row, :len(clip)] = clip
    return rows, lengths


def code_clips(codes, classes: int, name: str = "codes", min_length: int = 1) -> list[torch.Tensor]:
    """(T,), (N, T) or a list of 1-D code sequences -> list of int64 CPU tensors, each at least
    ``min_length`` long and in [0, classes)."""
    if isinstance(codes, (list, tuple)) and not codes:
        raise ValueError(f"{name} holds no clips")
    return token_streams(codes, classes, name, min_length=min_length)
