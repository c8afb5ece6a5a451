"""The classifier commands of docs/tagging.md, run verbatim on generated sounds: writes an FSD50K-style data set
(wav files + a CSV of comma-separated labels: low tones, high tones, noise bursts, mixed), trains the
default WaveletClassifier with `fastwave train-classifier`, scores it with `fastwave evaluate` and
draws its front end with `fastwave analyze-frontend`.

    python benchmarks/classifier_demo.py --clips 600 --epochs 20 --out benchmarks/results/classifier_demo

Generated sounds, not real recordings: the figure shows where a front end trained on *these* sounds
puts its filters (`fastwave corpus` renders real instruments: docs/corpora.md). The generator is the test suite's
(tests/synthetic_audio.py).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def write_dataset(folder: str, clips: int, seed: int) -> None:
    import soundfile
    from synthetic_audio import SOUNDS, tagged_mixtures

    os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
    audio, targets = tagged_mixtures(clips, seconds=(0.5, 3.0), seed=seed)
    with open(os.path.join(folder, "labels.csv"), "w") as handle:
        handle.write("fname,labels\n")
        for i, (clip, row) in enumerate(zip(audio, targets)):
            soundfile.write(os.path.join(folder, "audio", f"{i:05d}.wav"), clip, 16000, subtype="PCM_16")
            handle.write(f'{i:05d},"{",".join(n for n, on in zip(SOUNDS, row) if on)}"\n')


def run(command: list[str]) -> str:
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-2000:])
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")
    print(done.stdout, flush=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "classifier_demo"))
    parser.add_argument("--work", default="/tmp/fastwave_classifier_demo", help="data and checkpoints")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    data, run_dir = os.path.join(args.work, "data"), os.path.join(args.work, "run")
    write_dataset(data, args.clips, args.seed)
    started = time.time()
    fastwave = [sys.executable, "-m", "fastwave.cli"]
    train = run(fastwave + ["train-classifier", f"{data}/audio", "--labels", f"{data}/labels.csv", "--out-dir", run_dir,
                            "--epochs", str(args.epochs), "--seed", str(args.seed), "--quiet"])
    trained = time.time() - started
    table = run(fastwave + ["evaluate", f"{run_dir}/best.safetensors", f"{data}/audio", "--labels",
                            f"{data}/labels.csv", "--split", "test", "--quiet"])
    figure = os.path.join(args.out, "frontend.png")
    summary = run(fastwave + ["analyze-frontend", f"{run_dir}/best.safetensors", "--out", figure])
    import torch

    result = {"command": " ".join([sys.argv[0]] + sys.argv[1:]), "clips": args.clips, "epochs": args.epochs,
              "seed": args.seed, "train_seconds": round(trained, 1), "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "history": json.load(open(os.path.join(run_dir, "history.json")))["eval"],
              "test": json.load(open(os.path.join(run_dir, "report.json")))["test"]}
    with open(os.path.join(args.out, "result.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    with open(os.path.join(args.out, "README.md"), "w") as handle:
        handle.write(f"# Classifier demo on generated sounds\n\n`{result['command']}` — {args.clips} clips, "
                     f"{args.epochs} epochs, trained in {trained:.0f} s on {os.cpu_count()} CPU cores "
                     f"(torch {torch.__version__}).\n\n```\n{train.strip()}\n```\n\nTest split, `fastwave evaluate`:\n\n"
                     f"```\n{table.strip()}\n```\n\n`fastwave analyze-frontend`:\n\n```\n{summary.strip()}\n```\n\n"
                     "![front end](frontend.png)\n")


if __name__ == "__main__":
    main()
