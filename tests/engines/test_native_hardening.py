"""Inputs that used to crash, hang or silently corrupt the native module (issue 24), each run in a
subprocess so that a crash fails its test instead of ending the run."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import fastwave
from fastwave.engines import _native
from test_engines import make_model

PRELUDE = """
import numpy as np, resource, sys, threading
from fastwave.engines import _native
"""


def run_python(*parts: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs PRELUDE and the parts (each dedented) in a fresh interpreter -> its result."""
    code = PRELUDE + "".join(textwrap.dedent(part) for part in parts)
    no_site = ["-S"] if sys.flags.no_site else []  # .ci/sanitize runs its build without site hooks
    return subprocess.run([sys.executable, *no_site, "-c", code], capture_output=True, text=True, timeout=timeout)


def wavenet_args_code(batch: int = 1, threads: int = 1) -> str:
    return f"""
import torch
from fastwave import WaveNet
torch.manual_seed(0)
config, weights = WaveNet(layers=4, cycles=2, residual_channels=8, gate_channels=8, skip_channels=8,
                          classes=32).eval().export_weights()
args = (config, weights, {batch}, {threads})
"""


@pytest.mark.parametrize("cls", ["WaveNetCpuEngine", "TransformerCpuEngine"])
def test_an_engine_made_without_init_refuses_every_method(cls):
    result = run_python(f"""
        engine = _native.{cls}.__new__(_native.{cls})
        calls = [lambda: engine.prefill(np.zeros((1, 4), np.int64)), lambda: engine.generate(4, 0, 0, 1.0, 0, 1.0, False)]
        calls += [lambda name=name: getattr(engine, name) for name in
                  ("batch", "classes", "threads", "isa", "precision", "position", "receptive_field", "state_bytes",
                   "late_waits")]
        for call in calls:
            try:
                call()
                print("accepted")
            except TypeError as error:
                assert "never initialised" in str(error), error
                print("refused")
        try:
            _native.{cls}.prefill(3, None)  # an unbound method on something else
        except TypeError as error:
            print("refused", error)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("refused") == 12 and "accepted" not in result.stdout


@pytest.mark.parametrize("return_logits", [True, False])
def test_a_prompt_resized_by_another_thread_during_prefill_cannot_crash(return_logits):
    result = run_python(wavenet_args_code(batch=1, threads=2), f"""
        engine = _native.WaveNetCpuEngine(*args)
        for trial in range(20):
            prompt = np.random.default_rng(trial).integers(0, 32, (1, 20000))
            stop = threading.Event()
            def vandal():
                while not stop.is_set():
                    prompt.resize((1, 1), refcheck=False)  # frees the old buffer
                    prompt.resize((1, 20000), refcheck=False)
            thread = threading.Thread(target=vandal)
            thread.start()
            try:
                engine.prefill(prompt, return_logits={return_logits})
            except ValueError:
                pass  # a shape or token check saw a resized array: refused, fine
            finally:
                stop.set()
                thread.join()
        print("survived")
    """)
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-2000:]


# AddressSanitizer reserves terabytes of address space for its shadow memory: no RLIMIT_AS under it.
needs_address_limits = pytest.mark.skipif(os.environ.get("FASTWAVE_SANITIZED") == "1",
                                          reason="address-space limits do not work under AddressSanitizer")


@needs_address_limits
def test_worker_threads_that_cannot_start_are_an_error_not_a_hang():
    result = run_python(wavenet_args_code(), """
        # Enough address space for Python and a few threads' stacks, not for 1,024 of them.
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        try:
            _native.WaveNetCpuEngine(args[0], args[1], 1024, 1024)
        except (RuntimeError, MemoryError) as error:
            print("refused:", error)
        engine = _native.WaveNetCpuEngine(*args)  # the module still works
        engine.prefill(np.zeros((1, 3), np.int64))
        print(engine.generate(5, 0, 0, 1.0, 0, 1.0, False).shape)
    """, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: could not start 1023 worker threads" in result.stdout and "(1, 5)" in result.stdout


@needs_address_limits
def test_a_worker_out_of_memory_raises_instead_of_aborting():
    result = run_python("""
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        try:
            _native.read_bandwidth(1 << 33, 2, 0.01)  # 8 GiB per thread, allocated in the threads
        except MemoryError:
            print("MemoryError")
        print(_native.read_bandwidth(1 << 20, 2, 0.01) > 0)  # the pool still works
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["MemoryError", "True"]


def unaligned(array: np.ndarray) -> np.ndarray:
    """The same values, C-contiguous, at an address one byte off the dtype's alignment."""
    buffer = bytearray(array.nbytes + 1)
    view = np.frombuffer(buffer, dtype=array.dtype, offset=1, count=array.size).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned and view.flags.c_contiguous
    return view


def test_unaligned_inputs_give_the_aligned_results():
    model = make_model(layers=4, cycles=2, global_classes=3, local_channels=2, cond_hop=4)
    config, weights = model.export_weights()
    prompt = np.random.default_rng(0).integers(0, 32, (2, 30))
    ids, local = np.array([0, 2]), np.random.default_rng(1).standard_normal((2, 2, 20)).astype(np.float32)
    expected = _native.WaveNetCpuEngine(config, weights, 2, 1, global_cond=ids, local_cond=local).prefill(
        prompt, return_logits=True)
    engine = _native.WaveNetCpuEngine(config, {k: unaligned(v) for k, v in weights.items()}, 2, 1,
                                      global_cond=unaligned(ids), local_cond=unaligned(local))
    assert np.array_equal(engine.prefill(unaligned(prompt), return_logits=True), expected)
    logits = np.random.default_rng(2).standard_normal((3, 10)).astype(np.float32)
    u = np.array([0.1, 0.5, 0.9], np.float32)
    assert np.array_equal(_native.sample_tokens(unaligned(logits), unaligned(u), 1.0, 0, 1.0),
                          _native.sample_tokens(logits, u, 1.0, 0, 1.0))
    steps, streams = np.arange(6), np.arange(6) % 2
    assert np.array_equal(_native.philox_uniform(7, unaligned(steps), unaligned(streams)),
                          _native.philox_uniform(7, steps, streams))


def test_a_rope_base_beyond_double_is_a_value_error():
    config, weights = fastwave.SampleTransformer(layers=1, heads=1, width=16, context=8, classes=16).export_weights()
    with pytest.raises(ValueError, match=r"rope_base.*finite number"):
        _native.TransformerCpuEngine({**config, "rope_base": 10 ** 400}, weights, 1, 1)


@pytest.mark.parametrize("engine", ["cpu", "torch", "naive"])
@pytest.mark.parametrize("model_type", ["wavenet", "transformer"])
def test_logits_that_overflow_are_refused_not_sampled(engine, model_type):
    """Finite weights whose activations overflow float32 used to make every engine emit one token."""
    if model_type == "wavenet":
        model = make_model(layers=2, cycles=1)
        with torch.no_grad():
            model.head[1].weight.fill_(3e38)  # finite, but the logits overflow
    else:
        model = fastwave.SampleTransformer(layers=1, heads=1, width=16, context=8, classes=16).eval()
        with torch.no_grad():
            model.head.weight.fill_(3e38)
    with pytest.raises(ValueError, match="non-finite"):
        fastwave.generate(model, 50, engine=engine, seed=1)
