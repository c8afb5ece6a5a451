"""Resident memory while the C++ engine streams 10 minutes of audio at batch 1 (default WaveNet).

The engine's state is its ring buffers, allocated once; streaming in chunks keeps only one chunk of
tokens alive, so RSS must stay flat however long the audio. Writes a JSON with RSS after each
minute of audio. Linux only (reads /proc/self/statm).

    python benchmarks/wavenet_cpu_memory.py --out benchmarks/results/wavenet_cpu_memory_10min.json
"""
import argparse
import json
import os
import time

import torch

import fastwave
from fastwave.cli.bench import environment


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = fastwave.WaveNet().eval()
    rate = model.sample_rate
    n = int(args.minutes * 60 * rate)
    start, rss, done = time.perf_counter(), [rss_mib()], 0
    for chunk in fastwave.stream(model, n, engine="cpu", chunk_size=rate * 60, seed=1):
        done += chunk.shape[1]
        rss.append(rss_mib())
        print(f"{done / rate / 60:5.1f} min  RSS {rss[-1]:.1f} MiB", flush=True)
    elapsed = time.perf_counter() - start
    result = {"samples": n, "seconds_of_audio": n / rate, "wall_s": elapsed, "samples_per_s": n / elapsed,
              "rss_mib_before": rss[0], "rss_mib_after_each_minute": rss[1:],
              "rss_growth_after_first_minute_mib": max(rss[1:]) - rss[1],
              "environment": environment("cpu"),
              "command": "python benchmarks/wavenet_cpu_memory.py" + (f" --out {args.out}" if args.out else "")}
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
