"""Shared helpers for the op tests: the devices / dtypes the kernels can run on here (error metrics
and random cases live in fastwave.ops.verify, shared with the GPU benchmark)."""
import importlib.util

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def kernel_targets():
    """(device, dtype) pairs the kernels can be tested on: the interpreter on the CPU (fp32, fp16; it
    has no bf16), and on a GPU every dtype."""
    if torch.cuda.is_available():
        return [("cuda", torch.float32), ("cuda", torch.float16), ("cuda", torch.bfloat16)]
    return [("cpu", torch.float32), ("cpu", torch.float16)]


def run_do_bench_once(monkeypatch) -> list:
    """Replace triton.testing.do_bench with one call of the function timed as 1 ms, for the GPU
    benchmarks' smoke tests on the CPU -> the list of functions it was called with."""
    import triton.testing
    calls = []

    def run_once(fn, **kwargs):
        fn()
        calls.append(fn)
        return 1.0

    monkeypatch.setattr(triton.testing, "do_bench", run_once)
    return calls
