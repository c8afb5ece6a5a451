"""A short seeded slice of the native module's fuzz harness (benchmarks/fuzz_native.py; the long run
of 10,000 calls is a README command): no crash, hang, silent acceptance or unexpected exception."""
import importlib.util
import pathlib

HARNESS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_native.py"


def load_harness():
    spec = importlib.util.spec_from_file_location("fuzz_native", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_hundred_malformed_calls_are_all_refused_cleanly():
    result = load_harness().run(calls=300, seed=2024, batch=150)
    counts = result["counts"]
    assert sum(counts.values()) == 300, counts
    for failure in ("crash", "hang", "silent acceptance", "false refusal", "unexpected exception"):
        assert counts.get(failure, 0) == 0, (failure, result["failures"][:5])
    assert counts["clean error"] > 150 and counts.get("accepted (legal)", 0) > 0  # both kinds were drawn


def test_the_harness_tells_failures_apart():
    classify = load_harness().classify
    assert classify({"outcome": "accepted", "legal": False}) == "silent acceptance"
    assert classify({"outcome": "refused ValueError", "legal": True}) == "false refusal"
    assert classify({"outcome": "refused TypeError", "legal": False}) == "clean error"
    assert classify({"outcome": "unexpected KeyError: 'x'", "legal": False}) == "unexpected exception"
    assert classify({"outcome": "accepted", "legal": None}) == "accepted (legal)"
