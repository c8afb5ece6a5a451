"""The C++ CPU engine for WaveNet (``engine="cpu"``): the whole generation loop in ``csrc/cpu``
(``wavenet_engine.h``); the Python side is ``cpu_native.NativeCpuEngine``."""
from __future__ import annotations

import numpy as np

from .cpu_native import NativeCpuEngine, _array, _native, default_threads

__all__ = ["CpuWaveNetEngine", "default_threads"]


class CpuWaveNetEngine(NativeCpuEngine):
    """``cond`` holds ``global_cond`` / ``local_cond`` as ``WaveNet.prepare_cond`` returns them.

    threads: worker threads (default: physical cores). With batch >= threads each thread runs its
      own streams; with fewer streams than threads, threads share each layer's channels.
    isa: "auto" (the best the CPU supports, or $FASTWAVE_ISA) or one of ``_native.cpu_isas()``.
    precision: "fp32" (parity with the torch engine), "fp16" (matrices stored in half precision,
      arithmetic in fp32) or "int8" (int8 weights with a scale per output channel, inputs quantised
      per step and stream, integer dot products; csrc/cpu/int8_weights.h).
    """

    def __init__(self, model, batch: int, cond: dict, threads: int | None = None, isa: str = "auto",
                 precision: str = "fp32"):
        self._exported = model.export_weights()
        global_cond, local_cond = cond.get("global_cond"), cond.get("local_cond")
        self._options = dict(
            global_cond=None if global_cond is None else _array(global_cond, np.int64),
            local_cond=None if local_cond is None else _array(local_cond, np.float32), isa=isa,
            precision=precision)
        self._batch = batch
        super().__init__(threads)

    def _build(self, threads: int):
        return _native().WaveNetCpuEngine(*self._exported, self._batch, threads, **self._options)

    def _history_alignment(self) -> int | None:
        # Local features are read at absolute positions: a re-fed history would shift them.
        return None if self._options["local_cond"] is not None else 1
