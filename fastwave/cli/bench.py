"""`fastwave bench`: generation speed of every engine on one model, measured the same way.

Protocol: the same random weights for every engine; every run continues a prompt one receptive
field long, so each engine is timed in its steady state (without it the naive engine would see
short windows and look faster than it is). Per engine and batch, ``time_engine``:

- Warm-up and time bound. A first stream, in small chunks, warms the engine up and measures its
  rate from its first chunk on; it stops once ``max_seconds_per_run`` have passed. When a run of
  the samples asked for (``--seconds`` of audio; for the naive engine at most ``NAIVE_MAX_SAMPLES``)
  would take longer than that at this rate, the engine is timed on fewer (``samples_per_run`` <
  ``samples_wanted``, and a note says so), so a slow engine or a busy machine cannot make the bench
  run for an hour. Rates are per second either way.
- Timed runs: the median of ``repeats``. A second stream of ``repeats + 1`` chunks of
  ``samples_per_run`` samples: its first chunk (building the engine, feeding the prompt, one more
  warm-up) is not timed; each later chunk is one run, timed on a monotonic clock from the previous
  chunk's arrival to its own. A run is thus the generation loop alone, without building the
  engine or feeding the prompt (which engines do in very different ways), and it cannot come out
  negative or zero however loaded the machine (it counts at least one tick of the clock), as a
  difference of two timed calls could.

Speed is reported as samples/s over all streams, the multiple of real time at the model's sample
rate, the ratio to the torch engine measured in the same run, and the per-sample floor: FLOPs and
weight bytes one incremental step needs, and the bytes of cached state it reads per stream
(WaveNet's ring-buffer taps; the sample Transformer's keys and values with the context full, which
outweigh its weights at 1,600 positions).

Besides naive, torch and cpu, the bench times ``cpu-<precision>`` for every other precision the
model's C++ engine stores (``fastwave.engines.generation.cpu_precisions``): its weight bytes scale
by ``WEIGHT_BYTES_SCALE`` (int8 adds one fp32 scale per output row of each matrix), its state bytes
by ``STATE_BYTES_SCALE`` of the model and precision.

The sample Transformer's step costs more as its cache fills: ``cost_by_fill`` gives its FLOPs and
bytes per sample at 1 position, a quarter, half and all of the context (the steady state: past the
context the window slides), the weights read once per step for the whole batch, the keys and values
once per stream.

For the C++ engine the floor is also a rate: each thread streams, once per step, its share of the
weights it reads (``cpu_weight_bytes``; a group of threads splits them) and, for the sample Transformer, the keys and values of its
heads for every row of its group (the group splits the heads); the read bandwidth of the same
threads over buffers of that size, measured here, caps the steps per second
(``bandwidth_floor_samples_per_s``). WaveNet's ring-buffer state is a few KB per stream and is
left out of its floor. Past a few streams a WaveNet step is bound by its multiply-adds instead:
``compute_floor`` times the engine's own product kernel at the step's shapes and precision
(``compute_floor_samples_per_s``). ``floor_samples_per_s`` is the lower of the two (``floor`` names
it) and ``fraction_of_floor`` says how close the engine gets.

A busy machine gives low and noisy figures, the C++ engine's most (its threads wait on each other):
before timing, the bench warns on stderr when the load average exceeds the usable cores, and
records both in every row; a C++ row at batch 1 below ``BUSY_FRACTION_OF_FLOOR`` of a floor that
binds (``FLOOR_BINDS_BELOW``) gets a note that the machine is probably busy.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from contextlib import closing
from time import perf_counter

import torch

from ..audio import mulaw_silence
from ..engines import stream
from ..engines.generation import CPU_PRECISIONS, available_engines, cpu_precisions
from ..engines.wavenet_cpu import default_threads
from ..models import SampleTransformer, WaveNet
from .._files import open_atomically

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

# Each timed run is cut to about this many seconds (`fastwave bench --max-seconds-per-run`): the
# README's `fastwave bench` then takes well under a minute on 2 idle cores, and a few on busy ones.
DEFAULT_MAX_SECONDS_PER_RUN = 1.0
# The warm-up stream comes in this many chunks, so that it can stop soon after the time bound.
WARM_UP_CHUNKS = 16
# The timing reads ``perf_counter`` by this module's name for it, so that tests can run it on a
# fake clock; a run counts at least one tick.
CLOCK_TICK = time.get_clock_info("perf_counter").resolution
# The C++ engine reaches 60-95% of its bandwidth floor at batch 1 on an idle machine (docs/generation.md's
# runs); far below that, something else is using the cores. That holds where the floor binds: a
# model so small that its floor is above FLOOR_BINDS_BELOW samples/s is held back by the step's
# fixed costs (sampling, the threads' hand-offs), and its fraction says nothing about the load.
BUSY_FRACTION_OF_FLOOR = 0.1
FLOOR_BINDS_BELOW = 200_000


def build_model(name: str, device: str, seed: int = 0, **sizes):
    """A random-weight sample model ("wavenet" or "transformer") of the given sizes, in eval mode."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    torch.manual_seed(seed)
    return MODELS[name](**sizes).to(device).eval()


