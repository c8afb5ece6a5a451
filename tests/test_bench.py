"""`fastwave bench`'s cost model: the sample Transformer's cost as its cache fills, and the C++
engine's bandwidth floor (weights and, for the transformer, keys and values per thread)."""
import json

import pytest

import fastwave
from fastwave.bench import cost_by_fill, cpu_floor, cpu_weight_bytes, fill_points, fill_table_batch, thread_step_bytes
from fastwave.cli import main

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
