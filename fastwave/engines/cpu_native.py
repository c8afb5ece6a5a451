"""What the C++ CPU engines (``engine="cpu"``) share on the Python side: the compiled module, the
default thread count, and the loop around a native engine object.

A wrapper only moves arrays across: the model's exported weights go to the native engine once;
then each chunk is one native call that runs every sample, layer and sampling draw with the GIL
released. The sampling contract is every engine's (sample n of stream b uses Philox uniform
(seed, n, b)), so the same seed gives the same tokens as the torch engine, up to DESIGN's rounding
exception.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
import torch

from .sampling import SamplingParams


def _native():
    """The compiled module, imported on first use: the models and fastwave.ops work without it."""
    from .. import _native as native
    return native


def default_threads() -> int:
    """The physical cores this process may run on: the engines' default ``threads``."""
    return _native().physical_cores()


def engine_threads(threads: int | None) -> int:
    """The thread count to hand a native engine: ``threads`` (the default when None), capped at the
    CPUs this process may use, saying so once per call site: a thread beyond them would only wait
    for a core, and at every exchange the others would wait for it."""
    if threads is None:
        return default_threads()
    usable = _native().usable_cpus()
    if threads > usable:
        warnings.warn(f"threads={threads} is more than the {usable} CPUs this process may use; "
                      f"the C++ engine runs {usable}", RuntimeWarning, stacklevel=4)
        return usable
    return threads


class NativeCpuEngine:
    """Base of the C++ engine wrappers; subclasses set ``self.native`` (a ``fastwave._native`` engine)."""

    native: object

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> float32 logits (B, classes, T) at every position, in ``model.forward``'s
        layout; leaves the engine ready to continue after the tokens."""
        logits = self.native.prefill(_array(tokens, np.int64), return_logits=True)
        return torch.from_numpy(logits).permute(0, 2, 1)

    def chunks(self, prompt: torch.Tensor, n_samples: int, chunk_size: int,
               params: SamplingParams, seed: int) -> Iterator[torch.Tensor]:
        """Yield int64 CPU chunks (B, <= chunk_size) of the n_samples tokens after the prompt."""
        self.native.prefill(_array(prompt, np.int64))
        temperature, top_k, top_p = params.native_args()
        for start in range(0, n_samples, chunk_size):
            count = min(chunk_size, n_samples - start)
            tokens = self.native.generate(count, seed, start, temperature, top_k, top_p,
                                          final=start + count == n_samples)
            yield torch.from_numpy(tokens)


def _array(tensor: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)
