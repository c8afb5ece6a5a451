"""The sampling contract every engine keeps, in vectorised torch.

This is the twin of ``csrc/common/philox.h`` and ``csrc/common/sampling.h``: the same seed, step
and stream give the same uniform bit for bit, and the same logits and uniform give the same token
(up to the one exception below), so every engine (naive, torch, cpu, cuda) produces the same audio
from the same seed.

RNG: Philox4x32-10 with key = the 64-bit seed as (low, high) 32-bit words and counter =
(step, stream, 0, 0); u = (first output word >> 8) * 2**-24, a float32 in [0, 1).

Policy, on float32 logits z of A classes:

* greedy (temperature 0 or top_k 1): argmax, lowest index on ties;
* otherwise, in float64: top-k keeps the k largest z (lower index first on ties: the same classes
  as the k largest z / temperature); w = exp((z - max kept z) / temperature), the max subtracted
  before dividing so that a tiny temperature gives weights 0 and 1 (greedy) instead of
  inf - inf = NaN; top-p keeps the smallest prefix of the kept classes, ordered by w
  descending (lower index first on ties), whose running sum reaches p * (sum of kept w); the token
  is the first kept class, in ascending index order, whose running sum of w exceeds u * (total),
  or the last kept class if rounding leaves none.

Every sum is a sequential left-to-right float64 ``cumsum``, as in the C++ code (on the CPU; a CUDA
scan may round differently). ``torch.exp``, ``std::exp`` and the C++ engines' vectorised exp
(``fastwave.engines._native.cpu_exp``, within an ulp of libm) can differ in the last bit, so they all
agree token for token except where u (or top_p) lands within rounding of a running-sum boundary,
the contract's one exception (not met once in the tests' 156,000 random draws). Classes that are
dropped get weight 0, which leaves every running sum bit-identical to summing the kept classes alone.
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass

import torch
from torch import Tensor

from ..ops.philox import MASK32, philox_rounds

__all__ = ["SamplingParams", "philox4x32", "philox_uniform", "sample_tokens"]

_UNIFORM_SCALE = 2.0**-24


def _require_uint32_words(words: Tensor, name: str) -> None:
    if not isinstance(words, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dtype int64, got {type(words).__name__}")
    if words.dtype != torch.int64:
        raise TypeError(f"{name} must have dtype torch.int64, got {words.dtype}")
    if words.numel() and bool(((words < 0) | (words > MASK32)).any()):
        raise ValueError(f"{name} must hold integers in [0, 2**32)")


def _require_last_dim(words: Tensor, name: str, size: int) -> None:
    if words.dim() == 0 or words.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}), got {tuple(words.shape)}")


def philox4x32(counter: Tensor, key: Tensor) -> Tensor:
    """Philox4x32-10 of counters under keys, for known-answer tests and other users of raw words.

    Args:
        counter: int64 (..., 4), uint32 words.
        key: int64 (2,) or (..., 2), uint32 words; broadcast against ``counter``'s leading dims.

    Returns:
        int64 (..., 4): the four uint32 output words per counter.
    """
    _require_uint32_words(counter, "counter")
    _require_uint32_words(key, "key")
    _require_last_dim(counter, "counter", 4)
    _require_last_dim(key, "key", 2)
    if key.device != counter.device:
        raise ValueError(f"key must be on counter's device {counter.device}, got {key.device}")
    words = philox_rounds(tuple(counter.unbind(-1)), tuple(key.unbind(-1)))
    return torch.stack(torch.broadcast_tensors(*words), dim=-1)


def _seed_words(seed: int) -> tuple[int, int]:
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}") from None
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    return seed & MASK32, seed >> 32


def _philox_uniform_unchecked(seed_words: tuple[int, int], steps: Tensor, streams: Tensor) -> Tensor:
    """philox_uniform without validation (no device syncs), for loops that know their inputs."""
    first_word = philox_rounds((steps, streams, 0, 0), seed_words)[0]
    # The top 24 bits are exactly what a float32 mantissa holds, so the scaling is exact.
    return (first_word >> 8).to(torch.float32) * _UNIFORM_SCALE


def philox_uniform(seed: int, steps: Tensor, streams: Tensor) -> Tensor:
    """The sampling uniforms of (step, stream) pairs under one seed.

    Args:
        seed: int in [0, 2**64).
        steps: int64 tensor, values in [0, 2**32).
        streams: int64 tensor broadcastable with ``steps``, values in [0, 2**32), same device.

    Returns:
        float32 tensor of the broadcast shape, on ``steps``' device, values in [0, 1).
    """
    seed_words = _seed_words(seed)
    _require_uint32_words(steps, "steps")
    _require_uint32_words(streams, "streams")
    if streams.device != steps.device:
        raise ValueError(f"streams must be on steps' device {steps.device}, got {streams.device}")
    steps, streams = torch.broadcast_tensors(steps, streams)
    return _philox_uniform_unchecked(seed_words, steps, streams)


# --------------------------------------------------------------------------------------------
# Sampling policy
# --------------------------------------------------------------------------------------------


def _is_real_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingParams:
    """How a token is drawn from logits.

    Attributes:
        temperature: >= 0; 0 means greedy (argmax).
        top_k: None (or 0) = off; otherwise keep the k most likely classes; 1 means greedy.
        top_p: None (or 1.0) = off; otherwise in (0, 1]: keep the smallest most-likely set whose
            probability reaches top_p.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not (_is_real_number(self.temperature) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ValueError(
                f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None:
            try:
                top_k = operator.index(self.top_k)
            except TypeError:
                top_k = -1
            if isinstance(self.top_k, bool) or top_k < 0:
                raise ValueError(f"top_k must be None or an integer >= 0, got {self.top_k!r}")
            object.__setattr__(self, "top_k", top_k)
        if self.top_p is not None and not (_is_real_number(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be None or a number in (0, 1], got {self.top_p!r}")
        object.__setattr__(self, "temperature", float(self.temperature))
        if self.top_p is not None:
            object.__setattr__(self, "top_p", float(self.top_p))

    @property
    def greedy(self) -> bool:
        """True when the policy is argmax: temperature 0 or top_k 1."""
        return self.temperature == 0 or self.top_k == 1

    def native_args(self) -> tuple[float, int, float]:
        """(temperature, top_k with 0 = off, top_p with 1.0 = off), as the native core takes them."""
        return self.temperature, self.top_k or 0, 1.0 if self.top_p is None else self.top_p


def _require_sampling_inputs(logits: Tensor, u: Tensor, params: SamplingParams) -> None:
    if not isinstance(params, SamplingParams):
        raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
    for name, tensor in (("logits", logits), ("u", u)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of dtype float32, got {type(tensor).__name__}")
        if tensor.dtype != torch.float32:
            raise TypeError(f"{name} must have dtype torch.float32, got {tensor.dtype}")
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape (batch, num_classes) with num_classes >= 1, "
                         f"got {tuple(logits.shape)}")
    if u.shape != logits.shape[:1]:
        raise ValueError(f"u must have shape (batch,) = ({logits.shape[0]},) to match logits, "
                         f"got {tuple(u.shape)}")
    if u.device != logits.device:
        raise ValueError(f"u must be on logits' device {logits.device}, got {u.device}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits must be finite")
    if not bool(((u >= 0) & (u < 1)).all()):  # NaN fails both comparisons
        raise ValueError("u must hold values in [0, 1)")


def _class_indices(like: Tensor) -> Tensor:
    return torch.arange(like.shape[-1], device=like.device).expand_as(like)


def _argmax_lowest_index(logits: Tensor) -> Tensor:
    # Spelled out rather than trusting torch.argmax's tie rule on every device.
    is_max = logits == logits.amax(dim=-1, keepdim=True)
    return torch.where(is_max, _class_indices(logits), logits.shape[-1]).amin(dim=-1)


def _heaviest_first(values: Tensor) -> Tensor:
    """Class indices by value descending, lower index first on ties."""
    return torch.sort(values, dim=-1, descending=True, stable=True).indices


def _top_k_mask(logits: Tensor, k: int) -> Tensor:
    order = _heaviest_first(logits)
    return torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order[:, :k], True)


def _top_p_mask(weights: Tensor, top_p: float) -> Tensor:
    order = _heaviest_first(weights)
    running = weights.gather(-1, order).cumsum(dim=-1)
    reached = running >= top_p * running[:, -1:]
    # Running sums never decrease, so `reached` is False...True...: keep up to the first True.
    keep_sorted = torch.cat([torch.ones_like(reached[:, :1]), ~reached[:, :-1]], dim=-1)
    return torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)


def _draw_kept(weights: Tensor, kept: Tensor, u: Tensor) -> Tensor:
    running = weights.cumsum(dim=-1)
    threshold = u.to(torch.float64).unsqueeze(-1) * running[:, -1:]
    hit = (running > threshold) & kept
    num_classes = weights.shape[-1]
    indices = _class_indices(weights)
    first_hit = torch.where(hit, indices, num_classes).amin(dim=-1)
    last_kept = torch.where(kept, indices, -1).amax(dim=-1)
    return torch.where(first_hit < num_classes, first_hit, last_kept)


def sample_tokens(logits: Tensor, u: Tensor, params: SamplingParams) -> Tensor:
    """One token per row, drawn from ``logits`` with the uniform ``u`` under ``params``.

    Args:
        logits: float32 (B, A), finite.
        u: float32 (B,), values in [0, 1), same device (see ``philox_uniform``).
        params: the sampling policy.

    Returns:
        int64 (B,): tokens in [0, A), identical to ``fastwave.engines._native.sample_tokens``.
    """
    _require_sampling_inputs(logits, u, params)
    return _sample_tokens_unchecked(logits, u, params)


def _sample_tokens_unchecked(logits: Tensor, u: Tensor, params: SamplingParams) -> Tensor:
    """sample_tokens without validation (no device syncs), for loops that know their inputs."""
    if params.greedy:
        return _argmax_lowest_index(logits)
    temperature, top_k, top_p = params.native_args()
    logits = logits.to(torch.float64)
    if 0 < top_k < logits.shape[-1]:
        kept = _top_k_mask(logits, top_k)
    else:
        kept = torch.ones_like(logits, dtype=torch.bool)
    logits = logits.masked_fill(~kept, -math.inf)
    # Subtract the max before dividing (see the module docstring); dropped classes: exp(-inf) = 0.
    weights = torch.exp((logits - logits.amax(dim=-1, keepdim=True)) / temperature)
    if top_p < 1:
        kept &= _top_p_mask(weights, top_p)
        weights = weights.masked_fill(~kept, 0.0)
    return _draw_kept(weights, kept, u)
