"""`fastwave bench`: its cost model (the sample Transformer's cost as its cache fills, the C++
engine's bandwidth floor: weights and, for the transformer, keys and values per thread, bytes per
precision), and how it times: the loop alone, bounded in time, with progress and a busy-machine
warning. Nothing here asserts a speed: the timing tests run on a fake clock."""
import json
import os

import pytest
import torch

import fastwave
from fastwave.cli import bench
from fastwave.cli.bench import (CLOCK_TICK, STATE_BYTES_SCALE, WEIGHT_BYTES_SCALE, bench_engines, busy_warning, cost_by_fill,
                            cpu_floor, cpu_weight_bytes, engine_precision, fill_points, fill_table_batch,
                            matrix_rows, precision_engines_help, row_notes, stored_state_bytes, stored_weight_bytes,
                            thread_step_bytes, time_engine)
from fastwave.cli import main
from fastwave.engines import generation

TINY = ["--layers", "4", "--cycles", "2", "--residual-channels", "8", "--gate-channels", "8",
        "--skip-channels", "8", "--classes", "64"]

# The paper's model (the defaults): 3 layers, width 128, 4 heads, MLP ratio 4, context 1600, 256 classes.
MATRIX_MACS = 3 * (4 * 128 * 128 + 2 * 128 * 512) + 128 * 256


def attention_macs(filled):
    return 3 * 2 * filled * 128


def kv_bytes(filled):
    return 3 * 2 * filled * 128 * 4


@pytest.fixture(scope="module")
def paper_model():
    return fastwave.SampleTransformer()


def test_default_step_cost_is_the_full_context(paper_model):
    assert paper_model.step_cost() == (3_702_784, 2_490_368) == (2 * (MATRIX_MACS + attention_macs(1600)),
                                                                   4 * MATRIX_MACS)
    assert paper_model.state_bytes() == kv_bytes(1600) == 4_915_200
    assert paper_model.step_cost(1600) == paper_model.step_cost(10 ** 6) == paper_model.step_cost()
    assert paper_model.state_bytes(5000) == paper_model.state_bytes()
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="filled"):
            paper_model.step_cost(bad)
        with pytest.raises(ValueError, match="filled"):
            paper_model.state_bytes(bad)


def test_cost_by_fill_of_the_paper_model(paper_model):
    assert fill_points(1600) == [1, 400, 800, 1600] and fill_points(2) == [1, 2] and fill_points(1) == [1]
    costs = cost_by_fill(paper_model, batch=16)
    assert [c["filled"] for c in costs] == [1, 400, 800, 1600]
    assert [c["context_fraction"] for c in costs] == [1 / 1600, 0.25, 0.5, 1.0]
    for c in costs:
        n = c["filled"]
        assert c["flops_per_sample"] == 2 * (MATRIX_MACS + attention_macs(n))
        assert c["weight_bytes_per_step"] == 4 * MATRIX_MACS == 2_490_368  # the weights do not grow
        assert c["kv_bytes_per_stream"] == kv_bytes(n)
        assert c["bytes_per_sample_batch1"] == 4 * MATRIX_MACS + kv_bytes(n)
        assert c["batch"] == 16 and c["bytes_per_sample"] == pytest.approx(4 * MATRIX_MACS / 16 + kv_bytes(n))
    first, full = costs[0], costs[-1]
    assert first["flops_per_sample"] == 1_246_720 and first["kv_bytes_per_stream"] == 3_072
    assert full["flops_per_sample"] == 3_702_784 and full["bytes_per_sample_batch1"] == 7_405_568
    # past the context the window slides: the cost stays at the full context's
    assert cost_by_fill(paper_model, [1600, 4000])[1] == {**cost_by_fill(paper_model, [1600])[0], "filled": 4000}
    assert cost_by_fill(paper_model, [7])[0]["bytes_per_sample"] == cost_by_fill(paper_model, [7])[0]["bytes_per_sample_batch1"]


def test_cost_by_fill_refuses_wavenet_and_bad_batches(paper_model):
    with pytest.raises(TypeError, match="SampleTransformer"):
        cost_by_fill(fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4))
    with pytest.raises(ValueError, match="batch"):
        cost_by_fill(paper_model, batch=0)
    assert fill_table_batch([1]) == 16 and fill_table_batch([1, 4]) == 4 and fill_table_batch([32, 2]) == 32


