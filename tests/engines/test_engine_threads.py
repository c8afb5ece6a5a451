"""The C++ engines' threads on a machine they share: capped at the usable CPUs, and the same tokens
whatever the thread count while other processes load every core."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastwave
from fastwave.engines import _native
from fastwave.engines.wavenet_cpu import CpuWaveNetEngine
from test_engines import SHAPES, make_model
from small_models import CONDITIONED_TRANSFORMER, TINY_TRANSFORMER, make_transformer


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
    model = make_transformer(**TINY_TRANSFORMER)
    runs = [fastwave.generate(model, 600, seed=4, engine="cpu", threads=threads, temperature=0.9)
            for threads in (1, 2, None)]
    assert torch.equal(runs[1], runs[0]) and torch.equal(runs[2], runs[0])


def test_late_waits_count_only_exchanges_between_threads(busy_machine):
    model = make_model(layers=3, cycles=1, residual_channels=32, gate_channels=96, skip_channels=32, classes=64)
    alone = CpuWaveNetEngine(model, 1, {}, threads=1)
    shared = CpuWaveNetEngine(model, 1, {}, threads=2)
    for engine in (alone, shared):
        engine.native.prefill(torch.zeros(1, 1, dtype=torch.long).numpy())
        engine.native.generate(2000, 0, 0, 1.0, 0, 1.0, final=False)
    assert alone.native.late_waits == 0  # one thread never waits for a partner
    # Two threads on a loaded machine may or may not have waited; the count is bounded by the
    # exchanges made: 2 threads x (3 layers + 1 for the head) per step.
    assert 0 <= shared.native.late_waits <= 2 * 4 * 2000


def shedding_always(monkeypatch, retry_seconds):
    """Every check finds the team losing (and, with retry_seconds 0, the full team is retried at
    the next check): the most moves between teams a run can make."""
    from fastwave.engines.cpu_native import NativeCpuEngine
    monkeypatch.setattr(NativeCpuEngine, "LATE_WAITS_PER_STEP", -1.0)
    monkeypatch.setattr(NativeCpuEngine, "RETRY_SECONDS", retry_seconds)
    monkeypatch.setattr(NativeCpuEngine, "RECHECK_STEPS", 97)


@pytest.mark.parametrize("retry_seconds", [0.0, 60.0])
@pytest.mark.parametrize("kind", ["wavenet", "transformer", "conditioned"])
def test_moving_between_teams_keeps_the_tokens(monkeypatch, uncapped_threads, kind, retry_seconds):
    if kind == "wavenet":
        model = make_model(layers=3, cycles=1, residual_channels=32, gate_channels=96, skip_channels=32, classes=64)
    else:
        model = make_transformer(**(CONDITIONED_TRANSFORMER if kind == "conditioned" else TINY_TRANSFORMER))
    kwargs = dict(seed=5, engine="cpu", top_p=0.9, chunk_size=250)
    reference = fastwave.generate(model, 1000, threads=1, **kwargs)
    shedding_always(monkeypatch, retry_seconds)
    engines = []
    original = fastwave.engines.cpu_native.NativeCpuEngine._switch

    def spy(self, threads, history):
        engines.append(threads)
        original(self, threads, history)

    monkeypatch.setattr(fastwave.engines.cpu_native.NativeCpuEngine, "_switch", spy)
    assert torch.equal(fastwave.generate(model, 1000, threads=2, **kwargs), reference)
    # 11 checks (chunks of 250 in calls of 97, 97 and 56, but the last): shed once and stay, or
    # shed and retry at every check
    assert engines == ([1] if retry_seconds else [1, 2] * 5 + [1])


def test_a_locally_conditioned_wavenet_keeps_its_team(monkeypatch, uncapped_threads):
    model = make_model(layers=2, cycles=1, local_channels=3, cond_hop=4)
    cond = {"local_cond": torch.randn(1, 3, 300)}
    reference = fastwave.generate(model, 1000, threads=1, seed=2, engine="cpu", cond=cond)
    shedding_always(monkeypatch, 0.0)
    from fastwave.engines.wavenet_cpu import CpuWaveNetEngine
    engine = CpuWaveNetEngine(model, 1, model.prepare_cond(cond, 1, 1001), threads=2)
    assert engine._history(np.zeros((1, 1), np.int64)) is None  # features are read at absolute positions
    assert torch.equal(fastwave.generate(model, 1000, threads=2, seed=2, engine="cpu", cond=cond), reference)


@pytest.mark.parametrize("kind", ["wavenet", "transformer"])
def test_an_int8_engine_keeps_its_team(monkeypatch, uncapped_threads, kind):
    """Another split of a stream changes how int8 rounds it, so shedding threads would make the
    audio depend on the machine's load: an int8 engine keeps its team, and its audio is that of
    its thread count, busy or not."""
    if kind == "wavenet":
        model = make_model(layers=3, cycles=1, residual_channels=32, gate_channels=96, skip_channels=32, classes=64)
    else:
        model = make_transformer(**TINY_TRANSFORMER)
    kwargs = dict(seed=5, engine="cpu", top_p=0.9, chunk_size=250, threads=2, precision="int8")
    reference = fastwave.generate(model, 1000, **kwargs)
    shedding_always(monkeypatch, 0.0)
    switches = []
    monkeypatch.setattr(fastwave.engines.cpu_native.NativeCpuEngine, "_switch",
                        lambda self, threads, history: switches.append(threads))
    assert torch.equal(fastwave.generate(model, 1000, **kwargs), reference)
    assert switches == []
