"""Fuzzing fastwave.engines._native: random malformed calls to every bound class and function.

Each call starts from a valid one and breaks one thing: an argument's dtype, layout (strides,
alignment), shape, values (NaN / inf, out of range, huge sizes), type (None, str, float for int),
or the order of calls (generate after a final call; a valid call after a refused one), or runs
with a second thread on the same engine or rewriting the prompt. Targets: both engine classes
(construction and methods), sample_tokens, philox_uniform, philox4x32, cpu_exp, int8_matmul,
multiply_rate and read_bandwidth (the CUDA helpers refuse everything without a GPU). The harness knows which mutations
must be refused and which are legal (an unaligned or strided array is copied, not refused).

Calls run in batches, each in a fresh interpreter that reports one outcome per call, so a crash or a
hang costs one call, not the run. Counted: clean errors (the right exception type), crashes, hangs,
silent acceptances (a malformed call that returned) and false refusals (a legal one that raised).

    python benchmarks/fuzz_native.py --calls 10000 --seed 0 --json benchmarks/results/fuzz_native.json

CI runs a short seeded slice (tests/test_fuzz_native.py).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time

WORKER = r'''
import json, sys, threading
import numpy as np
import fastwave
from fastwave.engines import _native

seed, start, count = (int(a) for a in sys.argv[1:4])
torch_model = fastwave.WaveNet(layers=3, cycles=1, residual_channels=8, gate_channels=8, skip_channels=8,
                               classes=16, global_classes=2, local_channels=2, cond_hop=4).eval()
WN_CONFIG, WN_WEIGHTS = torch_model.export_weights()
TF_CONFIG, TF_WEIGHTS = fastwave.SampleTransformer(layers=1, heads=1, width=16, context=8,
                                                   classes=16).eval().export_weights()
BAD_INTS = [-1, 2 ** 70, 1.5, "3", None, 2 ** 40]
# Config keys each engine does not read (the unconditioned Transformer ignores its cond_* settings;
# pre_emphasis acts after the engine, on the audio its tokens decode to).
WN_UNREAD = {"cycles", "sample_rate", "receptive_field", "pre_emphasis"}
TF_UNREAD = {"sample_rate", "receptive_field", "dropout", "head_dim", "cond_hop", "cond_channels", "cond_kernel",
             "cond_dilations", "cond_patches", "pre_emphasis"}
BAD_FLOATS = [float("nan"), float("inf"), -1.0, "1.0", None]


def wn_args():
    return dict(config=dict(WN_CONFIG), weights=dict(WN_WEIGHTS), batch=2, threads=2,
                global_cond=np.array([0, 1]), local_cond=np.ones((2, 2, 64), np.float32))


def tf_args():
    return dict(config=dict(TF_CONFIG), weights=dict(TF_WEIGHTS), batch=2, threads=2)


def unaligned(a):
    buffer = bytearray(a.nbytes + 1)
    view = np.frombuffer(buffer, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    view[...] = a
    return view


def strided(a):
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else np.zeros(2, a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def mutate_array(rng, a, contiguous_required, finite_required, int_range=None):
    """-> (mutated value, legal?)"""
    kinds = ["dtype", "strided", "unaligned", "shape", "none", "type", "empty"]
    if a.dtype.kind == "f":
        kinds.append("nonfinite")
    if int_range is not None:
        kinds.append("range")
    kind = kinds[rng.integers(len(kinds))]
    if kind == "dtype":
        return a.astype(np.float64 if a.dtype != np.float64 else np.float32), False
    if kind == "strided":
        return strided(a), not contiguous_required
    if kind == "unaligned":
        return unaligned(a), True
    if kind == "shape":  # one more axis: every bound function checks its arrays' rank
        return a[None], False
    if kind == "none":
        return None, False
    if kind == "type":
        return "not an array", False
    if kind == "empty":
        return np.zeros((0,) * max(a.ndim, 1), a.dtype), False
    if kind == "nonfinite":
        b = a.copy()
        b.flat[rng.integers(b.size)] = [np.nan, np.inf, -np.inf][rng.integers(3)]
        return b, not finite_required
    b = a.copy()  # range
    b.flat[rng.integers(b.size)] = [int_range[0] - 1, int_range[1], 2 ** 40][rng.integers(3)]
    return b, False


def engine_case(rng, make, args, arrays, unread):
    """Construction with one argument broken. arrays: name -> (contiguous_required, finite_required);
    unread: the config keys this engine ignores."""
    names = list(args)
    name = names[rng.integers(len(names))]
    legal = False
    if name == "config":
        config = args["config"]
        key = list(config)[rng.integers(len(config))]
        if rng.random() < 0.3:
            del config[key]
            legal = key in unread or key == "model"
        else:
            value = config[key] = BAD_INTS[rng.integers(len(BAD_INTS))]
            if key == "rope_base":  # any number above 1
                legal = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1
            else:
                legal = key in unread
    elif name == "weights":
        weights = args["weights"]
        key = list(weights)[rng.integers(len(weights))]
        if rng.random() < 0.2:
            del weights[key]
        else:
            weights[key], legal = mutate_array(rng, weights[key], True, True)
    elif name in ("batch", "threads"):
        args[name] = [0, -1, 2 ** 21, "2", 1.5, None, 2 ** 70][rng.integers(7)]
    else:  # conditioning arrays
        args[name], legal = mutate_array(rng, args[name], *arrays[name],
                                         int_range=(0, 2) if name == "global_cond" else None)
    return f"construct {name}", (lambda: make(**args)), legal


def method_case(rng, make, args):
    engine = make(**args)
    prompt = rng.integers(0, 16, (2, 5))
    kind = ["prompt", "generate", "order", "threads", "vandal", "after refusal"][rng.integers(6)]
    if kind == "after refusal":  # a refused call leaves the engine usable
        def refused_then_used():
            try:
                engine.prefill(rng.integers(16, 99, (2, 5)))  # tokens out of range
            except ValueError:
                pass
            else:
                raise AssertionError("out-of-range tokens were accepted")
            engine.prefill(prompt)
            assert engine.generate(4, 1, 0, 1.0, 0, 1.0, False).shape == (2, 4)
        return "use after a refused call", refused_then_used, True
    if kind == "prompt":
        value, legal = mutate_array(rng, prompt, True, True, int_range=(0, 16))
        return "prefill prompt", (lambda: engine.prefill(value, return_logits=bool(rng.integers(2)))), legal
    engine.prefill(prompt)
    if kind == "generate":
        call = dict(n=4, seed=1, step0=0, temperature=1.0, top_k=0, top_p=1.0, final=False)
        key = list(call)[rng.integers(len(call))]
        values = BAD_FLOATS if key in ("temperature", "top_p") else BAD_INTS
        value = call[key] = values[rng.integers(len(values))]
        legal = key == "seed" and value == 2 ** 40  # seeds go to 2**64
        if key == "final":
            legal = None  # pybind11 takes any object with a truth value for a bool
        return f"generate {key}", (lambda: engine.generate(**call)), legal
    if kind == "order":
        engine.generate(3, 1, 0, 1.0, 0, 1.0, True)  # final: prefill() must come first again
        return "generate after final", (lambda: engine.generate(3, 1, 0, 1.0, 0, 1.0, False)), False
    if kind == "threads":  # two Python threads on one engine: the second is refused or waits its turn
        errors = []
        def run():
            try:
                engine.generate(200, 1, 0, 1.0, 0, 1.0, False)
            except RuntimeError as error:
                errors.append(error)
        def both():
            threads = [threading.Thread(target=run) for _ in range(2)]
            [t.start() for t in threads]
            [t.join() for t in threads]
        return "two threads", both, None
    big = rng.integers(0, 16, (2, 4000))
    def vandalised():
        stop = threading.Event()
        def vandal():
            while not stop.is_set():
                big.resize((2, 1), refcheck=False)
                big.resize((2, 4000), refcheck=False)
        thread = threading.Thread(target=vandal)
        thread.start()
        try:
            engine.prefill(big, return_logits=True)
        finally:
            stop.set()
            thread.join()
    return "prompt rewritten meanwhile", vandalised, None


def function_case(rng):
    which = rng.integers(7)
    if which == 5:
        args = dict(counter=[1, 2, 3, 4], key=[5, 6])
        key = list(args)[rng.integers(2)]
        args[key] = [[1, 2, 3], [-1, 0, 0, 0], [2 ** 32, 0, 0, 0], None, "1234", [1.5, 0, 0, 0]][rng.integers(6)]
        if key == "key" and isinstance(args[key], list) and len(args[key]) == 4:
            args[key] = args[key][:2]  # a key of the right length with a bad word
        return f"philox4x32 {key}", (lambda: _native.philox4x32(**args)), False
    if which == 6:
        x = rng.standard_normal(7)
        args = dict(x=x, isa="auto")
        if rng.random() < 0.3:
            args["isa"], legal = ["bogus", "", None][rng.integers(3)], False
        else:
            args["x"], legal = mutate_array(rng, x, False, False)
            legal = legal or (isinstance(args["x"], np.ndarray) and args["x"].dtype == np.float64)
        return "cpu_exp", (lambda: _native.cpu_exp(**args)), legal
    if which == 0:
        logits, u = rng.standard_normal((3, 10)).astype(np.float32), np.array([0.1, 0.5, 0.9], np.float32)
        args = dict(logits=logits, u=u, temperature=1.0, top_k=0, top_p=1.0)
        key = list(args)[rng.integers(len(args))]
        legal = False
        if key in ("logits", "u"):
            args[key], legal = mutate_array(rng, args[key], False, True)
        else:
            values = BAD_FLOATS if key != "top_k" else BAD_INTS
            args[key] = values[rng.integers(len(values))]
            legal = key == "top_k" and args[key] == 2 ** 40  # any top_k >= 0 (beyond classes: all)
        return f"sample_tokens {key}", (lambda: _native.sample_tokens(**args)), legal
    if which == 1:
        steps, streams = np.arange(6), np.arange(6) % 2
        args = dict(seed=3, steps=steps, streams=streams)
        key = list(args)[rng.integers(3)]
        if key == "seed":
            args[key], legal = [-1, 2 ** 64, 1.5, None][rng.integers(4)], False
        else:
            args[key], legal = mutate_array(rng, args[key], False, True, int_range=(0, 2 ** 32))
        return f"philox_uniform {key}", (lambda: _native.philox_uniform(**args)), legal
    if which == 2:
        x, w = rng.standard_normal((2, 16)).astype(np.float32), rng.standard_normal((16, 32)).astype(np.float32)
        args = dict(x=x, w=w)
        key = list(args)[rng.integers(2)]
        args[key], legal = mutate_array(rng, args[key], False, True)
        return f"int8_matmul {key}", (lambda: _native.int8_matmul(**args)), legal
    bad = {"precision": ["int4", None, 3], "rows": [-1, 0, 5000, None, 1.5], "inputs": [0, 24, 2 ** 40, None],
           "cols": [0, 24, 2 ** 40, None], "threads": [0, -1, 2000, None], "seconds": [0, -1, float("nan"), 100.0, None],
           "bytes_per_thread": [-1, 0, 2 ** 40, None, "1"]}
    if which == 3:
        args, call = dict(precision="int8", rows=2, inputs=16, cols=16, threads=1, seconds=0.001), _native.multiply_rate
    else:
        args, call = dict(bytes_per_thread=4096, threads=1, seconds=0.001), _native.read_bandwidth
    key = list(args)[rng.integers(len(args))]
    args[key] = bad[key][rng.integers(len(bad[key]))]
    return f"{call.__name__} {key}", (lambda: call(**args)), False


def make_case(rng):
    pick = rng.integers(5)
    if pick == 0:
        return engine_case(rng, _native.WaveNetCpuEngine, wn_args(),
                           {"global_cond": (True, True), "local_cond": (True, True)}, WN_UNREAD)
    if pick == 1:
        return engine_case(rng, _native.TransformerCpuEngine, tf_args(), {}, TF_UNREAD)
    if pick == 2:
        return method_case(rng, _native.WaveNetCpuEngine, wn_args())
    if pick == 3:
        return method_case(rng, _native.TransformerCpuEngine, tf_args())
    return function_case(rng)


CLEAN = (ValueError, TypeError, MemoryError, RuntimeError, OverflowError)
for i in range(start, start + count):
    rng = np.random.default_rng([seed, i])
    print(json.dumps({"i": i, "started": True}), flush=True)
    try:
        name, call, legal = make_case(rng)
    except Exception as error:  # building the valid base failed: a harness bug, reported as such
        print(json.dumps({"i": i, "case": "setup", "outcome": f"setup error {type(error).__name__}: {error}"}), flush=True)
        continue
    try:
        call()
        outcome = "accepted"
    except CLEAN as error:
        outcome = "refused " + type(error).__name__
    except Exception as error:
        outcome = "unexpected " + type(error).__name__ + ": " + str(error)[:200]
    print(json.dumps({"i": i, "case": name, "legal": legal, "outcome": outcome}), flush=True)
'''


def classify(record: dict) -> str:
    outcome, legal = record["outcome"], record.get("legal")
    if outcome.startswith("setup") or outcome.startswith("unexpected"):
        return "unexpected exception"
    if legal is None:  # races: any clean outcome is fine
        return "clean error" if outcome.startswith("refused") else "accepted (legal)"
    if outcome == "accepted":
        return "accepted (legal)" if legal else "silent acceptance"
    return "false refusal" if legal else "clean error"


def run(calls: int, seed: int, batch: int = 250, timeout: float = 120.0) -> dict:
    """Fuzzes ``calls`` calls -> counts by outcome and examples of every failure."""
    counts, failures = collections.Counter(), []
    index = 0
    while index < calls:
        count = min(batch, calls - index)
        try:
            done = subprocess.run([sys.executable, "-c", WORKER, str(seed), str(index), str(count)],
                                  capture_output=True, text=True, timeout=timeout)
            output, died = done.stdout, done.returncode != 0
            status = f"exit {done.returncode}: {done.stderr[-300:]}"
        except subprocess.TimeoutExpired as expired:
            output = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
            died, status = True, "hang"
        last_started, finished = None, set()
        for line in output.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("started"):
                last_started = record["i"]
                continue
            finished.add(record["i"])
            kind = classify(record)
            counts[kind] += 1
            if kind in ("silent acceptance", "false refusal", "unexpected exception"):
                failures.append({**record, "kind": kind})
        if died:  # the call in progress crashed or hung; go on after it
            culprit = last_started if last_started is not None and last_started not in finished else index
            kind = "hang" if status == "hang" else "crash"
            counts[kind] += 1
            failures.append({"i": culprit, "kind": kind, "status": status})
            index = culprit + 1
        else:
            index += count
    return {"calls": calls, "seed": seed, "counts": dict(counts), "failures": failures[:50]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(args.calls, args.seed)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result["counts"], indent=1))
    for failure in result["failures"][:10]:
        print(failure)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    bad = sum(result["counts"].get(k, 0)
              for k in ("crash", "hang", "silent acceptance", "false refusal", "unexpected exception"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