def test_thread_step_bytes():
    weights, kv = 2_490_368, 4_915_200
    # WaveNet (no state): each thread streams the weights split between its group's threads
    assert thread_step_bytes(weights, 1, 2) == (2, weights / 2)
    assert thread_step_bytes(weights, 16, 2) == (2, weights)
    assert thread_step_bytes(weights, 3, 8) == (6, weights / 2)  # 3 groups of 2 threads
    # the transformer: plus its heads' keys and values of every row of its group
    assert thread_step_bytes(weights, 1, 2, kv, 4) == (2, weights / 2 + kv / 2)
    assert thread_step_bytes(weights, 16, 2, kv, 4) == (2, weights + 8 * kv)
    assert thread_step_bytes(weights, 5, 2, kv, 4) == (2, weights + 3 * kv)  # rows 3 + 2: the larger group
    assert thread_step_bytes(weights, 1, 3, kv, 4) == (3, weights / 3 + kv / 2)  # heads 1, 1, 2
    assert thread_step_bytes(weights, 1, 8, kv, 4) == (8, weights / 8 + kv / 4)  # one head at most


def test_cpu_weight_bytes_leave_out_the_tabled_layer_0_projection(paper_model):
    # The unconditioned Transformer's layer-0 q, k, v come from a per-token table in the C++ engine.
    _, weights = paper_model.step_cost()
    assert cpu_weight_bytes(paper_model, weights) == weights - 4 * 3 * 128 * 128
    conditioned = fastwave.SampleTransformer.conditioned(layers=1, heads=1, width=16, context=8)
    assert cpu_weight_bytes(conditioned, 1000) == 1000
    wavenet = fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4)
    assert cpu_weight_bytes(wavenet, 1000) == 1000


def test_wavenet_floor_counts_the_weights_only():
    floor = cpu_floor(1_000_000, 4, 2)
    # two groups of one thread: each streams all the weights per step, for 2 of the 4 rows
    assert floor["threads"] == 2 and floor["thread_bytes_per_step"] == 1_000_000
    assert floor["floor_samples_per_s"] == pytest.approx(4 * floor["read_bytes_per_s"] / (2 * 1_000_000))


