"""The C++ engines on a busy machine: samples/s of the default WaveNet and sample Transformer at
batch 1 and 16, with threads = 1, 2 and the default (physical cores), on an idle machine and while
one busy process per usable CPU runs (started and stopped here, never left running).

    python benchmarks/cpu_under_load.py --json benchmarks/results/cpu_under_load.json \\
        [--baseline-native /path/to/an/older/_native.so]

Each figure is the median of --repeats runs after a warm-up, the generation loop alone: the engine
is built and the prompt (one receptive field of silence) fed before the clock starts, and each run
is one chunk of as many samples as fit in --run-seconds at the warm-up's rate, made by the engine
wrapper that fastwave.generate uses (so this build sheds threads on a busy machine, as users get).
--baseline-native times another build of fastwave.engines._native (e.g. an older commit's) in the same run,
interleaved with this one, so the two are compared under the same load.

The goal: under load the default thread count makes >= 50% of the best of the three, and
idle it is within 5% of the previous default.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import torch

import fastwave
from fastwave.engines import _native
from fastwave.audio import mulaw_silence
from fastwave.engines.sampling import SamplingParams
from fastwave.engines.transformer_cpu import CpuTransformerEngine
from fastwave.engines.wavenet_cpu import CpuWaveNetEngine

ENGINE_CLASSES = {"wavenet": "WaveNetCpuEngine", "transformer": "TransformerCpuEngine"}
CPU_ENGINES = {"wavenet": CpuWaveNetEngine, "transformer": CpuTransformerEngine}


@contextmanager
def busy_cores(count: int):
    """`count` processes spinning on the CPU for the duration of the block."""
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let the scheduler spread them
        yield
    finally:
        for process in load:
            process.kill()
            process.wait()


def samples_per_s(native, model, batch: int, threads: int, repeats: int, run_seconds: float) -> float:
    """Median samples/s over all streams of `repeats` runs after a warm-up. With native None, the
    engine wrapper fastwave.generate uses (which sheds threads on a busy machine); otherwise the
    native engine of that build, one generate() call per run."""
    silence = mulaw_silence(model.config.classes)
    prompt = np.full((batch, model.receptive_field), silence, dtype=np.int64)

    def runs(n: int):
        if native is None:
            wrapper = CPU_ENGINES[model.model_type](model, batch, {}, threads=threads)
            yield from wrapper.chunks(torch.from_numpy(prompt), 2 ** 31, n, SamplingParams(), 0)
            return
        engine = getattr(native, ENGINE_CLASSES[model.model_type])(*model.export_weights(), batch, threads)
        engine.prefill(prompt)
        for step in range(0, 2 ** 31, n):
            yield engine.generate(n, 0, step, 1.0, 0, 1.0, final=False)

    def seconds(chunks) -> float:
        start = time.perf_counter()
        next(chunks)
        return time.perf_counter() - start

    n = 256
    while True:  # warm-up, and the run length
        chunks = runs(n)
        next(chunks)
        if (elapsed := seconds(chunks)) >= run_seconds / 4:
            break
        n *= 4
    n = max(16, int(n * run_seconds / elapsed))
    chunks = runs(n)
    next(chunks)
    return statistics.median(batch * n / seconds(chunks) for _ in range(repeats))


def rate_in_subprocess(native_path: str, model_name: str, batch: int, threads: int, repeats: int,
                       run_seconds: float) -> float:
    """samples_per_s with another build of _native, in a process of its own (pybind11 refuses to
    register the same classes twice in one process)."""
    out = subprocess.run([sys.executable, __file__, "--worker", model_name, str(batch), str(threads),
                          "--native", native_path, "--repeats", str(repeats), "--run-seconds", str(run_seconds)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def build_model(name: str):
    torch.manual_seed(0)
    return (fastwave.WaveNet() if name == "wavenet" else fastwave.SampleTransformer()).eval()


def measure(baseline: str | None, models: dict, batches, thread_counts, repeats, run_seconds,
            loaded: bool) -> list[dict]:
    rows = []
    for model_name, model in models.items():
        for batch in batches:
            for threads in thread_counts:
                for build in ["this"] + (["baseline"] if baseline else []):
                    rate = (samples_per_s(None, model, batch, threads, repeats, run_seconds) if build == "this"
                            else rate_in_subprocess(baseline, model_name, batch, threads, repeats, run_seconds))
                    rows.append({"model": model_name, "batch": batch, "threads": threads, "build": build,
                                 "loaded": loaded, "samples_per_s": rate, "load_average": os.getloadavg()[0]})
                    print(f"{'loaded' if loaded else 'idle':<6} {build:<8} {model_name:<11} batch {batch:>3} "
                          f"threads {threads}: {rate:>10,.0f} samples/s (load {os.getloadavg()[0]:.1f})",
                          flush=True)
    return rows


def summary(rows: list[dict], default_threads: int) -> str:
    """Markdown: one line per (build, model, batch, load), samples/s per thread count, and the
    default's share of the best."""
    counts = sorted({r["threads"] for r in rows})
    lines = ["| build | model | batch | load | " + " | ".join(f"threads {t}" for t in counts)
             + f" | default ({default_threads}) / best |", "|---" * (5 + len(counts)) + "|"]
    keys = sorted({(r["build"], r["model"], r["batch"], r["loaded"]) for r in rows})
    for build, model, batch, loaded in keys:
        rates = {r["threads"]: r["samples_per_s"] for r in rows
                 if (r["build"], r["model"], r["batch"], r["loaded"]) == (build, model, batch, loaded)}
        share = rates[default_threads] / max(rates.values())
        lines.append(f"| {build} | {model} | {batch} | {'busy' if loaded else 'idle'} | "
                     + " | ".join(f"{rates[t]:,.0f}" for t in counts) + f" | {share:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="wavenet,transformer")
    parser.add_argument("--batch", default="1,16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run-seconds", type=float, default=0.4, help="length of one timed run")
    parser.add_argument("--baseline-native", metavar="PATH", help="another build of _native to time alongside")
    parser.add_argument("--busy-per-cpu", type=int, default=1, help="busy processes per usable CPU under load")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--native", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one figure with the build at --native (rate_in_subprocess)
        spec = importlib.util.spec_from_file_location("fastwave.engines._native", args.native)
        native = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(native)
        name, batch, threads = args.worker
        print(samples_per_s(native, build_model(name), int(batch), int(threads), args.repeats, args.run_seconds))
        return 0

    models = {name: build_model(name) for name in args.models.split(",")}
    default = _native.physical_cores()
    thread_counts = sorted({1, 2, default})
    batches = [int(b) for b in args.batch.split(",")]
    cores = len(os.sched_getaffinity(0))
    run = (args.baseline_native, models, batches, thread_counts, args.repeats, args.run_seconds)
    rows = measure(*run, loaded=False)
    with busy_cores(cores * args.busy_per_cpu):
        rows += measure(*run, loaded=True)
    table = summary(rows, default)
    print(table)
    if args.json:
        record = {"command": "python " + " ".join(sys.argv), "processor": platform.processor() or platform.machine(),
                  "usable_cpus": cores, "default_threads": default, "busy_processes": cores * args.busy_per_cpu,
                  "isa": _native.cpu_isas()[0], "rows": rows, "table": table}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
