"""The GPU scripts, as far as a machine without a GPU can run them: the kernels compile for real GPUs
(Ampere sm_80, Hopper sm_90; Triton's bundled ptxas builds the cubins, so GPU-only compile errors
surface in CPU CI too), and the kernel benchmark's correctness half and timing code run."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

import fastwave
from fastwave import ops
from ops_cases import needs_triton, run_do_bench_once

ROOT = pathlib.Path(__file__).resolve().parents[2]


@needs_triton
@pytest.mark.parametrize("arch,dtype,extra,kernels", [
    (90, "bf16", ["--variants"], 24),  # every feature-flag combination
    (80, "fp16", [], 6),
    (90, "fp32", ["--precision", "tf32"], 6),
    (90, "fp32", ["--precision", "ieee", "--channels", "256,512,256"], 6),  # the widest fused layer
])
def test_kernels_compile_for_gpu_architectures(arch, dtype, extra, kernels):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "triton_resources.py"), "--arch", str(arch),
                           "--dtype", dtype, *extra], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "regs" in line]
    assert len(lines) == kernels, done.stdout
    if dtype == "bf16":  # the training configuration: every kernel fits its registers
        assert all(" spill stack     0 B" in line for line in lines), done.stdout


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_wavenet_kernels", ROOT / "benchmarks" / "gpu_wavenet_kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_triton
def test_gpu_benchmark_correctness_half_passes_under_the_interpreter(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("on a GPU the benchmark runs for real")
    result = load_benchmark().main(["--check-only", "--dtypes", "fp32,fp16", "--json", str(tmp_path / "r.json")])
    assert len(result["checks"]) == 4 and all(c["ok"] for c in result["checks"])
    assert json.loads((tmp_path / "r.json").read_text())["checks"] == result["checks"]


@needs_triton
def test_gpu_benchmark_timing_code_runs_on_tiny_shapes(monkeypatch):
    """The timing half needs a GPU; here it runs once on the CPU (kernels in the interpreter) with
    do_bench replaced, so that a Python error cannot wait for the first GPU session."""
    calls = run_do_bench_once(monkeypatch)
    bench = load_benchmark()
    monkeypatch.setattr(bench, "DEVICE", "cpu")
    monkeypatch.setattr(bench, "LAYER", dict(batch=1, length=40, residual=4, gate=6, skip=5, layers=2))
    monkeypatch.setattr(bench, "DILATIONS", [1, 16])
    with ops.backend("triton"):
        result = bench.bench([torch.float32], bench.copy_bandwidth("cpu"))
    assert [(r["pass_"], r["dilation"]) for r in result["layers"]] == [
        ("forward", 1), ("forward", 16), ("forward+backward", 1), ("forward+backward", 16)]
    assert [r["pass_"] for r in result["stacks"]] == ["forward", "forward+backward"]
    assert result["layers"][2]["fused_gbs"] > result["layers"][0]["fused_gbs"] > 0  # backward counts more bytes
    assert len(calls) == 1 + 2 * (4 + 2)  # copy, then fused and torch for each layer and stack row


def test_fused_block_saves_only_each_layers_input_for_the_backward():
    spec = importlib.util.spec_from_file_location("saved", ROOT / "benchmarks" / "wavenet_saved_activations.py")
    saved = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(saved)
    torch.manual_seed(0)
    model = fastwave.WaveNet(layers=4, cycles=2, residual_channels=8, gate_channels=12, skip_channels=10, classes=32)
    tokens = torch.randint(0, 32, (2, 50))
    fused, composition = saved.saved_bytes(model, tokens, True), saved.saved_bytes(model, tokens, False)
    assert fused == tokens.numel() * (8 + 4 * 8 * 4)  # the int64 tokens, then each layer's fp32 input x
    assert composition > 2 * fused
