"""The speed side of the piano model's shape: how fast the C++ engine plays 4 s of random score 0 with
untrained WaveNets of several shapes reading the shipped model's 144-channel score (a network's speed
does not depend on its weights), 2 threads, fp32, runs interleaved so that the shared machine's load
falls on every shape alike. Whether a shape plays as well is a training run's question
(piano_model.py --shape).

    python benchmarks/experiments/piano_shape_speed.py   # -> benchmarks/results/piano_shape_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fastwave  # noqa: E402
from _common import parameters, run_record  # noqa: E402
from fastwave import pretrained  # noqa: E402
from fastwave.corpora.score import ROLL_HOP  # noqa: E402
from piano_model import DEFAULT_SHAPE, wavenet_shape  # noqa: E402

SHAPES = (DEFAULT_SHAPE, "30/3/64/128/128", "20/2/96/192/128", "20/2/48/96/96", "24/2/32/64/64")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each shape, interleaved")
    parser.add_argument("--record", default=os.path.join(os.path.dirname(__file__), "..", "results",
                                                         "piano_shape_speed.json"))
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be in [1, 100]")
    started, samples = time.perf_counter(), 64000
    cond = pretrained.piano_cond(samples, [0])
    models = {}
    for shape in SHAPES:
        torch.manual_seed(0)
        models[shape] = fastwave.WaveNet(local_channels=pretrained.PIANO_CHANNELS, cond_hop=ROLL_HOP,
                                         **wavenet_shape(shape)).eval()
    load_before, speeds = list(os.getloadavg()), {shape: [] for shape in SHAPES}
    for _ in range(args.runs):
        for shape, model in models.items():
            tick = time.perf_counter()
            fastwave.generate(model, samples, cond=cond, seed=0, engine="cpu", threads=2)
            speeds[shape].append(round(samples / model.sample_rate / (time.perf_counter() - tick), 2))
    record = {"note": "layers/cycles/residual/gate/skip; untrained networks, 4 s of random score 0, engine cpu, "
                      "threads 2, fp32, seed 0, runs interleaved",
              "load_average_before_after": [load_before, list(os.getloadavg())],
              "shapes": {shape: {**wavenet_shape(shape), "parameters": parameters(model),
                                 "receptive_field": model.receptive_field, "real_time_factor": speeds[shape]}
                         for shape, model in models.items()},
              **run_record(0, "cpu", time.perf_counter() - started)}
    with open(args.record, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    for shape, entry in record["shapes"].items():
        print(f"{shape}: {entry['parameters'] / 1e6:.2f} M parameters, {entry['real_time_factor']}x real time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
