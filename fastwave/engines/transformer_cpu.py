"""The C++ CPU engine for the sample Transformer and its conditioned variant (``engine="cpu"``):
KV-cache decoding in ``csrc/cpu`` (``transformer_engine.h``); the Python side is
``cpu_native.NativeCpuEngine``."""
from __future__ import annotations

from .cpu_native import NativeCpuEngine, _native


class CpuTransformerEngine(NativeCpuEngine):
    """``cond`` is empty (the sample Transformer takes none; the conditioned variant reads its own past).

    threads: worker threads (default: physical cores). With batch >= threads each thread runs its
      own streams; with fewer streams than threads, threads share each layer's heads and MLP units.
    isa: "auto" (the best the CPU supports, or $FASTWAVE_ISA) or one of ``_native.cpu_isas()``.
    precision: "fp32" (parity with the torch engine), "fp16" (matrices and KV cache stored in half
      precision, arithmetic in fp32: half the bytes each step streams) or "int8" (int8 matrices with a
      scale per output channel and integer dot products; an int8 KV cache with a scale per position and
      head, scores as integer dot products, the weighted sum of values in fp32; csrc/cpu/transformer_plan.h).
    """

    def __init__(self, model, batch: int, cond: dict, threads: int | None = None, isa: str = "auto",
                 precision: str = "fp32"):
        self._exported = model.export_weights()
        self._batch, self._options = batch, dict(isa=isa, precision=precision)
        config = model.config
        # The conditioned variant's CNN runs on blocks of cond_hop samples counted from the start.
        self._alignment = config.cond_hop if config.cond_window > 0 else 1
        super().__init__(threads)

    def _build(self, threads: int):
        return _native().TransformerCpuEngine(*self._exported, self._batch, threads, **self._options)

    def _history_alignment(self) -> int | None:
        return self._alignment
