"""benchmarks/gpu_attention.py as far as a machine without a GPU can run it: its correctness half in
Triton's interpreter, its timing half once on tiny CPU shapes (do_bench replaced), and its refusal
to time without a GPU."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from ops_cases import needs_triton, run_do_bench_once

from fastwave import ops

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_attention.py"
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the benchmark runs for real")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_attention", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_triton
@no_gpu
def test_correctness_half_passes_under_the_interpreter(tmp_path):
    result = load_benchmark().main(["--check-only", "--json", str(tmp_path / "r.json")])  # bf16 dropped here
    ops_checked = [(c["op"], c["dtype"]) for c in result["checks"]]
    assert ops_checked == [(op, dtype) for dtype in ("torch.float32", "torch.float16")
                           for op in ["causal_attention"] * 3 + ["decode_attention"] * 2]
    assert all(c["ok"] for c in result["checks"])
    assert {"dq", "dk", "dv", "out"} <= result["checks"][0]["errors"].keys()
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["checks"] == result["checks"] and "attention" not in saved


@no_gpu
def test_without_a_gpu_timing_exits_with_a_message_not_a_traceback():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(SCRIPT)], check=False, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 1
    assert "no GPU" in done.stderr and "--check-only" in done.stderr and "Traceback" not in done.stderr


@needs_triton
@no_gpu
def test_timing_code_runs_on_tiny_shapes(monkeypatch, capsys):
    """The timing half needs a GPU; here it runs once on the CPU (kernels in the interpreter, fp32:
    the interpreter has no bf16) with do_bench replaced, so that a Python error cannot wait for the
    first GPU session."""
    calls = run_do_bench_once(monkeypatch)
    bench = load_benchmark()
    monkeypatch.setattr(bench, "DEVICE", "cpu")
    monkeypatch.setattr(bench, "ATTENTION", {"batch": 1, "heads": 2, "head_dim": 16, "dtype": torch.float32})
    monkeypatch.setattr(bench, "LENGTHS", [16, 33])
    monkeypatch.setattr(bench, "FORWARD_TARGET_FROM", 32)
    monkeypatch.setattr(bench, "DECODE", {"batches": [1, 3], "heads_dims": [(2, 16)], "lengths": [20],
                                          "dtypes": [torch.float32]})
    monkeypatch.setattr(bench, "MODEL", {"layers": 1, "heads": 1, "width": 16, "context": 8})
    monkeypatch.setattr(bench, "GENERATION", {"batches": [1, 2], "chunk": 4, "timed_chunks": 1})
    with ops.backend("triton"):
        result = {"device": "cpu", "torch": "", "triton": "", "copy_gbs": bench.copy_bandwidth("cpu")}
        result["attention"], result["sdpa_default_backend"] = bench.bench_attention()
        result["decode"] = bench.bench_decode(result["copy_gbs"])
        result["generation"] = bench.bench_generation()
    result["targets"] = bench.targets(result)
    bench.print_report(result)
    json.dumps(result)  # everything the script records is JSON

    attention = result["attention"]
    assert [(r["pass_"], r["length"]) for r in attention] == [
        ("forward", 16), ("forward", 33), ("forward+backward", 16), ("forward+backward", 33)]
    # do_bench returned 1 ms for everything: TFLOP/s are the FLOP counts, backward 3.5x forward
    assert attention[0]["fastwave_tflops"] == attention[0]["sdpa_flash_tflops"] == 2 * 2 * 16 * 16 * 16 / 1e9
    assert attention[2]["fastwave_tflops"] == pytest.approx(3.5 * attention[0]["fastwave_tflops"])
    assert [(r["batch"], r["cache_len"]) for r in result["decode"]] == [(1, 20), (3, 20)]
    assert result["decode"][1]["fastwave_gbs"] == 4 * 3 * 2 * 16 * (2 * 20 + 2) / 1e6 + 4 * 3 / 1e6
    assert [(r["batch"], r["launch"], r["steps"]) for r in result["generation"]] == [
        (1, "eager", 4), (1, "cuda graph", 4), (2, "eager", 4), (2, "cuda graph", 4)]
    assert all(r["ms_per_step"] > 0 for r in result["generation"]) and "graph_over_eager" in result["generation"][1]
    assert [t["pass"] for t in result["targets"]] == [True, False]  # equal times; no graph on a CPU
    per_row_impls = 3 if result["sdpa_default_backend"] != "FLASH_ATTENTION" else 2
    assert len(calls) == 1 + 4 * per_row_impls + 2 * 2  # copy, attention rows, ours + reference per decode row
    out = capsys.readouterr().out
    assert "PASS  attention forward" in out and "FAIL  CUDA-graph decode" in out
