"""Compile fastwave's Triton kernels for a GPU architecture without a GPU, and report what each
kernel costs per thread: registers, spill stack, shared memory (from the cubin, via the cuobjdump
Triton ships). Catches GPU-only compile errors, register spills and shared-memory needs on a CPU-only machine.
Scalars are compiled as i32 without the launch-time specialisations (a stride of 1, multiples of
16), so the counts are close to, not identical with, those of the launched kernels.

    python benchmarks/triton_resources.py [--arch 90] [--dtype bf16] [--variants]
    python benchmarks/triton_resources.py --attention [--head-dim 64]    # causal_attention's kernels

--variants compiles every combination of each kernel's feature flags (conditioning, residual,
bias, direction, ...) instead of the one the benchmark layer uses.
"""
from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)  # real compilation, not the interpreter
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from fastwave.ops.kernels import depthwise_conv as dc  # noqa: E402
from fastwave.ops.kernels import flash_attention as fa  # noqa: E402
from fastwave.ops.kernels import shifted_matmul as sm  # noqa: E402
from fastwave.ops.kernels import wavenet_block as wb  # noqa: E402


FP32_POINTERS = ("out_ptr", "row_sum_ptr", "lse_ptr", "delta_ptr")  # fp32 buffers whatever the dtype
FLOAT_SCALARS = ("scale", "qk_scale", "dropout_p", "keep_scale")
INT64_POINTERS = ("seed_ptr",)