def time_engine(model, engine: str, batch: int, n_samples: int, repeats: int, seed: int = 0,
                threads: int | None = None, precision: str = "fp32",
                max_seconds: float = DEFAULT_MAX_SECONDS_PER_RUN, bar=None) -> tuple[float, int]:
    """(median wall seconds of ``repeats`` runs, samples per stream in a run) of one engine; a run
    is at most ``n_samples`` samples, fewer when that would take over ``max_seconds`` at the
    warm-up's rate (the module docstring says how). bar: a tqdm bar to report the runs on."""
    if n_samples < 1 or repeats < 1:
        raise ValueError(f"n_samples and repeats must be >= 1, got {n_samples} and {repeats}")
    prompt = torch.full((model.receptive_field,), mulaw_silence(model.config.classes), dtype=torch.long)

    def chunks(n, chunk_size):
        return stream(model, n, batch=batch, prompt=prompt, engine=engine, seed=seed, threads=threads,
                      precision=precision, chunk_size=chunk_size)

    with closing(chunks(n_samples, max(1, n_samples // WARM_UP_CHUNKS))) as warm_up:
        rate = warm_up_rate(warm_up, max_seconds)
    samples = min(n_samples, max(1, int(rate * max_seconds)))
    if bar is not None:
        bar.set_postfix_str(f"{samples:,} samples/run")
    with closing(chunks(samples * (repeats + 1), samples)) as runs:
        times = timed_runs(runs, bar)
    return statistics.median(times), samples


def warm_up_rate(chunks, max_seconds: float) -> float:
    """Samples per second per stream of a warm-up stream, counted from its first chunk's arrival
    (building the engine and feeding the prompt left out) until it ends or ``max_seconds`` have
    passed; the first chunk's own rate, prompt included, when no chunk follows it."""
    start = perf_counter()
    first = next(chunks).shape[1]
    mark = perf_counter()
    done, elapsed = 0, 0.0
    for chunk in chunks:
        done += chunk.shape[1]
        elapsed = perf_counter() - mark
        if elapsed >= max_seconds:
            break
    if not done:
        done, elapsed = first, mark - start
    return done / max(elapsed, CLOCK_TICK)


def timed_runs(chunks, bar=None) -> list[float]:
    """Seconds each chunk after the first takes to arrive, from the previous chunk's arrival (at
    least one clock tick): the loop alone, one run per chunk. Chunks arrive as CPU tensors: a CUDA
    engine has finished a chunk when it arrives."""
    next(chunks)  # the engine built, the prompt fed: not timed
    times = []
    mark = perf_counter()
    for _ in chunks:
        times.append(max(perf_counter() - mark, CLOCK_TICK))
        if bar is not None:
            bar.update()
        mark = perf_counter()
    return times


def _native_module():
    from ..engines import _native
    return _native


def thread_groups(batch: int, threads: int) -> tuple[int, int, int]:
    """How the C++ engine splits its threads (csrc/cpu/engine_support.h, plan_threads): (groups of
    rows, threads per group, rows of the largest group)."""
    groups = min(batch, threads)
    return groups, threads // groups, -(-batch // groups)


def thread_step_bytes(weight_bytes: int, batch: int, threads: int, state_bytes: int = 0,
                      state_parts: int = 1) -> tuple[int, float]:
    """(threads used, bytes the busiest thread of the C++ engine streams per step).

    Groups of threads share rows (min(batch, threads) groups, threads // groups per group, the rows
    split as evenly as they go); every group streams all the weights once per step, split between
    its threads, and the ``state_bytes`` per stream of each of its rows, split into ``state_parts``
    parts (the sample Transformer's heads) dealt out between its threads.
    """
    groups, members, rows = thread_groups(batch, threads)
    parts = -(-state_parts // members)  # the busiest thread's parts (1 when threads outnumber them)
    return groups * members, weight_bytes / members + rows * state_bytes * parts / state_parts


def cpu_floor(weight_bytes: int, batch: int, threads: int, state_bytes: int = 0, state_parts: int = 1) -> dict:
    """The C++ engine's bandwidth floor at this batch and thread count (see the module docstring):
    the aggregate read bandwidth of the engine's threads, each over a buffer of the bytes it streams
    per step (``thread_step_bytes``), divided by those bytes -> steps, times the batch -> samples.
    ``state_bytes`` 0 (WaveNet): the weights alone."""
    from ..engines import _native

    used, per_thread = thread_step_bytes(weight_bytes, batch, threads, state_bytes, state_parts)
    bandwidth = _native.read_bandwidth(max(1024, int(per_thread)), used, seconds=0.3)
    return {"threads": used, "read_bytes_per_s": bandwidth, "thread_bytes_per_step": per_thread,
            "floor_samples_per_s": batch * bandwidth / (used * per_thread)}


def compute_floor(model, batch: int, threads: int, precision: str) -> float:
    """The C++ WaveNet engine's compute floor (samples/s) at this batch and thread count: the rate at
    which its threads run the engine's own product kernel at the step's shapes (a group's rows, up
    to 64, times the conv's input channels and one thread's share of its gate columns; weights at
    ``precision``, in the caches; ``_native.multiply_rate``), divided by the multiply-adds of one
    sample. The gates, the quantisation of inputs, sampling and the threads' hand-offs come on top."""
    from ..engines import _native

    c = model.config
    groups, members, rows = thread_groups(batch, threads)
    rows = min(64, rows)
    gate_columns = 2 * -(-(c.gate_channels // 2) // 16) * 16
    columns = max(16, -(-gate_columns // members // 16) * 16)
    inputs = -(-c.residual_channels // 16) * 16
    rate = _native.multiply_rate(precision, rows, inputs, columns, groups * members, seconds=0.2)
    return rate / (model.step_cost()[0] / 2)


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


# Bytes the C++ engine stores per weight, relative to fp32, at each precision it takes (int8 adds
# one fp32 scale per output row of each matrix: ``stored_weight_bytes``).
WEIGHT_BYTES_SCALE = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}
# Bytes of cached state per stream, relative to fp32, by model and precision, set apart from the
# weights': the transformer's engine stores its KV cache at its precision (int8 adds one fp32 scale
# per position, head and K or V: ``stored_state_bytes``); WaveNet's ring buffers stay fp32. A
# precision missing here fails test_bench's check.
STATE_BYTES_SCALE = {"wavenet": {"fp32": 1.0, "fp16": 1.0, "int8": 1.0},
                     "transformer": {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}}


def bench_engines(model) -> list[str]:
    """The engines `fastwave bench` can time for this model, slowest first: ``available_engines``
    and, with the C++ engine, ``cpu-<precision>`` for each other precision it stores."""
    names = available_engines(model)
    if "cpu" in names:
        names += [f"cpu-{precision}" for precision in cpu_precisions(model) if precision != "fp32"]
    return names


def engine_precision(name: str) -> tuple[str, str]:
    """A bench engine name -> (the engine ``generate`` takes, its precision): "cpu-fp16" -> ("cpu", "fp16")."""
    engine, _, precision = name.partition("-")
    return engine, precision or "fp32"


def precision_engines_help() -> str:
    """The ``cpu-<precision>`` engines each model offers, for ``fastwave bench --help``."""
    def engines(model, precisions):
        return ", ".join(f"cpu-{p}" + (" (its state too)" if STATE_BYTES_SCALE[model][p] < 1 else "")
                         for p in precisions if p != "fp32") or "none"
    return "; ".join(f"{model}: {engines(model, precisions)}" for model, precisions in CPU_PRECISIONS.items())


def matrix_rows(model) -> int:
    """Output rows of the matrices ``step_cost`` counts (int8 stores one fp32 scale per row)."""
    c = model.config
    if model.model_type == "transformer":  # q, k, v, output, MLP up (mlp_ratio * width) and down; head
        return c.layers * (5 + c.mlp_ratio) * c.width + c.classes
    # WaveNet: per layer the gate taps and the skip (all but the last layer: the residual); head
    return (c.layers * (c.gate_channels + c.skip_channels) + (c.layers - 1) * c.residual_channels
            + c.skip_channels + c.classes)


def stored_weight_bytes(model, fp32_bytes: int, precision: str) -> int:
    """The bytes ``fp32_bytes`` of the model's fp32 weights take stored at ``precision``."""
    scales = 4 * matrix_rows(model) if precision == "int8" else 0
    return int(WEIGHT_BYTES_SCALE[precision] * fp32_bytes) + scales


def stored_state_bytes(model, precision: str) -> int:
    """Bytes of cached state one step reads per stream with the state stored as at ``precision``."""
    scale = STATE_BYTES_SCALE[model.model_type][precision]
    if model.model_type == "transformer" and precision == "int8":  # 4 scale bytes per head_dim int8s
        scale += model.config.heads / model.config.width
    return int(scale * model.state_bytes())


def machine_load() -> dict:
    """The 1-minute load average (None where the system has none) and the cores this process may
    run on."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not Unix
        load = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return {"load_average": load, "usable_cores": cores}


def busy_warning(load: dict) -> str | None:
    """A warning when the load average (``machine_load``) exceeds the usable cores, else None."""
    if load["load_average"] is None or load["load_average"] <= load["usable_cores"]:
        return None
    return (f"load average {load['load_average']:.2f} on {load['usable_cores']} usable cores: other processes "
            "are using the CPU, so the figures will be low and noisy (the C++ engine's most: its threads "
            "wait on each other); bench on an idle machine for figures to quote")


def run_bench(model_name="wavenet", engines=None, batches=(1,), seconds=0.25, device="cpu", repeats=5,
              threads=None, max_seconds_per_run=DEFAULT_MAX_SECONDS_PER_RUN, progress=False,
              **sizes) -> list[dict]:
    """Time each engine at each batch size -> one row (dict) per (engine, batch).

    Warns on stderr first when the machine is busy (``busy_warning``); progress: a tqdm bar on
    stderr per engine and batch (the runs done, the samples per run)."""
    model = build_model(model_name, device, **sizes)
    available = bench_engines(model)
    engines = list(engines or available)
    missing = [e for e in engines if e not in available]
    if missing:
        raise ValueError(f"engines {missing} cannot run here; available: {available}")
    load = machine_load()
    warning = busy_warning(load)
    if warning:
        print(f"fastwave bench: warning: {warning}", file=sys.stderr)
    n_full = max(1, round(seconds * model.sample_rate))
    rows = []
    for batch in batches:
        for engine in engines:
            n = min(n_full, NAIVE_MAX_SAMPLES[model_name]) if engine == "naive" else n_full
            rows.append({**bench_row(model, engine, batch, n, repeats, threads, max_seconds_per_run, progress),
                         **load})
        torch_rate = next((r["samples_per_s"] for r in rows if r["batch"] == batch and r["engine"] == "torch"), None)
        for row in rows:
            if row["batch"] == batch:
                row["speedup_vs_torch"] = row["samples_per_s"] / torch_rate if torch_rate else None
    return rows


def bench_row(model, engine: str, batch: int, n_samples: int, repeats: int, threads, max_seconds: float,
              progress: bool) -> dict:
    """Time one engine at one batch (runs of at most ``n_samples``) -> its row of the table."""
    from tqdm.auto import tqdm

    base_engine, precision = engine_precision(engine)
    with tqdm(total=repeats, desc=f"bench {engine} batch {batch}", unit="run", file=sys.stderr,
              disable=not progress) as bar:
        bar.set_postfix_str("warm-up")
        elapsed, samples = time_engine(model, base_engine, batch, n_samples, repeats, threads=threads,
                                       precision=precision, max_seconds=max_seconds, bar=bar)
    flops, weight_bytes = model.step_cost()
    per_sample_work = model.receptive_field if engine == "naive" else 1
    row = {
        "model": model.model_type, "engine": engine, "device": next(model.parameters()).device.type,
        "batch": batch, "samples_wanted": n_samples, "samples_per_run": samples, "repeats": repeats,
        "max_seconds_per_run": max_seconds, "median_s": elapsed,
        "samples_per_s": batch * samples / elapsed,
        "realtime_factor": batch * samples / elapsed / model.sample_rate,
        "flops_per_sample": flops * per_sample_work,
        "weight_bytes_per_sample": stored_weight_bytes(model, weight_bytes, precision) / batch,
        "state_bytes_per_sample": stored_state_bytes(model, precision),
        "precision": precision,
    }
    if base_engine == "cpu":
        # The transformer's threads also stream their heads' keys and values of every row.
        transformer = model.model_type == "transformer"
        state = (stored_state_bytes(model, precision), model.config.heads) if transformer else (0, 1)
        used = min(threads or default_threads(), _native_module().usable_cpus())
        row.update(cpu_floor(stored_weight_bytes(model, cpu_weight_bytes(model, weight_bytes), precision), batch,
                             used, *state))
        row["bandwidth_floor_samples_per_s"] = row["floor_samples_per_s"]
        if not transformer:  # past a few streams a WaveNet step is bound by its multiply-adds, not its bytes
            row["compute_floor_samples_per_s"] = compute_floor(model, batch, used, precision)
            row["floor_samples_per_s"] = min(row["floor_samples_per_s"], row["compute_floor_samples_per_s"])
        row["floor"] = ("compute" if row["floor_samples_per_s"] < row["bandwidth_floor_samples_per_s"]
                        else "bandwidth")
        row["fraction_of_floor"] = row["samples_per_s"] / row["floor_samples_per_s"]
    if model.model_type == "transformer":
        row["cost_by_fill"] = cost_by_fill(model, batch=batch)
    row["notes"] = row_notes(row)
    return row


def row_notes(row: dict) -> list[str]:
    """What a reader of the row should know: the time bound cut its runs, or the C++ engine ran so
    far below a floor that binds that the machine is probably busy."""
    who = f"{row['engine']} at batch {row['batch']}"
    notes = []
    if row["samples_per_run"] < row["samples_wanted"]:
        notes.append(f"{who} was timed on {row['samples_per_run']:,} samples per run, not {row['samples_wanted']:,}: "
                     f"at its warm-up's rate a run would have taken over {row['max_seconds_per_run']:g} s "
                     "(--max-seconds-per-run)")
    if (row["batch"] == 1 and row.get("fraction_of_floor", 1.0) < BUSY_FRACTION_OF_FLOOR
            and row["floor_samples_per_s"] < FLOOR_BINDS_BELOW):
        notes.append(f"{who} reached {row['fraction_of_floor']:.1%} of its {row['floor']} floor (25-95% on an idle "
                     "machine): the machine is probably busy")
    return notes


def format_notes(rows: list[dict]) -> str:
    """The rows' notes, one line each ("" when none)."""
    return "\n".join(f"note: {note}" for row in rows for note in row["notes"])


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} x{len(names)}" if names else platform.machine()
    except OSError:  # not Linux
        return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    from .. import __version__

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
    with open_atomically(path, name="--json") as f:
        json.dump(rows, f, indent=2)
        f.write("\n")
