"""The sampling loop shared by the engines that step in Python (naive, torch).

A step engine turns tokens into next-token logits: ``prefill(prompt)`` runs the whole prompt and
``step(tokens)`` one more position (``sample_and_step`` draws and steps; an engine that captures a
CUDA graph overrides it so that sampling is inside the graph too). This base class runs the loop
around them with the shared sampling contract: the uniform for generated sample n of stream b is
``philox_uniform(seed, n, b)``, so the audio depends on the seed only, never on the engine or the
chunk size.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .sampling import SamplingParams, _philox_uniform_unchecked, _sample_tokens_unchecked, _seed_words


class StepEngine:
    """Base for Python-stepped engines. Subclasses set ``self.device`` and implement prefill/step."""

    device: torch.device

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (B, P) int64 -> logits (B, classes) predicting the token after the prompt."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B,) int64, the next position -> logits (B, classes) predicting the one after."""
        raise NotImplementedError

    def chunks(self, prompt: torch.Tensor, n_samples: int, chunk_size: int,
               params: SamplingParams, seed: int) -> Iterator[torch.Tensor]:
        """Yield int64 CPU chunks (B, <= chunk_size) of the n_samples tokens after the prompt."""
        batch = prompt.shape[0]
        streams = torch.arange(batch, device=self.device)
        seed_words = _seed_words(seed)
        # generate() validated every input and the weights once; the loop skips per-step checks,
        # which would cost a device sync per sample on a GPU.
        with exact_fp32():
            logits = self.prefill(prompt.to(self.device))
        for start in range(0, n_samples, chunk_size):
            count = min(chunk_size, n_samples - start)
            out = torch.empty(batch, count, dtype=torch.long, device=self.device)
            # Logits that overflowed (inf or NaN) would all sample one token: flagged on the device
            # at each step, checked once per chunk (no sync per sample), raised instead of yielded.
            finite = torch.ones((), dtype=torch.bool, device=self.device)
            with exact_fp32():  # entered per chunk: the caller's settings hold between yields
                # One vectorised Philox call per chunk instead of ~100 small ops per sample.
                steps = torch.arange(start, start + count, device=self.device)
                uniforms = _philox_uniform_unchecked(seed_words, steps[:, None], streams[None, :])  # (count, B)
                for i in range(count):
                    finite &= torch.isfinite(logits).all()
                    if start + i + 1 < n_samples:
                        tokens, logits = self.sample_and_step(logits, uniforms[i], params)
                    else:  # the last sample: nothing reads a further step
                        tokens = _sample_tokens_unchecked(logits, uniforms[i], params)
                    out[:, i] = tokens
            if not bool(finite):
                raise ValueError(f"the model's logits became non-finite (inf or NaN) within samples {start}-"
                                 f"{start + count - 1}: its activations overflow float32 (check the weights)")
            yield out.cpu()

    def sample_and_step(self, logits: torch.Tensor, u: torch.Tensor, params: SamplingParams):
        """Draw the next tokens (B,) from logits (B, classes) with uniforms u (B,), and step them
        -> (tokens, the next logits). One method, so an engine can run both as one CUDA graph."""
        tokens = _sample_tokens_unchecked(logits, u, params)
        return tokens, self.step(tokens)


@contextlib.contextmanager
def exact_fp32():
    """TF32 off for cuDNN convolutions and CUDA matmuls (cuDNN allows it by default), so that the
    parallel passes (naive engine, prompt prefill) and the per-step matmuls round alike: parity
    at fp32 means fp32. Restores the caller's settings."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
