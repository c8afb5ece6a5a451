"""The C++ CPU engine for WaveNet (``engine="cpu"``): the whole generation loop in ``csrc/cpu``.

This wrapper only moves arrays across: the model's exported weights and conditioning go to
``fastwave._native.WaveNetCpuEngine`` once; then each chunk is one native call that runs every
sample, layer and sampling draw with the GIL released. The sampling contract is the same as every
other engine's (sample n of stream b uses Philox uniform (seed, n, b)), so the same seed gives the
same tokens as the torch engine, up to DESIGN's rounding exception.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from .sampling import SamplingParams


def _native():
    """The compiled module, imported on first use: the models and fastwave.ops work without it."""
    from .. import _native as native
    return native


def default_threads() -> int:
    """The physical cores this process may run on: the engine's default ``threads``."""
    return _native().physical_cores()


class CpuWaveNetEngine:
    """``cond`` holds ``global_cond`` / ``local_cond`` as ``WaveNet.prepare_cond`` returns them.

    threads: worker threads (default: physical cores). With batch >= threads each thread runs its
      own streams; with fewer streams than threads, threads share each layer's channels.
    isa: "auto" (the best the CPU supports, or $FASTWAVE_ISA) or one of ``_native.cpu_isas()``.
    """

    def __init__(self, model, batch: int, cond: dict, threads: int | None = None, isa: str = "auto"):
        config, weights = model.export_weights()
        global_cond, local_cond = cond.get("global_cond"), cond.get("local_cond")
        self.native = _native().WaveNetCpuEngine(
            config, weights, batch, default_threads() if threads is None else threads,
            global_cond=None if global_cond is None else _array(global_cond, np.int64),
            local_cond=None if local_cond is None else _array(local_cond, np.float32),
            isa=isa)

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> float32 logits (B, classes, T) from stepping every position, in
        ``model.forward``'s layout; leaves the engine ready to continue after the tokens."""
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
