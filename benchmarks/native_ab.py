"""Two builds of fastwave.engines._native, interleaved: samples/s of the default model's C++ engine.

For changes inside the step code whose effect is smaller than this VM's drift between runs: each
round times build A then build B (a fresh process each, best of 3 calls after a warm-up), for
--rounds rounds, and the JSON keeps every figure and the median per build.

    python benchmarks/native_ab.py OLD/_native*.so NEW/_native*.so --precision int8 --batch 1,64
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

RUN = r"""
import importlib.util, sys, time, numpy as np, torch, fastwave
spec = importlib.util.spec_from_file_location("_native", sys.argv[1])
native = importlib.util.module_from_spec(spec); spec.loader.exec_module(native)
torch.manual_seed(0)
model = (fastwave.WaveNet() if sys.argv[2] == "wavenet" else fastwave.SampleTransformer()).eval()
config, weights = model.export_weights()
Engine = native.WaveNetCpuEngine if sys.argv[2] == "wavenet" else native.TransformerCpuEngine
batch, n = int(sys.argv[4]), int(sys.argv[5])
engine = Engine(config, weights, batch, 2, precision=sys.argv[3])
engine.prefill(np.random.default_rng(0).integers(0, 256, size=(batch, 5000)).astype(np.int64))
engine.generate(n // 4, 1, 0, 1.0, 0, 1.0, False)
best = 0.0
for _ in range(3):
    start = time.perf_counter(); engine.generate(n, 1, 0, 1.0, 0, 1.0, False)
    best = max(best, n * batch / (time.perf_counter() - start))
print(best)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--model", choices=["wavenet", "transformer"], default="wavenet")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--samples", type=int, default=64000, help="per timed call, over all streams")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    figures = {}
    for _ in range(args.rounds):
        for batch in map(int, args.batch.split(",")):
            for name, path in (("a", args.a), ("b", args.b)):
                n = max(100, args.samples // batch)
                out = subprocess.run([sys.executable, "-c", RUN, path, args.model, args.precision, str(batch), str(n)],
                                     capture_output=True, text=True, check=True).stdout
                figures.setdefault(f"batch {batch}", {}).setdefault(name, []).append(round(float(out)))
    record = {"a": args.a, "b": args.b, "model": args.model, "precision": args.precision, "threads": 2,
              "load_average_after": os.getloadavg()[0], "samples_per_s": figures,
              "median": {k: {n: statistics.median(v) for n, v in runs.items()} for k, runs in figures.items()}}
    print(json.dumps(record["median"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