def test_bench_prints_the_fill_table(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--model", "transformer", "--engines", "cpu", "--seconds", "0.02", "--repeats", "1",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("cost per sample as the context fills"):]
    assert "context 1600" in table and "KB/stream b16" in table and "K/V KB/stream" in table
    lines = [line.split() for line in table.splitlines()[3:] if line.strip() and not line.startswith("wrote")]
    assert [line[:2] for line in lines] == [["1", "0%"], ["400", "25%"], ["800", "50%"], ["1,600", "100%"]]
    assert lines[-1][2:] == ["3.703", "2490.4", "4915.2", "7405.6", f"{(2_490_368 / 16 + 4_915_200) / 1e3:.1f}"]
    (row,) = json.loads(path.read_text())
    assert row["engine"] == "cpu" and row["batch"] == 1 and row["samples_per_s"] > 0
    # the floor counts the keys and values each thread streams, not the weights alone (less layer
    # 0's q, k, v matrix, which the engine replaces by a per-token table)
    threads = row["threads"]
    weights = 2_490_368 - 4 * 3 * 128 * 128
    assert row["thread_bytes_per_step"] == thread_step_bytes(weights, 1, threads, 4_915_200, 4)[1]
    assert row["thread_bytes_per_step"] > 2_490_368 / threads
    assert [c["filled"] for c in row["cost_by_fill"]] == [1, 400, 800, 1600]
    assert row["cost_by_fill"][-1]["bytes_per_sample"] == 7_405_568  # at the row's batch, 1


def tiny_wavenet():
    return fastwave.WaveNet(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4, classes=16)


class FakeEngine:
    """A fake clock and a fake ``stream`` on it: ``setup`` seconds (a list, one per stream, or a
    number) before the first chunk, ``per_sample`` seconds per sample."""

    def __init__(self, monkeypatch, per_sample, setup=0.0):
        self.now, self.per_sample, self.setup, self.streams = 0.0, per_sample, setup, []
        monkeypatch.setattr(bench, "perf_counter", lambda: self.now)
        monkeypatch.setattr(bench, "stream", self.stream)

    def stream(self, model, n_samples, *, batch, chunk_size, **_):
        self.streams.append((n_samples, chunk_size))
        self.now += self.setup.pop(0) if isinstance(self.setup, list) else self.setup
        for start in range(0, n_samples, chunk_size):
            count = min(chunk_size, n_samples - start)
            self.now += count * self.per_sample
            yield torch.zeros(batch, count, dtype=torch.long)


class FakeBar:
    def __init__(self):
        self.runs, self.postfix = 0, None

    def update(self):
        self.runs += 1

    def set_postfix_str(self, text):
        self.postfix = text


def test_a_run_times_the_loop_alone(monkeypatch):
    # Setting up (building the engine, feeding the prompt) takes 0 to 100 s, 1 ms per sample: the
    # old generate(n) - generate(1) would have come out negative; a run is the 100 samples' 0.1 s.
    fake = FakeEngine(monkeypatch, per_sample=1e-3, setup=[0.0, 100.0])
    bar = FakeBar()
    median, samples = time_engine(tiny_wavenet(), "torch", 1, 100, 5, max_seconds=10.0, bar=bar)
    assert samples == 100 and median == pytest.approx(0.1)
    # a warm-up stream in small chunks, then runs + 1 chunks of the samples per run
    assert fake.streams == [(100, 100 // bench.WARM_UP_CHUNKS), (600, 100)]
    assert bar.runs == 5 and bar.postfix == "100 samples/run"


def test_a_run_is_never_zero_or_negative(monkeypatch):
    FakeEngine(monkeypatch, per_sample=0.0, setup=5.0)  # a clock that does not move during the loop
    median, samples = time_engine(tiny_wavenet(), "cpu", 2, 50, 3)
    assert samples == 50 and median == CLOCK_TICK > 0


def test_a_slow_engine_is_timed_on_fewer_samples(monkeypatch):
    # 1 s per sample: the warm-up stops after its second chunk of 6, and each run gets the 2 samples
    # that fit 2.5 s
    fake = FakeEngine(monkeypatch, per_sample=1.0, setup=30.0)
    median, samples = time_engine(tiny_wavenet(), "naive", 1, 100, 3, max_seconds=2.5)
    assert samples == 2 and median == pytest.approx(2.0)
    assert fake.streams[1] == (8, 2)
    # slower than the bound for a single sample: runs of 1, timed all the same
    fake = FakeEngine(monkeypatch, per_sample=4.0)
    assert time_engine(tiny_wavenet(), "naive", 1, 1, 3, max_seconds=1.0) == (4.0, 1)
    with pytest.raises(ValueError, match="n_samples"):
        time_engine(tiny_wavenet(), "naive", 1, 0, 3)


def test_rows_say_when_the_time_bound_cut_them_or_the_machine_looks_busy():
    row = {"engine": "cpu", "batch": 1, "samples_per_run": 400, "samples_wanted": 4000, "max_seconds_per_run": 1.0,
           "fraction_of_floor": 0.02, "floor_samples_per_s": 60_000, "floor": "bandwidth"}
    cut, busy = row_notes(row)
    assert "400 samples per run, not 4,000" in cut and "1 s" in cut and "--max-seconds-per-run" in cut
    assert "2.0% of its bandwidth floor" in busy and "probably busy" in busy
    assert "of its compute floor" in row_notes({**row, "floor": "compute"})[1]
    assert row_notes({**row, "samples_per_run": 4000, "fraction_of_floor": 0.7}) == []
    assert row_notes({**row, "samples_per_run": 4000, "batch": 16}) == []
    # a model so small that its floor does not bind: no busy note
    assert row_notes({**row, "samples_per_run": 4000, "floor_samples_per_s": 10 ** 7}) == []


def test_busy_warning():
    assert busy_warning({"load_average": 3.5, "usable_cores": 2}).startswith("load average 3.50 on 2 usable cores")
    assert busy_warning({"load_average": 2.0, "usable_cores": 2}) is None
    assert busy_warning({"load_average": None, "usable_cores": 2}) is None  # no load average on this system


def test_bench_warns_when_busy_shows_progress_and_bounds_its_runs(tmp_path, capsys, monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 2.0, 0.0, 0.0))
    path = tmp_path / "bench.json"
    # a bound of 1 ms: the torch engine's run of 800 samples is cut to the few that fit
    assert main(["bench", "--engines", "torch", "--seconds", "0.05", "--repeats", "2", "--max-seconds-per-run",
                 "0.001", "--json", str(path)] + TINY) == 0
    captured = capsys.readouterr()
    assert f"warning: load average {cores + 2:.2f} on {cores} usable cores" in captured.err
    assert "bench torch batch 1" in captured.err and "2/2" in captured.err and "samples/run" in captured.err
    assert "warning" not in captured.out and "bench torch batch 1" not in captured.out  # stdout: the table
    (row,) = json.loads(path.read_text())
    assert row["load_average"] == cores + 2.0 and row["usable_cores"] == cores and row["max_seconds_per_run"] == 0.001
    assert row["samples_wanted"] == 800 and 1 <= row["samples_per_run"] < 800 and row["median_s"] > 0
    assert row["notes"] and f"note: {row['notes'][0]}" in captured.out
    # --quiet: no progress; the warning stays
    assert main(["bench", "--engines", "cpu", "--seconds", "0.005", "--repeats", "1", "--quiet"] + TINY) == 0
    err = capsys.readouterr().err
    assert "warning: load average" in err and "bench cpu" not in err and "run/s" not in err
    assert main(["bench", "--max-seconds-per-run", "0"] + TINY) == 2
    assert "--max-seconds-per-run must be a positive" in capsys.readouterr().err


def test_precision_engines_come_from_the_engines_precisions(monkeypatch):
    wavenet, transformer = tiny_wavenet(), fastwave.SampleTransformer(layers=1, heads=1, width=16, context=4, classes=16)
    for model in (wavenet, transformer):  # every precision the C++ engines take has its bytes here
        for precision in generation.cpu_precisions(model):
            assert precision in WEIGHT_BYTES_SCALE and precision in STATE_BYTES_SCALE[model.model_type]
    assert bench_engines(transformer) == ["naive", "torch", "cpu"] + [
        f"cpu-{p}" for p in generation.cpu_precisions(transformer) if p != "fp32"]
    monkeypatch.setitem(generation.CPU_PRECISIONS, "wavenet", ("fp32", "fp16", "int8"))
    assert bench_engines(wavenet) == ["naive", "torch", "cpu", "cpu-fp16", "cpu-int8"]
    assert "wavenet: cpu-fp16, cpu-int8" in precision_engines_help()
    assert engine_precision("cpu-int8") == ("cpu", "int8") and engine_precision("torch") == ("torch", "fp32")


def test_bytes_stored_per_precision():
    transformer, wavenet = fastwave.SampleTransformer(), fastwave.WaveNet()
    for model in (transformer, wavenet):  # one int8 scale per output row of every matrix step_cost counts
        rows = sum(m.out_features if isinstance(m, torch.nn.Linear) else m.out_channels for m in model.modules()
                   if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d)))
        assert matrix_rows(model) == rows
        weights = model.step_cost()[1]
        assert stored_weight_bytes(model, weights, "fp32") == weights
        assert stored_weight_bytes(model, weights, "fp16") == weights // 2
        assert stored_weight_bytes(model, weights, "int8") == weights // 4 + 4 * rows
        assert stored_state_bytes(model, "fp32") == model.state_bytes()
    assert matrix_rows(transformer) == 3 * (3 * 128 + 128 + 512 + 128) + 256
    # the transformer's engine stores its KV cache at its precision: int8 with an fp32 scale per
    # position, head and K or V (3 layers, 2 K/V, 1,600 positions: 128 bytes and 4 scales each)
    assert stored_state_bytes(transformer, "fp16") == transformer.state_bytes() // 2
    assert stored_state_bytes(transformer, "int8") == 3 * 2 * 1600 * (128 + 4 * 4)
    assert stored_state_bytes(wavenet, "fp16") == stored_state_bytes(wavenet, "int8") == wavenet.state_bytes()
