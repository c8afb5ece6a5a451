"""What the C++ CPU engines (``engine="cpu"``) share on the Python side: the compiled module, the
default thread count, and the loop around a native engine object.

A wrapper only moves arrays across: the model's exported weights go to the native engine once;
then each chunk is one native call that runs every sample, layer and sampling draw with the GIL
released. The sampling contract is every engine's (sample n of stream b uses Philox uniform
(seed, n, b)), so the same seed gives the same tokens as the torch engine, up to the contract's one
rounding exception (fastwave/engines/sampling.py).
"""
from __future__ import annotations

import time
import warnings
from typing import Iterator

import numpy as np
import torch

from .sampling import SamplingParams


def _native():
    """The compiled module, imported on first use: the models and fastwave.ops work without it."""
    from . import _native as native
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
    if isinstance(threads, int) and threads > usable:  # anything else: the engine refuses it by name
        warnings.warn(f"threads={threads} is more than the {usable} CPUs this process may use; "
                      f"the C++ engine runs {usable}", RuntimeWarning, stacklevel=4)
        return usable
    return threads


class NativeCpuEngine:
    """Base of the C++ engine wrappers. A subclass calls ``__init__(threads)`` once it can build
    native engines, and implements ``_build(threads)`` (a ``fastwave.engines._native`` engine) and
    ``_history_alignment()``.

    Shedding threads on a busy machine: when threads share each stream (batch < threads), every
    step waits for all of them several times, so one thread descheduled by another process stalls
    the rest. Generation therefore runs in calls of ``RECHECK_STEPS`` samples, and after each
    reads the native engine's ``late_waits``; when more than ``LATE_WAITS_PER_STEP`` of the steps
    found a partner late, it moves to a team of half the threads, and later tries the full team
    again (after ``RETRY_SECONDS``, doubling while it keeps losing). Moving feeds the new team the
    tokens of the last receptive field, which leaves the same state (prefill's contract): the
    tokens stay those of any thread count, up to the sampling contract's rounding exception. An
    int8 engine keeps its team: there a different split of a stream changes its rounding visibly
    (docs/generation.md, "fp16 and int8 weights"), and the same seed and ``threads`` must give the
    same audio on a busy machine too.
    """

    native: object
    RECHECK_STEPS = 256
    LATE_WAITS_PER_STEP = 0.05
    RETRY_SECONDS = 2.0

    def __init__(self, threads: int | None):
        self.native = self._build(engine_threads(threads))
        self._teams = {self.native.threads: self.native}
        self._full_threads = self.native.threads

    def _build(self, threads: int):
        raise NotImplementedError

    def _history_alignment(self) -> int | None:
        """Positions a re-fed history must start on a multiple of (1: any), or None when the
        state depends on absolute positions (then the team never changes)."""
        raise NotImplementedError

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> float32 logits (B, classes, T) at every position, in ``model.forward``'s
        layout; leaves the engine ready to continue after the tokens."""
        logits = self.native.prefill(_array(tokens, np.int64), return_logits=True)
        return torch.from_numpy(logits).permute(0, 2, 1)

    def chunks(self, prompt: torch.Tensor, n_samples: int, chunk_size: int,
               params: SamplingParams, seed: int) -> Iterator[torch.Tensor]:
        """Yield int64 CPU chunks (B, <= chunk_size) of the n_samples tokens after the prompt."""
        prompt = _array(prompt, np.int64)
        self.native.prefill(prompt)
        history = self._history(prompt)
        call = self.RECHECK_STEPS if history is not None else chunk_size  # samples per native call
        temperature, top_k, top_p = params.native_args()
        for start in range(0, n_samples, chunk_size):
            end = min(start + chunk_size, n_samples)
            parts = []
            for step in range(start, end, call):
                count = min(call, end - step)
                final = step + count == n_samples
                late = self.native.late_waits
                parts.append(self.native.generate(count, seed, step, temperature, top_k, top_p, final=final))
                if history is not None and not final:
                    history.add(parts[-1])
                    self._reconsider(self.native.late_waits - late, count, history)
            yield torch.from_numpy(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])

    def _history(self, prompt: np.ndarray):
        """The tokens to keep for moving between teams, or None when the team cannot change."""
        alignment = self._history_alignment()
        native = self.native
        if alignment is None or native.threads == 1 or native.batch >= native.threads:
            return None  # no stream is shared between threads: nothing waits for a partner
        if native.precision == "int8":
            return None  # another split of a stream changes how int8 rounds it: keep the audio instead
        self._retry_after, self._retry_at = self.RETRY_SECONDS, 0.0  # a new run: no back-off yet
        return _History(prompt, native.receptive_field, alignment)

    def _reconsider(self, late_waits: int, steps: int, history) -> None:
        now = time.monotonic()
        threads = self.native.threads
        if threads > 1 and late_waits > self.LATE_WAITS_PER_STEP * steps:
            if threads == self._full_threads and self._retry_at:  # the full team lost again
                self._retry_after = min(2 * self._retry_after, 60.0)
            self._switch(threads // 2, history)
            self._retry_at = now + self._retry_after
        elif threads < self._full_threads and now >= self._retry_at:
            self._switch(self._full_threads, history)

    def _switch(self, threads: int, history) -> None:
        if threads not in self._teams:
            self._teams[threads] = self._build(threads)
        self.native = self._teams[threads]
        self.native.prefill(history.tokens())


class _History:
    """The last tokens of each stream, enough to rebuild the state: at least ``keep`` of them,
    starting on a multiple of ``alignment`` of the stream's positions."""

    def __init__(self, prompt: np.ndarray, keep: int, alignment: int):
        self.keep, self.alignment = keep, alignment
        self.start = 0  # position of tokens[:, 0]
        self.tokens_ = prompt

    def add(self, tokens: np.ndarray) -> None:
        joined = np.concatenate([self.tokens_, tokens], axis=1)
        end = self.start + joined.shape[1]
        start = max(self.start, (end - self.keep) // self.alignment * self.alignment)
        self.tokens_ = joined[:, start - self.start:]
        self.start = start

    def tokens(self) -> np.ndarray:
        return np.ascontiguousarray(self.tokens_)


def _array(tensor: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)
