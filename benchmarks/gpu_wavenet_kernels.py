"""The fused WaveNet kernels on a GPU: correctness on the device first, then speed against the torch
composition (F.conv1d, tanh * sigmoid, 1x1 convs), per layer and for the whole 20-layer stack.

    python benchmarks/gpu_wavenet_kernels.py [--json results.json] [--dtypes fp32,bf16] [--sweep]
    python benchmarks/gpu_wavenet_kernels.py --check-only     # also on a CPU, with TRITON_INTERPRET=1

It imports fastwave from this checkout and needs neither the native module nor a pip install.
Timing: ``triton.testing.do_bench`` (median of its repetitions, after its warm-up) on B=8, T=16384,
residual 64, gate 128, skip 128 (activations far larger than L2). Each layer is timed at dilations
1..512; the stack is the default WaveNet's trunk (2 cycles of dilations 1..512, embedding included,
output head not), timed as launched from Python (eager) and replayed from a CUDA graph (the GPU's work
alone, without Python's per-operator launch overhead, which both implementations pay). Bandwidth: "effective GB/s" counts the bytes a layer cannot avoid (forward: read x,
write residual and skip; backward adds: read x and the two output gradients, write dx), so both
implementations are measured against the same work, next to the copy bandwidth measured here.
fp32 runs with TF32 allowed for both implementations (torch's convolution default); the correctness
check runs fp32 exactly (TF32 off).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # gpu_timing, also when this file is loaded by path

import torch  # noqa: E402
from gpu_timing import copy_bandwidth, cuda_graphed  # noqa: E402

from fastwave.engines.step_engine import exact_fp32  # noqa: E402
from fastwave.ops import backend, wavenet_block, wavenet_block_reference  # noqa: E402
from fastwave.ops.verify import TOLERANCE, block_errors, random_block, worst  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LAYER = dict(batch=8, length=16384, residual=64, gate=128, skip=128)
DEVICE = "cuda"  # the timing functions' device (a smoke test runs them on the CPU with tiny shapes)
DILATIONS = [2 ** i for i in range(10)]

# Candidate tilings for --sweep: the configurations that compile for sm_90 without spills
# (benchmarks/triton_resources.py), beside the defaults.
SWEEP = {
    "block_forward": [dict(BLOCK_T=32, BLOCK_H=16, BLOCK_J=32), dict(BLOCK_T=64, BLOCK_H=16, BLOCK_J=16),
                      dict(BLOCK_T=64, BLOCK_H=32, BLOCK_J=32), dict(BLOCK_T=32, BLOCK_H=16, BLOCK_J=16)],
    "block_backward": [dict(BLOCK_T=32, BLOCK_H=16, BLOCK_J=32), dict(BLOCK_T=64, BLOCK_H=16, BLOCK_J=32),
                       dict(BLOCK_T=64, BLOCK_H=32, BLOCK_J=16), dict(BLOCK_T=64, BLOCK_H=16, BLOCK_J=64)],
    "matmul": [dict(BLOCK_M=128, BLOCK_J=32, BLOCK_T=64), dict(BLOCK_M=64, BLOCK_J=16, BLOCK_T=128),
               dict(BLOCK_M=64, BLOCK_J=32, BLOCK_T=128)],
    "outer_sum": [dict(BLOCK_M=64, BLOCK_J=32, BLOCK_T=64), dict(BLOCK_M=128, BLOCK_J=32, BLOCK_T=32),
                  dict(BLOCK_M=128, BLOCK_J=64, BLOCK_T=32)],
}


# ---- correctness -------------------------------------------------------------------------------

def check(device: str, dtypes: list[torch.dtype], small: bool) -> list[dict]:
    """Forward and every gradient against the float64 reference; raises on a bound exceeded."""
    if small:  # what the interpreter runs in seconds
        cases = [(2, 8, 16, 12, 150, 2, 64, "per_row", False, True), (1, 5, 6, 7, 40, 3, 4, "full", True, False)]
    else:  # the benchmark's channel counts, odd edges, every conditioning shape, the last layer, skip sums
        cases = [(2, 64, 128, 128, 4100, 2, 512, None, False, True), (3, 64, 128, 128, 1000, 2, 1, "per_row", False, False),
                 (2, 64, 128, 128, 777, 2, 64, "full", True, True), (2, 40, 96, 72, 333, 3, 8, "global", False, False),
                 (1, 256, 512, 256, 300, 2, 16, "per_time", False, True)]
    results = []
    for dtype in dtypes:
        for batch, residual, gate, skip, length, taps, dilation, cond, last, skip_in in cases:
            tensors, upstream = random_block(batch, residual, gate, skip, length, taps, cond, last, skip_in=skip_in)
            with exact_fp32():
                errors = block_errors(tensors, upstream, dilation, dtype, device)
            name, error = worst(errors)
            shape = dict(batch=batch, residual=residual, gate=gate, skip=skip, length=length, kernel_size=taps,
                         dilation=dilation, cond=cond, last_layer=last, skip_in=skip_in)
            ok = error < TOLERANCE[dtype]
            print(f"check {str(dtype):15s} {shape}  worst {name} {error:.2e}  {'ok' if ok else 'FAILED'}")
            results.append(dict(dtype=str(dtype), **shape, worst=name, rel_error=error, ok=ok))
            if not ok:
                raise SystemExit(f"kernel out of tolerance ({TOLERANCE[dtype]}): {name} {error:.2e}")
    return results


# ---- timing ------------------------------------------------------------------------------------

def layer_bytes(dtype: torch.dtype, backward: bool) -> int:
    c = LAYER
    per_step = 2 * c["residual"] + c["skip"]  # read x, write residual + skip
    if backward:
        per_step += 3 * c["residual"] + c["skip"]  # read x, d residual, d skip; write dx
    return per_step * c["batch"] * c["length"] * torch.empty(0, dtype=dtype).element_size()


def time_layer(dtype, dilation: int, fused: bool, backward: bool) -> float:
    from triton.testing import do_bench
    c = LAYER
    tensors, upstream = random_block(c["batch"], c["residual"], c["gate"], c["skip"], c["length"], 2, seed=dilation)
    args = [None if t is None else t.to(DEVICE, dtype).requires_grad_(backward) for t in tensors.values()]
    upstream = [u.to(DEVICE, dtype) for u in upstream]
    fn = wavenet_block if fused else wavenet_block_reference
    inputs = [a for a in args if a is not None]

    def forward():
        return fn(*args[:7], dilation, args[7])

    def forward_backward():
        residual, skip = forward()
        return torch.autograd.grad([residual, skip], inputs, [upstream[0], upstream[1]])

    with torch.set_grad_enabled(backward):
        return do_bench(forward_backward if backward else forward, return_mode="median")


def time_stack(dtype, fused: bool, backward: bool, graphed: bool = False) -> float:
    from triton.testing import do_bench

    from fastwave.models.wavenet import WaveNet
    c = LAYER
    torch.manual_seed(0)
    model = WaveNet(layers=c.get("layers", 20), residual_channels=c["residual"], gate_channels=c["gate"],
                    skip_channels=c["skip"], fused=fused).to(DEVICE, dtype)
    tokens = torch.randint(0, 256, (c["batch"], c["length"]), device=DEVICE)
    params = list(model.parameters())
    grad = torch.randn(c["batch"], c["skip"], c["length"], device=DEVICE, dtype=dtype)

    def forward():
        return model.trunk(tokens)[0]

    def forward_backward():
        return torch.autograd.grad(forward(), params, grad, allow_unused=True)

    with torch.set_grad_enabled(backward):
        fn = forward_backward if backward else forward
        return do_bench(cuda_graphed(fn) if graphed else fn, return_mode="median")


def bench(dtypes: list[torch.dtype], bandwidth: float) -> dict:
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")  # TF32 for both implementations' fp32 products
    torch.backends.cudnn.benchmark = True
    layers, stacks = [], []
    for dtype in dtypes:
        for backward in (False, True):
            for dilation in DILATIONS:
                ms = {impl: time_layer(dtype, dilation, impl == "fused", backward) for impl in ("fused", "torch")}
                gbs = {impl: layer_bytes(dtype, backward) / t / 1e6 for impl, t in ms.items()}
                row = dict(dtype=str(dtype), pass_="forward+backward" if backward else "forward", dilation=dilation,
                           fused_ms=ms["fused"], torch_ms=ms["torch"], speedup=ms["torch"] / ms["fused"],
                           fused_gbs=gbs["fused"], torch_gbs=gbs["torch"], fused_of_copy=gbs["fused"] / bandwidth)
                layers.append(row)
                print(f"layer {str(dtype):15s} {row['pass_']:17s} d={dilation:3d}  fused {ms['fused']:7.3f} ms "
                      f"({gbs['fused']:6.0f} GB/s, {row['fused_of_copy']:4.0%} of copy)  torch {ms['torch']:7.3f} ms "
                      f"({gbs['torch']:6.0f} GB/s)  x{row['speedup']:.2f}")
            for graphed in (False, True) if DEVICE == "cuda" else (False,):
                try:
                    ms = {impl: time_stack(dtype, impl == "fused", backward, graphed) for impl in ("fused", "torch")}
                except RuntimeError as error:  # report a capture failure, keep the other results
                    print(f"stack {dtype} graphed={graphed}: {error}")
                    stacks.append(dict(dtype=str(dtype), graphed=graphed, error=str(error)))
                    continue
                row = dict(dtype=str(dtype), pass_="forward+backward" if backward else "forward",
                           layers=LAYER.get("layers", 20), launch="cuda graph" if graphed else "eager",
                           fused_ms=ms["fused"], torch_ms=ms["torch"], speedup=ms["torch"] / ms["fused"])
                stacks.append(row)
                print(f"stack {str(dtype):15s} {row['pass_']:17s} {row['layers']} layers {row['launch']:10s}  "
                      f"fused {ms['fused']:8.3f} ms  torch {ms['torch']:8.3f} ms  x{row['speedup']:.2f}")
    return dict(layers=layers, stacks=stacks)


def sweep(dtype) -> dict:
    """Time each candidate tiling of each kernel on the d=64 layer, forward+backward; report the best."""
    from fastwave.ops.kernels import shifted_matmul
    best = {}
    for kernel, candidates in SWEEP.items():
        timings = []
        for config in [{}] + candidates:
            shifted_matmul.TUNING[kernel] = config
            try:
                timings.append((time_layer(dtype, 64, True, True), config))
            except Exception as error:  # a tiling the GPU cannot run (shared memory, registers)
                print(f"sweep {kernel} {config}: {type(error).__name__}: {error}")
        shifted_matmul.TUNING.pop(kernel, None)
        for ms, config in timings:
            print(f"sweep {kernel:15s} {config or 'default'}: {ms:.3f} ms")
        best[kernel] = min(timings, key=lambda pair: pair[0])[1]
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--check-only", action="store_true", help="correctness only (on a CPU: the interpreter)")
    parser.add_argument("--sweep", action="store_true", help="also time candidate tilings of each kernel")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    dtypes = [DTYPES[name] for name in args.dtypes.split(",")]
    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        if os.environ.get("TRITON_INTERPRET") != "1" or not args.check_only:
            raise SystemExit("no GPU: run with --check-only and TRITON_INTERPRET=1 (the Triton interpreter)")
        dtypes = [d for d in dtypes if d != torch.bfloat16]  # the interpreter has no bf16
    import triton
    started = time.time()
    result = dict(command="python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:])),
                  device=torch.cuda.get_device_name() if on_gpu else f"CPU ({platform.processor()}), interpreter",
                  torch=torch.__version__, triton=triton.__version__, layer=LAYER)
    with backend("auto"):
        result["checks"] = check("cuda" if on_gpu else "cpu", dtypes, small=not on_gpu)
        if not args.check_only:
            result["copy_gbs"] = copy_bandwidth(DEVICE)
            print(f"copy bandwidth {result['copy_gbs']:.0f} GB/s")
            result.update(bench(dtypes, result["copy_gbs"]))
            if args.sweep:
                result["sweep_best"] = sweep(dtypes[-1])
                print("best tilings:", result["sweep_best"])
    result["wall_s"] = time.time() - started
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
