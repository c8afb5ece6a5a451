#!/usr/bin/env bash
# Issue 28's GPU run: the piano WaveNet trained on a lent GPU, in device calls that resume each other.
#
# The device machine has no corpus, soundfile or SoundFont, so prepare the tokens here once (43 MB):
#   python benchmarks/experiments/piano_model.py --pre-emphasis 0 --export-tokens data/piano_tokens.npz
# then, with the device tool:
#   run(command="bash benchmarks/gpu_piano_training.sh", carry=["data/piano_tokens.npz", "runs/piano_gpu"],
#       timeout_s=600)
# Training stops itself BUDGET seconds in (checkpoints every 100 updates, so at most 100 are lost) and
# the run folder comes back as $OUT/piano_gpu: copy it to runs/piano_gpu and call again to go on (the
# trainer resumes exactly; keep STEPS and the flags the same). Back here, on the CPU:
#   python benchmarks/experiments/piano_eval.py --model runs/piano_gpu/last.safetensors --record ...
#   (and runs/piano_gpu/ema.safetensors, the moving average of the weights)
#   python benchmarks/experiments/piano_noise_floor.py --model runs/piano_gpu/last.safetensors --record ...
# Batch 32 (4x the CPU runs'): a GPU is idle at 8 crops of 4,096 samples.
# DEVICE=cpu STEPS=4 BUDGET=60 runs the same path on a CPU (a smoke test of the script).
set -euo pipefail
OUT=${OUT:-/tmp/fastwave_out}
RUN=${RUN:-runs/piano_gpu}
STEPS=${STEPS:-20000}
BUDGET=${BUDGET:-480}
DEVICE=${DEVICE:-cuda}
# From scratch, reading each key's onset envelope from the first update: what stage 14 showed worth
# most (docs/piano_model.md). INIT=fastwave/assets/piano_wavenet.safetensors starts from the shipped
# weights instead (they read the envelope: keep ENVELOPE); ENVELOPE="" trains on the roll alone.
INIT=${INIT-}
ENVELOPE=${ENVELOPE-0.2}
export PYTHONPATH=$PWD  # training needs the Python package only, not the native module
mkdir -p "$OUT" "$RUN"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
fi
started=$(date +%s)
# SIGINT: the trainer's KeyboardInterrupt; its checkpoints up to the last hundred updates stay
timeout --signal=INT --kill-after=30 "$BUDGET" python benchmarks/experiments/piano_model.py --device "$DEVICE" \
  --tokens data/piano_tokens.npz --pre-emphasis 0 ${INIT:+--init "$INIT"} ${ENVELOPE:+--onset-envelope "$ENVELOPE"} --steps "$STEPS" --batch-size 32 \
  --lr 1e-3 --warmup 500 --eval-every 1000 --ema-decay 0.999 --runs "$RUN" --out "$RUN/shipped.safetensors" \
  --record "$RUN/record.json" > "$OUT/train.log" 2>&1 || echo "training stopped: rc $? (124: the budget)"
echo "trained for $(( $(date +%s) - started )) s"
rm -rf "$OUT/piano_gpu" && cp -r "$RUN" "$OUT/piano_gpu"
python - "$RUN/history.json" <<'EOF'
import json, sys
h = json.load(open(sys.argv[1]))
seconds = h["step_seconds"]
print(f"updates {h['step']}, last 100: {sum(seconds[-100:]) / len(seconds[-100:]):.4f} s each")
for e in h["eval"][-5:]:
    print(f"update {e['step']}: val {e['bits_per_sample']:.3f} bits/sample, top-5 {e['top5']:.3f}; "
          f"the weights' average {e.get('ema_bits_per_sample', float('nan')):.3f}")
EOF
