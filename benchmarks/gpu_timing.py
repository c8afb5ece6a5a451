"""Timing helpers the GPU benchmark scripts share: the copy-bandwidth ceiling and CUDA-graph replay."""
from __future__ import annotations

import torch


def copy_bandwidth(device: str = "cuda") -> float:
    """GB/s of a device-to-device copy (bytes read + bytes written): 1 GiB on a GPU, a few MB on a
    CPU (where only the benchmarks' smoke tests run it)."""
    from triton.testing import do_bench
    src = torch.empty(2 ** 28 if device == "cuda" else 2 ** 20, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() * 4 / ms / 1e6


def cuda_graphed(fn):
    """``fn`` captured in a CUDA graph (after a warm-up on a side stream, as torch's docs do): its
    replay costs one launch, so what is timed is the GPU's work without Python's per-op overhead."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay
