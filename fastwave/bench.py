"""`fastwave bench`: generation speed of every engine on one model, measured the same way.

Protocol: the same random weights for every engine, one warm-up run, then the median of
``repeats`` timed runs of ``fastwave.generate`` continuing a one-receptive-field prompt; speed is reported as samples/s over all streams,
the multiple of real time at the model's sample rate, the ratio to the torch engine measured in the
same run, and the per-sample floor: FLOPs and weight bytes one incremental step needs, and the bytes
of cached state it reads per stream (WaveNet's ring-buffer taps; the sample Transformer's keys and
values with the context full, which outweigh its weights at 1,600 positions).

The sample Transformer's step costs more as its cache fills: ``cost_by_fill`` gives its FLOPs and
bytes per sample at 1 position, a quarter, half and all of the context (the steady state: past the
context the window slides), the weights read once per step for the whole batch, the keys and values
once per stream.

For the C++ engine the floor is also a rate: each thread streams, once per step, its share of the
weights it reads (``cpu_weight_bytes``; a group of threads splits them) and, for the sample Transformer, the keys and values of its
heads for every row of its group (the group splits the heads); the read bandwidth of the same
threads over buffers of that size, measured here, caps the steps per second
(``floor_samples_per_s``); ``fraction_of_floor`` says how close the engine gets. WaveNet's
ring-buffer state is a few KB per stream and is left out of its floor.
"""
from __future__ import annotations

import json
import platform
import statistics
import time

import torch

from .audio import mulaw_silence
from .engines import generate
from .engines.generation import available_engines
from .engines.wavenet_cpu import default_threads
from .models import SampleTransformer, WaveNet

# The naive engine does a whole receptive field of work per sample: time it on fewer samples (the
# transformer's forward over its 4,798-sample receptive field takes over a second on 2 cores).
NAIVE_MAX_SAMPLES = {"wavenet": 32, "transformer": 4}
MODELS = {"wavenet": WaveNet, "transformer": SampleTransformer}
# The size arguments `fastwave bench` / `generate` expose per model (the config's other fields keep
# their defaults).
MODEL_SIZES = {
    "wavenet": ("layers", "cycles", "kernel_size", "residual_channels", "gate_channels", "skip_channels",
                "classes", "sample_rate"),
    "transformer": ("layers", "heads", "width", "mlp_ratio", "context", "cond_window", "classes", "sample_rate"),
}


def build_model(name: str, device: str, seed: int = 0, **sizes):
    """A random-weight sample model ("wavenet" or "transformer") of the given sizes, in eval mode."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    torch.manual_seed(seed)
    return MODELS[name](**sizes).to(device).eval()


def time_engine(model, engine: str, batch: int, n_samples: int, repeats: int, seed: int = 0,
                threads: int | None = None, precision: str = "fp32") -> float:
    """Median wall seconds the generation loop takes for ``n_samples - 1`` samples per stream.

    Each of ``repeats`` runs (after one warm-up) times generate(n_samples) and generate(1) with the
    same setup and subtracts: what remains is the loop alone, without building the engine or
    feeding the prompt, which engines do in very different ways (one parallel pass, or steps).
    Every run continues a prompt one receptive field long, so each engine is timed in its steady
    state: without it the naive engine would see short windows and look faster than it is.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 (the loop is timed as n - 1 samples), got {n_samples}")
    prompt = torch.full((model.receptive_field,), mulaw_silence(model.config.classes), dtype=torch.long)
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)

    def seconds(n, run):
        sync()
        start = time.perf_counter()
        generate(model, n, batch=batch, prompt=prompt, engine=engine, seed=seed + run, threads=threads,
                 precision=precision)
        sync()
        return time.perf_counter() - start

    times = []
    for run in range(repeats + 1):
        loop = seconds(n_samples, run) - seconds(1, run)
        if run:  # run 0 is the warm-up
            times.append(loop)
    median = statistics.median(times)
    if median <= 0:
        raise ValueError(f"the {engine} engine's {n_samples} samples ran faster than the timer's noise; "
                         "measure more samples (--seconds)")
    return median