def compile_for(kernel, constexprs: dict, dtype: str, arch: int, num_warps: int, num_stages: int | None = None,
                divisible: bool = False):
    """Pointers (arguments named *_ptr) get ``dtype``; other runtime arguments are i32 (fp32 for the
    scales). ``divisible``: pointers and strides are known multiples of 16, as a launch specialises
    them (without it the attention kernels' loads are not vectorised and their counts are far off)."""
    signature, attrs = {}, {}
    for index, name in enumerate(kernel.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = ("*fp32" if name in FP32_POINTERS else "*i64" if name in INT64_POINTERS
                               else f"*{dtype}")
        else:
            signature[name] = "fp32" if name in FLOAT_SCALARS else "i32"
        if divisible and (name.endswith("_ptr") or name.startswith("stride_")) and name not in constexprs:
            attrs[(index,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    options = dict(num_warps=num_warps) if num_stages is None else dict(num_warps=num_warps, num_stages=num_stages)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def resources(compiled) -> dict:
    """Registers and spill stack per thread (from the cubin), and the shared memory a launch needs
    (Triton's dynamic allocation, which the cubin does not record)."""
    cuobjdump = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        text = subprocess.run([str(cuobjdump), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    usage = {k.lower(): int(v) for k, v in re.findall(r"(REG|STACK):(\d+)", text)}
    usage["shared"] = int(compiled.metadata.shared)
    return usage


def kernel_configs(residual=64, gate=128, skip=128, taps=2, dtype="bf16"):
    """The configurations the launchers pick for the given layer sizes."""
    half = gate // 2
    cond_flags = dict(HAS_COND=False, PRECISION="ieee")
    for backward in (False, True):
        tiles = wb.block_config(residual, skip, half, taps, backward, 4 if dtype == "fp32" else 2)
        warps = tiles.pop("num_warps")
        if backward:
            yield ("wavenet_block gate backward", wb._wavenet_block_gate_backward_kernel,
                   dict(HAS_DRES=True, **cond_flags, **tiles), warps)
        else:
            yield ("wavenet_block forward", wb._wavenet_block_forward_kernel,
                   dict(HAS_RES=True, HAS_SKIP_IN=True, **cond_flags, **tiles), warps)
    for name, rows, channels, direction in (("conv forward (G x K*R)", gate, residual, -1),
                                            ("conv input grad (R x K*G)", residual, gate, +1)):
        cfg = sm.matmul_config(rows, taps * channels)
        warps_mm = cfg.pop("num_warps")
        yield name, sm._shifted_matmul_kernel, dict(DIRECTION=direction, HAS_BIAS=True, HAS_ADD=True,
                                                    PRECISION="ieee", **cfg), warps_mm
    for name, rows, cols in (("weight grad dilated (G x K*R)", gate, taps * residual), ("weight grad skip (S x H)", skip, half)):
        cfg = sm.outer_sum_config(rows, cols)
        warps_os = cfg.pop("num_warps")
        yield name, sm._shifted_outer_sum_kernel, dict(DIRECTION=-1, ROW_SUM=True, PRECISION="ieee", **cfg), warps_os


def attention_configs(head_dim=64, dtype="bf16", group=1):
    """causal_attention's kernels with the configurations their launchers pick (causal, no window,
    ``group`` query heads per key / value head), compiled as launched on (B, H, N, D) tensors with D
    a multiple of 16 (see compile_for)."""
    itemsize = 4 if dtype == "fp32" else 2
    common = dict(HEAD_DIM=head_dim, BLOCK_D=fa.head_block(head_dim))
    for name, kernel, key, flags in (("attention forward", fa._attention_forward_kernel, "forward", True),
                                     ("attention backward delta", fa._attention_backward_delta_kernel, "delta", False),
                                     ("attention backward dK dV", fa._attention_backward_dkdv_kernel, "dkdv", True),
                                     ("attention backward dQ", fa._attention_backward_dq_kernel, "dq", True)):
        config = fa.attention_config(key, head_dim, itemsize, group)
        warps = config.pop("num_warps")
        flag_args = dict(GROUP=group, DROPOUT=False, WINDOWED=False, PRECISION="ieee") if flags else {}
        yield name, kernel, dict(**common, **flag_args, **config), warps


def depthwise_configs(taps=4):
    """The depthwise conv's kernels (fastwave.ops.kernels.depthwise_conv) at the tiles their
    launchers pick for many channels, every feature on."""
    block_c, block_t = dc._tiles(1024, 4096)
    tiles = dict(TAPS=taps, BLOCK_C=block_c, BLOCK_T=block_t)
    yield "depthwise forward", dc._depthwise_kernel, dict(HAS_BIAS=True, HAS_STATE=True, SILU=True, GRAD=False,
                                                          **tiles), 4
    yield "depthwise dz", dc._depthwise_kernel, dict(HAS_BIAS=True, HAS_STATE=True, SILU=True, GRAD=True, **tiles), 4
    yield "depthwise transposed", dc._depthwise_transposed_kernel, dict(HAS_STATE=True, **tiles), 4
    yield "depthwise step", dc._depthwise_step_kernel, dict(TAPS=taps, HAS_BIAS=True, SILU=True, BLOCK_C=8,
                                                            BLOCK_S=256), 4  # a long state: (K - 1) d >= 256


FLAGS = {"_attention_forward_kernel": ("WINDOWED", "DROPOUT"), "_attention_backward_delta_kernel": (),
         "_attention_backward_dkdv_kernel": ("WINDOWED", "DROPOUT"),
         "_attention_backward_dq_kernel": ("WINDOWED", "DROPOUT"),
"_wavenet_block_forward_kernel": ("HAS_COND", "HAS_RES", "HAS_SKIP_IN"),
         "_wavenet_block_gate_backward_kernel": ("HAS_COND", "HAS_DRES"),
         "_shifted_matmul_kernel": ("DIRECTION", "HAS_BIAS", "HAS_ADD"),
         "_shifted_outer_sum_kernel": ("DIRECTION", "ROW_SUM")}


def flag_variants(configs):
    """Every combination of the feature flags of each distinct kernel in ``configs``."""
    seen = set()
    for name, kernel, constexprs, warps in configs:
        key = kernel.fn.__name__ if hasattr(kernel, "fn") else kernel.__name__
        if key in seen:
            continue
        seen.add(key)
        flags = FLAGS[key]
        for values in itertools.product(*[(-1, 1) if f == "DIRECTION" else (False, True) for f in flags]):
            label = ", ".join(f"{f}={v}" for f, v in zip(flags, values))
            yield f"{key} [{label}]", kernel, {**constexprs, **dict(zip(flags, values))}, warps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability as an int (90: Hopper)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--precision", default="ieee", choices=["ieee", "tf32"], help="fp32 dot precision")
    parser.add_argument("--variants", action="store_true", help="every feature-flag combination of each kernel")
    parser.add_argument("--channels", default="64,128,128", help="residual,gate,skip of the layer")
    parser.add_argument("--attention", action="store_true", help="causal_attention's kernels instead")
    parser.add_argument("--depthwise", action="store_true", help="the depthwise conv's kernels instead")
    parser.add_argument("--head-dim", type=int, default=64, help="head dimension, with --attention")
    parser.add_argument("--group", type=int, default=1, help="query heads per key / value head, with --attention")
    args = parser.parse_args(argv)
    rows = []
    residual, gate, skip = (int(c) for c in args.channels.split(","))
    configs = list(attention_configs(args.head_dim, args.dtype, args.group) if args.attention
                   else depthwise_configs() if args.depthwise else kernel_configs(residual, gate, skip, dtype=args.dtype))
    if args.depthwise and args.variants:
        parser.error("--variants applies to the attention and WaveNet kernels")
    for name, kernel, constexprs, warps in (flag_variants(configs) if args.variants else configs):
        stages = constexprs.pop("num_stages", None)
        if "PRECISION" in constexprs:
            constexprs = {**constexprs, "PRECISION": args.precision}
        usage = resources(compile_for(kernel, constexprs, args.dtype, args.arch, warps, stages,
                                      divisible=args.attention))
        rows.append((name, warps, usage))
        print(f"{name:32s} warps {warps}  regs {usage['reg']:3d}  spill stack {usage['stack']:5d} B  "
              f"shared {usage['shared']:6d} B")
    return rows


if __name__ == "__main__":
    main()
