"""Where a step of the C++ WaveNet engine goes, per precision: the floors behind `fastwave bench`.

For the default WaveNet at batch 1 and 64, with 1 and 2 threads and weights at fp32, fp16 and int8:

- the step time of the default model (microseconds per step; samples/s = batch / step);
- the step time of a model as deep (20 layers, the same dilations, 256 classes) with every matrix cut
  to one or two 16-channel blocks: what a step costs besides its multiply-adds (gates, the
  quantisation of inputs, sampling, ring buffers, and with 2 threads the per-layer hand-offs);
- the multiply-add rate of the engine's product kernel at the step's shapes (``_native.multiply_rate``,
  in the caches), and the time the default model's multiply-adds take at that rate.

Each engine is timed in runs of ~0.1 s interleaved with the others', --repeats times: the best run
(the machine's capacity when nothing else ran) and the median are kept.

    python benchmarks/wavenet_cpu_step_costs.py --json benchmarks/results/wavenet_cpu_step_costs.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

import fastwave
from fastwave.engines import _native
from fastwave.cli.bench import compute_floor
from fastwave.models.wavenet import WaveNet, WaveNetConfig

PRECISIONS = ("fp32", "fp16", "int8")
SMALL = dict(residual_channels=16, gate_channels=32, skip_channels=16)


def step_times(models: dict, batches, threads, repeats: int) -> dict:
    """{(model, batch, threads, precision): [microseconds per step of each run]}, runs interleaved."""
    engines = {}
    for name, model in models.items():
        config, weights = model.export_weights()
        for batch in batches:
            for t in threads:
                for precision in PRECISIONS:
                    engine = _native.WaveNetCpuEngine(config, weights, batch, t, precision=precision)
                    engine.prefill(np.zeros((batch, 1), np.int64))
                    engine.generate(200, 1, 0, 1.0, 0, 1.0, False)
                    start = time.perf_counter()
                    engine.generate(100, 1, 0, 1.0, 0, 1.0, False)
                    steps = max(20, int(0.1 / ((time.perf_counter() - start) / 100)))  # ~0.1 s per run
                    engines[name, batch, t, precision] = (engine, steps)
    times = {key: [] for key in engines}
    for _ in range(repeats):
        for key, (engine, steps) in engines.items():
            start = time.perf_counter()
            engine.generate(steps, 1, 0, 1.0, 0, 1.0, False)
            times[key].append((time.perf_counter() - start) / steps * 1e6)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", default="benchmarks/results/wavenet_cpu_step_costs.json")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    default = WaveNet(WaveNetConfig()).eval()
    models = {"default": default, "small": WaveNet(WaveNetConfig(**SMALL)).eval()}
    macs = default.step_cost()[0] // 2
    rows = []
    times = step_times(models, (1, 64), (1, 2), args.repeats)
    for (name, batch, threads, precision), runs in times.items():
        row = {"model": name, "batch": batch, "threads": threads, "precision": precision,
               "best_us_per_step": min(runs), "median_us_per_step": statistics.median(runs),
               "best_samples_per_s": batch / min(runs) * 1e6}
        if name == "default":  # the product kernel's rate at the step's shapes (fastwave bench's compute floor)
            floor = compute_floor(default, batch, threads, precision)
            row.update(multiply_adds_per_s=floor * macs, multiply_add_us_per_step=batch / floor * 1e6)
        rows.append(row)
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    record = {"rows": rows, "multiply_adds_per_sample": macs, "small_model": SMALL, "repeats": args.repeats,
              "load_average_after": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
              "cpus": _native.usable_cpus(), "isa": _native.cpu_isas()[0], "fastwave": fastwave.__version__}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
