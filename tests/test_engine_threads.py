"""The C++ engines' threads on a machine they share: capped at the usable CPUs, and the same tokens
whatever the thread count while other processes load every core."""
import os
import subprocess
import sys

import pytest
import torch

import fastwave
from fastwave import _native
from fastwave.engines.wavenet_cpu import CpuWaveNetEngine
from test_engines import SHAPES, make_model
from test_transformer import TINY
from test_transformer import make_model as make_transformer


def test_threads_beyond_the_usable_cpus_are_capped_with_one_warning():
    model = make_model(**SHAPES[0])
    usable = _native.usable_cpus()
    assert usable >= _native.physical_cores() >= 1
    with pytest.warns(RuntimeWarning, match=f"threads=1000 is more than the {usable} CPUs"):
        engine = CpuWaveNetEngine(model, 1, {}, threads=1000)
    assert engine.native.threads == usable

    reference = fastwave.generate(model, 300, seed=3, engine="cpu", threads=1)
    with pytest.warns(RuntimeWarning):
        assert torch.equal(fastwave.generate(model, 300, seed=3, engine="cpu", threads=1000), reference)



@pytest.fixture
def busy_machine():
    """One busy process per usable CPU, for the test's duration (killed however it ends)."""
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(len(os.sched_getaffinity(0)))]
    try:
        yield
    finally:
        for process in load:
            process.kill()
            process.wait()


@pytest.mark.parametrize("batch", [1, 3])
def test_wavenet_tokens_do_not_depend_on_threads_under_load(busy_machine, batch):
    # 3 layers of 48 gate channels: at batch 1 two threads split every layer and exchange 4 times a
    # step, the path a descheduled partner used to stall.
    model = make_model(layers=3, cycles=1, residual_channels=32, gate_channels=96, skip_channels=32, classes=64)
    runs = [fastwave.generate(model, 1500, batch=batch, seed=11, engine="cpu", threads=threads, top_p=0.95)
            for threads in (1, 2, None)]
    assert torch.equal(runs[1], runs[0]) and torch.equal(runs[2], runs[0])


def test_transformer_tokens_do_not_depend_on_threads_under_load(busy_machine):
    model = make_transformer(**TINY)
    runs = [fastwave.generate(model, 600, seed=4, engine="cpu", threads=threads, temperature=0.9)
            for threads in (1, 2, None)]
    assert torch.equal(runs[1], runs[0]) and torch.equal(runs[2], runs[0])
