"""Without a GPU, Triton kernels run in Triton's interpreter: the switch must be set before triton is
first imported, so it is set here, before any test module loads."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def fp32_exact():
    """fp32 products in true fp32 (no TF32) for the parity bounds; the caller's settings restored."""
    from fastwave.engines.step_engine import exact_fp32
    with exact_fp32():
        yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models and fits: thread hand-offs cost more than they save, and on a loaded machine
    several times more (50x measured). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``;
    the caller's setting is restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def uncapped_threads(monkeypatch):
    """Lets the engine wrappers run more threads than this machine's CPUs, so that tests exercise
    3- and 4-way splits of the work on a 2-core machine (users are capped: engine_threads)."""
    from fastwave.engines import _native
    monkeypatch.setattr(_native, "usable_cpus", lambda: 1024)
