"""The attention kernels and Transformer generation on a GPU: correctness on the device first, then
speed (causal_attention against SDPA's flash backend, decode_attention against the copy bandwidth,
the sample Transformer's generation loop eager against its CUDA graph).

    python benchmarks/gpu_attention.py [--json results.json] [--dtypes fp32,fp16,bf16]
    python benchmarks/gpu_attention.py --check-only     # also on a CPU: the Triton interpreter

It imports fastwave from this checkout and needs neither the native module nor a pip install.

1. Correctness (aborts on the first bound exceeded): causal_attention's output and dq, dk, dv
   against SDPA(is_causal=True) (with a band mask for a window) in float64 on the same inputs, and
   decode_attention against its float64 reference with ragged cache lengths; bounds are
   fastwave.ops.verify.TOLERANCE (max |error| / max |reference|). fp32 is checked exactly (TF32 off).
2. causal_attention forward and forward+backward at B=4, H=8, D=64, N = 1024 .. 16384, bf16, against
   SDPA restricted to its flash backend (and SDPA's own choice, when that is another backend).
   FLOPs follow FlashAttention-2's convention: forward 4 * B * H * N^2 * D / 2 (the causal half of
   the two N x N x D products), backward 2.5x forward (five products instead of two), so
   forward+backward is 3.5x forward. Target: our forward at least as fast as SDPA flash for N >= 4096.
3. decode_attention, one query per (row, head) against full caches of 1600 (the model's context)
   and 16384 slots, B in {1, 8, 64}, (H, D) in {(4, 32) (the paper model's heads), (8, 64)}, fp32
   and bf16: time, GB/s of the bytes it must move (K and V for the valid lengths, q, out) next to
   the device's copy bandwidth, and the torch reference's time on the same inputs.
4. Generation with the paper-sized SampleTransformer (3 layers, 4 heads, width 128, context 1600;
   random weights) at batch 1 and 64 through the torch engine's own sampling loop (the one
   ``fastwave.generate`` runs): eager (``_decode`` launched from Python every step) against the
   CUDA graph the engine captures on CUDA. The prompt fills the context, so the cache is full
   (steady state). Target: the graph at least 5x the eager loop at batch 1.

Kernel timings are ``triton.testing.do_bench`` medians (after its warm-up; it empties L2 before each
call, so the caches are read from HBM); generation is wall clock over whole chunks after a warm-up
chunk (which compiles the kernels and captures the graph).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

# This checkout's fastwave, and gpu_timing beside this file (also when it is loaded by path).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import torch
import torch.nn.functional as F
from gpu_timing import copy_bandwidth

from fastwave.engines.sampling import SamplingParams
from fastwave.engines.step_engine import exact_fp32
from fastwave.engines.transformer_torch import TorchTransformerEngine
from fastwave.models import SampleTransformer
from fastwave.ops import (
    backend,
    causal_attention,
    decode_attention,
    decode_attention_reference,
)
from fastwave.ops.verify import (
    TOLERANCE,
    attention_errors,
    decode_attention_errors,
    random_attention,
    random_decode,
    worst,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE = "cuda"  # the timing functions' device (a smoke test runs them on the CPU with tiny shapes)

# Correctness cases. Attention: (batch, heads, N, D, window); N ends on, inside and one past the
# kernels' blocks; windows shorter than a block and the model's 1600. Decode: (cache lens per row,
# L_max, heads, D); an empty row, full rows, one past L_max (clamped).
ATTENTION_CHECKS = {
    "small": [(2, 2, 33, 32, None), (1, 2, 75, 64, 16), (1, 1, 41, 128, None)],  # seconds in the interpreter
    "full": [(2, 4, 1024, 64, None), (1, 3, 2049, 32, None), (2, 2, 777, 128, None), (1, 2, 4097, 64, 1600),
             (2, 2, 300, 32, 17), (3, 1, 1, 64, None)],
}
DECODE_CHECKS = {
    "small": [([1, 17, 64, 0], 64, 2, 32), ([5, 40, 99], 80, 2, 64)],
    "full": [([1, 599, 1600, 1234, 0], 1600, 4, 32), ([16384, 3, 9000], 16384, 8, 64), ([77, 130, 200], 130, 2, 128)],
}

# Timing shapes.
ATTENTION = {"batch": 4, "heads": 8, "head_dim": 64, "dtype": torch.bfloat16}
LENGTHS = [1024, 2048, 4096, 8192, 16384]
FORWARD_TARGET_FROM = 4096  # the target applies from this N up
DECODE = {"batches": [1, 8, 64], "heads_dims": [(4, 32), (8, 64)], "lengths": [1600, 16384],
          "dtypes": [torch.float32, torch.bfloat16]}
MODEL = {"layers": 3, "heads": 4, "width": 128, "context": 1600}  # the paper's model
# chunk: generate's streaming default
GENERATION = {"batches": [1, 64], "chunk": 1600, "timed_chunks": 2}
GRAPH_TARGET = 5.0  # graph / eager samples/s at batch 1
BACKWARD_FLOPS = 2.5  # x forward (FlashAttention-2's convention)


# ---- correctness -------------------------------------------------------------------------------

def check(device: str, dtypes: list[torch.dtype], small: bool) -> list[dict]:
    """Both ops against their float64 references; raises SystemExit on a bound exceeded."""
    size = "small" if small else "full"
    results = []
    for dtype in dtypes:
        for batch, heads, length, head_dim, window in ATTENTION_CHECKS[size]:
            q, k, v, d_out = random_attention(batch, heads, length, head_dim)
            with exact_fp32():
                errors = attention_errors(q, k, v, d_out, dtype, device, window=window)
            shape = {"batch": batch, "heads": heads, "length": length, "head_dim": head_dim, "window": window}
            results.append(_verdict("causal_attention", dtype, shape, errors))
        for lens, max_len, heads, head_dim in DECODE_CHECKS[size]:
            q, k, v = random_decode(len(lens), heads, max_len, head_dim)
            errors = decode_attention_errors(q, k, v, torch.tensor(lens, dtype=torch.int32), dtype, device)
            shape = {"cache_lens": lens, "max_len": max_len, "heads": heads, "head_dim": head_dim}
            results.append(_verdict("decode_attention", dtype, shape, errors))
    return results


def _verdict(op: str, dtype, shape: dict, errors: dict) -> dict:
    name, error = worst(errors)
    ok = error < TOLERANCE[dtype]
    print(f"check {op:16s} {dtype!s:14s} {shape}  worst {name} {error:.2e}  {'ok' if ok else 'FAILED'}")
    if not ok:
        raise SystemExit(f"{op} is wrong on this device: {name} relative error {error:.2e} > {TOLERANCE[dtype]} "
                         f"({dtype}, {shape}); not timing a wrong kernel")
    return dict(op=op, dtype=str(dtype), **shape, errors=errors, worst=name, rel_error=error, ok=ok)


# ---- causal attention: TFLOP/s against SDPA ----------------------------------------------------

def attention_flops(length: int, backward: bool) -> float:
    c = ATTENTION
    forward = 4 * c["batch"] * c["heads"] * length * length * c["head_dim"] / 2
    return forward * (1 + BACKWARD_FLOPS if backward else 1)


def sdpa_choice(q, k, v) -> str:
    """The backend SDPA picks by itself for these inputs (private API: 'unknown' where it is gone)."""
    try:
        from torch.nn.attention import SDPBackend
        return SDPBackend(torch._fused_sdp_choice(q, k, v, is_causal=True)).name
    except Exception:  # noqa: BLE001 -- a report, not a requirement
        return "unknown"


def time_attention(impl: str, length: int, backward: bool) -> float:
    """Median ms of one forward (or forward+backward) of ``impl`` in fastwave, sdpa_flash, sdpa_default."""
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench
    c = ATTENTION
    g = torch.Generator(device=DEVICE).manual_seed(length)
    shape = (c["batch"], c["heads"], length, c["head_dim"])
    q, k, v, d_out = (torch.randn(shape, device=DEVICE, dtype=c["dtype"], generator=g) for _ in range(4))
    inputs = [t.requires_grad_(backward) for t in (q, k, v)]
    if impl == "fastwave":
        def attend():
            return causal_attention(*inputs)
        restrict = contextlib.nullcontext()
    else:
        def attend():
            return F.scaled_dot_product_attention(*inputs, is_causal=True)
        restrict = sdpa_kernel([SDPBackend.FLASH_ATTENTION]) if impl == "sdpa_flash" else contextlib.nullcontext()

    def forward_backward():
        return torch.autograd.grad(attend(), inputs, d_out)

    with restrict, torch.set_grad_enabled(backward):  # the SDPA flags are read at each call: hold them
        return do_bench(forward_backward if backward else attend, return_mode="median")


def bench_attention() -> tuple[list[dict], str]:
    """-> (one row per N and pass, SDPA's own backend choice at these shapes)."""
    c = ATTENTION
    probe = torch.empty(c["batch"], c["heads"], LENGTHS[0], c["head_dim"], device=DEVICE, dtype=c["dtype"])
    choice = sdpa_choice(probe, probe, probe)
    impls = ["fastwave", "sdpa_flash"] + ([] if choice == "FLASH_ATTENTION" else ["sdpa_default"])
    print(f"attention B={c['batch']} H={c['heads']} D={c['head_dim']} {c['dtype']}; SDPA's own choice: {choice}")
    rows = []
    for backward in (False, True):
        for length in LENGTHS:
            row = dict(pass_="forward+backward" if backward else "forward", length=length, **_named(c))
            for impl in impls:
                try:
                    ms = time_attention(impl, length, backward)
                except RuntimeError as error:  # e.g. no flash kernel for this GPU: report, go on
                    row[f"{impl}_error"] = str(error).splitlines()[0]
                    continue
                row[f"{impl}_ms"] = ms
                row[f"{impl}_tflops"] = attention_flops(length, backward) / ms / 1e9
            if "sdpa_flash_ms" in row and "fastwave_ms" in row:
                row["ours_over_flash"] = row["fastwave_tflops"] / row["sdpa_flash_tflops"]
            rows.append(row)
            print(f"attention {row['pass_']:17s} N={length:5d}  " + "  ".join(
                f"{impl} {row[impl + '_ms']:.3f} ms {row[impl + '_tflops']:.1f} TFLOP/s" if impl + "_ms" in row
                else f"{impl} {row[impl + '_error']}" for impl in impls))
    return rows, choice


# ---- decode attention: GB/s against the copy bandwidth -----------------------------------------

def decode_bytes(batch: int, heads: int, head_dim: int, length: int, dtype) -> int:
    """What a decode step must move: K and V for the valid lengths, q in, out, the lengths."""
    element = torch.empty(0, dtype=dtype).element_size()
    return element * batch * heads * head_dim * (2 * length + 2) + 4 * batch


def time_decode(batch: int, heads: int, head_dim: int, length: int, dtype) -> dict:
    from triton.testing import do_bench
    g = torch.Generator(device=DEVICE).manual_seed(batch * length + head_dim)
    q = torch.randn(batch, heads, head_dim, device=DEVICE, dtype=dtype, generator=g)
    k, v = (torch.randn(batch, heads, length, head_dim, device=DEVICE, dtype=dtype, generator=g) for _ in range(2))
    lens = torch.full((batch,), length, dtype=torch.int32, device=DEVICE)  # full caches: the engine's steady state
    return {"fastwave_ms": do_bench(lambda: decode_attention(q, k, v, lens), return_mode="median"),
            "reference_ms": do_bench(lambda: decode_attention_reference(q, k, v, lens), return_mode="median")}


def bench_decode(copy_gbs: float) -> list[dict]:
    rows = []
    for dtype in DECODE["dtypes"]:
        for heads, head_dim in DECODE["heads_dims"]:
            for length in DECODE["lengths"]:
                for batch in DECODE["batches"]:
                    row = {"dtype": str(dtype), "batch": batch, "heads": heads, "head_dim": head_dim,
                           "cache_len": length}
                    row.update(time_decode(batch, heads, head_dim, length, dtype))
                    row["fastwave_gbs"] = decode_bytes(batch, heads, head_dim, length, dtype) / row["fastwave_ms"] / 1e6
                    row["of_copy"] = row["fastwave_gbs"] / copy_gbs
                    row["speedup_over_reference"] = row["reference_ms"] / row["fastwave_ms"]
                    rows.append(row)
                    print(f"decode {dtype!s:14s} B={batch:2d} H={heads} D={head_dim:2d} L={length:5d}  "
                          f"{row['fastwave_ms'] * 1e3:8.1f} us ({row['fastwave_gbs']:6.0f} GB/s, "
                          f"{row['of_copy']:4.0%} of copy)  reference {row['reference_ms'] * 1e3:8.1f} us  "
                          f"x{row['speedup_over_reference']:.1f}")
    return rows


# ---- generation: eager loop against the CUDA graph ---------------------------------------------

def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def time_generation(model, batch: int, graphed: bool) -> dict:
    """Samples/s of the torch engine's sampling loop (``StepEngine.chunks``, what generate runs) in
    steady state: the prompt fills the context; the first chunk (prefill, kernel compilation, graph
    capture) is not timed, the next ``timed_chunks`` are. Each chunk ends in a copy to the host, so
    the clock reads finished work. Graphed: sampling and the decode step replay as one CUDA graph;
    eager: the same Python loop launching every kernel (``cuda_graph=False``)."""
    c = model.config
    torch.manual_seed(batch)
    prompt = torch.randint(0, c.classes, (batch, c.context), device=DEVICE)
    engine = TorchTransformerEngine(model, batch, model.prepare_cond(None, batch, c.context), cuda_graph=graphed)
    chunk, timed = GENERATION["chunk"], GENERATION["timed_chunks"]
    chunks = engine.chunks(prompt, chunk * (1 + timed), chunk, SamplingParams(), seed=0)
    next(chunks)  # warm-up
    sync()
    start = time.perf_counter()
    steps = sum(out.shape[1] for out in chunks)
    sync()
    seconds = time.perf_counter() - start
    if graphed and DEVICE == "cuda" and engine.graph is None:
        raise RuntimeError("the engine did not capture its decode step in a CUDA graph")
    per_stream = steps / seconds
    return {"batch": batch, "launch": "cuda graph" if graphed else "eager", "steps": steps, "seconds": seconds,
            "ms_per_step": 1e3 / per_stream, "samples_per_s": per_stream * batch,
            "realtime_factor": per_stream / c.sample_rate}  # > 1: each stream faster than real time


def bench_generation() -> list[dict]:
    torch.manual_seed(0)
    model = SampleTransformer(**MODEL).to(DEVICE).eval()
    rows = []
    for batch in GENERATION["batches"]:
        eager, graph = (time_generation(model, batch, graphed) for graphed in (False, True))
        graph["graph_over_eager"] = graph["samples_per_s"] / eager["samples_per_s"]
        for row in (eager, graph):
            rows.append(row)
            print(f"generate B={batch:2d} {row['launch']:10s} {row['ms_per_step']:7.3f} ms/step  "
                  f"{row['samples_per_s']:10.0f} samples/s  real-time x{row['realtime_factor']:.2f} per stream")
        print(f"generate B={batch:2d} graph / eager x{graph['graph_over_eager']:.1f}")
    return rows


# ---- targets, report ---------------------------------------------------------------------------

def targets(result: dict) -> list[dict]:
    forward = [r for r in result["attention"] if r["pass_"] == "forward" and r["length"] >= FORWARD_TARGET_FROM]
    ratios = [r.get("ours_over_flash") for r in forward]
    graph = [r for r in result["generation"] if r["batch"] == 1 and "graph_over_eager" in r]
    graph_ratio = graph[0]["graph_over_eager"] if graph else None
    found = [
        {"name": "attention forward >= SDPA flash",
         "criterion": f"ours / flash TFLOP/s >= 1 for N >= {FORWARD_TARGET_FROM}",
         "value": min(ratios) if ratios and None not in ratios else None},
        {"name": "CUDA-graph decode >= 5x eager",
         "criterion": f"graph / eager samples/s >= {GRAPH_TARGET} at batch 1", "value": graph_ratio},
    ]
    for target, bound in zip(found, (1.0, GRAPH_TARGET)):
        target["pass"] = target["value"] is not None and target["value"] >= bound
    return found


def _named(shape: dict) -> dict:
    return {k: str(v) if isinstance(v, torch.dtype) else v for k, v in shape.items()}


def print_report(result: dict) -> None:
    print(f"\n{result['device']}  torch {result['torch']}  triton {result['triton']}  "
          f"copy {result['copy_gbs']:.0f} GB/s")
    print(f"\ncausal attention, B={ATTENTION['batch']} H={ATTENTION['heads']} D={ATTENTION['head_dim']} "
          f"{ATTENTION['dtype']}, TFLOP/s (backward = {BACKWARD_FLOPS}x forward FLOPs)")
    extra = "  SDPA default" if any("sdpa_default_tflops" in r for r in result["attention"]) else ""
    print(f"{'pass':17s} {'N':>6s}  {'fastwave':>8s}  {'SDPA flash':>10s}  {'ours/flash':>10s}{extra}")
    for r in result["attention"]:
        default = f"  {r['sdpa_default_tflops']:12.1f}" if "sdpa_default_tflops" in r else ""
        ours, flash, ratio = (r.get(key, float("nan")) for key in ("fastwave_tflops", "sdpa_flash_tflops",
                                                                   "ours_over_flash"))
        print(f"{r['pass_']:17s} {r['length']:6d}  {ours:8.1f}  {flash:10.1f}  {ratio:10.2f}{default}")
    print("\ndecode attention (full caches)")
    print(f"{'dtype':14s} {'B':>3s} {'H':>2s} {'D':>3s} {'L':>6s}  {'us':>8s}  {'GB/s':>6s}  {'of copy':>7s}  "
          f"{'ref us':>8s}  {'speedup':>7s}")
    for r in result["decode"]:
        print(f"{r['dtype']:14s} {r['batch']:3d} {r['heads']:2d} {r['head_dim']:3d} {r['cache_len']:6d}  "
              f"{r['fastwave_ms'] * 1e3:8.1f}  {r['fastwave_gbs']:6.0f}  {r['of_copy']:7.0%}  "
              f"{r['reference_ms'] * 1e3:8.1f}  {r['speedup_over_reference']:7.1f}")
    print(f"\ngeneration, SampleTransformer {MODEL}, full context")
    print(f"{'B':>3s} {'launch':10s}  {'ms/step':>8s}  {'samples/s':>10s}  {'x real time':>11s}  {'graph/eager':>11s}")
    for r in result["generation"]:
        ratio = f"{r['graph_over_eager']:11.1f}" if "graph_over_eager" in r else ""
        print(f"{r['batch']:3d} {r['launch']:10s}  {r['ms_per_step']:8.3f}  {r['samples_per_s']:10.0f}  "
              f"{r['realtime_factor']:11.2f}  {ratio}")
    print()
    for t in result["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}"
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}: {t['criterion']} (got {value})")


# ---- main --------------------------------------------------------------------------------------

def require_device(check_only: bool) -> bool:
    """-> whether a GPU runs this; exits with a message where nothing can run."""
    import importlib.util
    if importlib.util.find_spec("triton") is None:
        raise SystemExit("triton is not installed: pip install triton")
    if torch.cuda.is_available():
        return True
    if not check_only:
        raise SystemExit("no GPU: the timings need CUDA. On a CPU only the correctness half runs: "
                         "python benchmarks/gpu_attention.py --check-only (in Triton's interpreter)")
    if os.environ.get("TRITON_INTERPRET") != "1":
        if "triton" in sys.modules:  # the switch is read when triton is first imported
            raise SystemExit("no GPU: set TRITON_INTERPRET=1 before triton is imported to run the kernels on the CPU")
        os.environ["TRITON_INTERPRET"] = "1"
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="fp32,fp16,bf16",
                        help="comma-separated dtypes to check (fp32, fp16, bf16; the interpreter skips bf16)")
    parser.add_argument("--check-only", action="store_true", help="correctness only, small shapes on a CPU")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    dtypes = [DTYPES[name] for name in args.dtypes.split(",")]
    on_gpu = require_device(args.check_only)
    if not on_gpu:
        dtypes = [d for d in dtypes if d != torch.bfloat16]  # the interpreter has no bf16
        if not dtypes:
            raise SystemExit("the interpreter has no bf16: check fp32 or fp16 on a CPU")
    import triton
    started = time.time()
    result = {"command": "python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:])),
              "device": torch.cuda.get_device_name() if on_gpu else f"CPU ({platform.processor()}), interpreter",
              "torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__,
              "python": platform.python_version()}
    with backend("triton"):  # the kernels, never a silent fallback to the references
        result["checks"] = check("cuda" if on_gpu else "cpu", dtypes, small=not on_gpu)
        if not args.check_only:
            result["copy_gbs"] = copy_bandwidth(DEVICE)
            print(f"copy bandwidth {result['copy_gbs']:.0f} GB/s")
            result["attention"], result["sdpa_default_backend"] = bench_attention()
            result["decode"] = bench_decode(result["copy_gbs"])
            result["generation"] = bench_generation()
            result["targets"] = targets(result)
            print_report(result)
    result["wall_s"] = time.time() - started
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