def thread_step_bytes(weight_bytes: int, batch: int, threads: int, state_bytes: int = 0,
                      state_parts: int = 1) -> tuple[int, float]:
    """(threads used, bytes the busiest thread of the C++ engine streams per step).

    Groups of threads share rows (min(batch, threads) groups, threads // groups per group, the rows
    split as evenly as they go); every group streams all the weights once per step, split between
    its threads, and the ``state_bytes`` per stream of each of its rows, split into ``state_parts``
    parts (the sample Transformer's heads) dealt out between its threads.
    """
    groups = min(batch, threads)
    members = threads // groups
    rows = -(-batch // groups)  # the largest group's rows
    parts = -(-state_parts // members)  # the busiest thread's parts (1 when threads outnumber them)
    return groups * members, weight_bytes / members + rows * state_bytes * parts / state_parts


def cpu_floor(weight_bytes: int, batch: int, threads: int, state_bytes: int = 0, state_parts: int = 1) -> dict:
    """The C++ engine's bandwidth floor at this batch and thread count (see the module docstring):
    the aggregate read bandwidth of the engine's threads, each over a buffer of the bytes it streams
    per step (``thread_step_bytes``), divided by those bytes -> steps, times the batch -> samples.
    ``state_bytes`` 0 (WaveNet): the weights alone."""
    from . import _native

    used, per_thread = thread_step_bytes(weight_bytes, batch, threads, state_bytes, state_parts)
    bandwidth = _native.read_bandwidth(max(1024, int(per_thread)), used, seconds=0.3)
    return {"threads": used, "read_bytes_per_s": bandwidth, "thread_bytes_per_step": per_thread,
            "floor_samples_per_s": batch * bandwidth / (used * per_thread)}


def cpu_weight_bytes(model, weight_bytes: int) -> int:
    """The fp32 weight bytes the C++ engine streams per step: all of them, except that for an
    unconditioned sample Transformer a per-token table (one row read per step) replaces layer 0's
    q, k, v projection, whose input is the token's embedding alone."""
    config = model.config
    if model.model_type == "transformer" and config.cond_window == 0:
        return weight_bytes - 4 * 3 * config.width * config.width
    return weight_bytes


def fill_points(context: int) -> list[int]:
    """The cache fills ``cost_by_fill`` reports by default: 1 position, a quarter, half and all of
    the context (fewer when the context is too short for them to differ)."""
    return sorted({1, max(1, context // 4), max(1, context // 2), context})


def cost_by_fill(model, fills=None, batch: int = 1) -> list[dict]:
    """The sample Transformer's cost per sample as its cache fills -> one dict per fill.

    fills: positions each step attends to (``SampleTransformer.step_cost``; default
    ``fill_points(context)``). Each dict: ``filled``, ``context_fraction`` (min(filled, context) /
    context), ``flops_per_sample``, ``weight_bytes_per_step`` (every step reads all the weights
    once, whatever the fill and the batch), ``kv_bytes_per_stream`` (fp32 keys and values of every
    layer), ``bytes_per_sample_batch1`` (weights + keys and values), and at ``batch`` streams
    ``bytes_per_sample`` = weights / batch + keys and values: the weights amortise over the batch,
    the cache does not.
    """
    if getattr(model, "model_type", None) != "transformer":
        raise TypeError(f"cost_by_fill takes a SampleTransformer, got {type(model).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    context = model.config.context
    costs = []
    for filled in fill_points(context) if fills is None else fills:
        flops, weight_bytes = model.step_cost(filled)
        kv_bytes = model.state_bytes(filled)
        costs.append({"filled": filled, "context_fraction": min(filled, context) / context,
                      "flops_per_sample": flops, "weight_bytes_per_step": weight_bytes,
                      "kv_bytes_per_stream": kv_bytes, "bytes_per_sample_batch1": weight_bytes + kv_bytes,
                      "batch": batch, "bytes_per_sample": weight_bytes / batch + kv_bytes})
    return costs


def fill_table_batch(batches) -> int:
    """The batch the printed fill table amortises the weights over: the largest benched, or 16 when
    only batch 1 was (what a server decoding 16 streams would see)."""
    return max(batches) if max(batches) > 1 else 16


# Bench-only names for engine options worth a row of their own: the C++ transformer engine with its
# matrices and KV cache stored in half precision (fastwave.generate(..., precision="fp16")).
ENGINE_VARIANTS = {"cpu-fp16": ("cpu", "fp16")}


def bench_engines(model) -> list[str]:
    """The engines (and variants) `fastwave bench` can time for this model, slowest first."""
    names = available_engines(model)
    if "cpu" in names and model.model_type == "transformer":
        names.append("cpu-fp16")
    return names


def run_bench(model_name="wavenet", engines=None, batches=(1,), seconds=0.25, device="cpu",
              repeats=5, threads=None, **sizes) -> list[dict]:
    """Time each engine at each batch size -> one row (dict) per (engine, batch)."""
    model = build_model(model_name, device, **sizes)
    available = bench_engines(model)
    engines = list(engines or available)
    missing = [e for e in engines if e not in available]
    if missing:
        raise ValueError(f"engines {missing} cannot run here; available: {available}")
    rate = model.sample_rate
    flops, weight_bytes = model.step_cost()
    transformer = model.model_type == "transformer"
    n_full = max(2, round(seconds * rate))
    rows = []
    for batch in batches:
        for engine in engines:
            n = min(n_full, NAIVE_MAX_SAMPLES[model_name]) if engine == "naive" else n_full
            base_engine, precision = ENGINE_VARIANTS.get(engine, (engine, "fp32"))
            elapsed = time_engine(model, base_engine, batch, n, repeats, threads=threads, precision=precision)
            stored = 0.5 if precision == "fp16" else 1.0  # bytes per stored value, relative to fp32
            per_sample_work = model.receptive_field if engine == "naive" else 1
            row = {
                "model": model_name, "engine": engine, "device": device, "batch": batch,
                "samples_per_run": n, "repeats": repeats, "median_s": elapsed,
                "samples_per_s": batch * (n - 1) / elapsed,
                "realtime_factor": batch * (n - 1) / elapsed / rate,
                "flops_per_sample": flops * per_sample_work,
                "weight_bytes_per_sample": stored * weight_bytes / batch,
                "state_bytes_per_sample": stored * model.state_bytes(),
                "precision": precision,
            }
            if base_engine == "cpu":
                # The transformer's threads also stream their heads' keys and values of every row.
                state = (int(stored * model.state_bytes()), model.config.heads) if transformer else (0, 1)
                row.update(cpu_floor(int(stored * cpu_weight_bytes(model, weight_bytes)), batch,
                                     threads or default_threads(), *state))
                row["fraction_of_floor"] = row["samples_per_s"] / row["floor_samples_per_s"]
            if transformer:
                row["cost_by_fill"] = cost_by_fill(model, batch=batch)
            rows.append(row)
        torch_rate = next((r["samples_per_s"] for r in rows if r["batch"] == batch and r["engine"] == "torch"), None)
        for row in rows:
            if row["batch"] == batch:
                row["speedup_vs_torch"] = row["samples_per_s"] / torch_rate if torch_rate else None
    return rows


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} x{len(names)}" if names else platform.machine()
    except OSError:  # not Linux
        return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    from . import __version__

    env = {"fastwave": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "processor": _cpu_name(), "threads": torch.get_num_threads()}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def format_table(rows: list[dict]) -> str:
    header = (f"{'engine':<9} {'batch':>5} {'samples/s':>12} {'x realtime':>10} {'vs torch':>9} {'GFLOP/sample':>13} "
              f"{'weight KB/sample':>17} {'state KB/sample':>16} {'floor samples/s':>16} {'of floor':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        speedup = f"{r['speedup_vs_torch']:.2f}x" if r.get("speedup_vs_torch") else "-"
        lines.append(f"{r['engine']:<9} {r['batch']:>5} {r['samples_per_s']:>12,.1f} {r['realtime_factor']:>10.3f} "
                     f"{speedup:>9} {r['flops_per_sample'] / 1e9:>13.4f} {r['weight_bytes_per_sample'] / 1e3:>17.1f} "
                     f"{r['state_bytes_per_sample'] / 1e3:>16.1f} "
                     + (f"{r['floor_samples_per_s']:>16,.0f} {r['fraction_of_floor']:>8.0%}" if "floor_samples_per_s" in r
                        else f"{'-':>16} {'-':>8}"))
    return "\n".join(lines)


def format_fill_table(costs: list[dict]) -> str:
    """``cost_by_fill`` as text: bytes per sample at batch 1 and per stream at the costs' batch."""
    batch = costs[0]["batch"] if costs else 1
    at_batch = f"KB/stream b{batch}"
    header = (f"{'filled':>8} {'of context':>10} {'MFLOP/sample':>13} {'weight KB/step':>15} "
              f"{'K/V KB/stream':>14} {'KB/sample b1':>13} {at_batch:>{max(15, len(at_batch))}}")
    lines = [header, "-" * len(header)]
    for c in costs:
        lines.append(f"{c['filled']:>8,} {c['context_fraction']:>10.0%} {c['flops_per_sample'] / 1e6:>13.3f} "
                     f"{c['weight_bytes_per_step'] / 1e3:>15.1f} {c['kv_bytes_per_stream'] / 1e3:>14.1f} "
                     f"{c['bytes_per_sample_batch1'] / 1e3:>13.1f} "
                     f"{c['bytes_per_sample'] / 1e3:>{max(15, len(at_batch))}.1f}")
    return "\n".join(lines)


def write_json(rows: list[dict], path: str) -> None:
    with open(path, "w") as f:
        json.dump(rows, f, indent=2)
        f.write("\n")
