#!/usr/bin/env bash
# The GPU benchmark in one short command (under 5 minutes on an H100):
#   bash benchmarks/gpu.sh [ORIGINAL_SRC]
# Prints the device and versions, then, most important first, each result as one JSON line
# appended to $OUT/gpu.jsonl (so that a run cut short keeps what it measured):
#   1. full-size pretraining step of our model, bf16 autocast, batch 64/128/256, and TF32;
#   2. with ORIGINAL_SRC (the original checkout's 'src' folder): the original model on the
#      same GPU, as released (fp16 autocast as its training script, its timm-0.4.5
#      attention math, torch's default Adam) and the fair way (bf16, fused attention);
#   3. end to end: the AudioSet pretraining recipe fed by the real data pipeline
#      (benchmarks/e2e.py), and the DataLoader alone;
#   4. inference per mode, encoder cost against audio length;
#   5. torch.compile of the pretraining step (E2E_COMPILE=1: also the recipe compiled, +2 min).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-results/bench}
mkdir -p "$OUT"
J="$OUT/gpu.jsonl"
ORIG=${1:-}

$PY - <<'PYEOF'
import os, platform, torch, timm
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__,
      "python", platform.python_version(), "cpus", os.cpu_count())
PYEOF
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true

# m SECONDS ARGS...: one measurement process; on failure a JSON line with the error.
m() {
  local limit=$1; shift
  local line
  line=$(timeout "$limit" $PY -m benchmarks.measure --device "${DEV:-cuda}" --warmup 3 --iters 6 "$@" \
         2> "$OUT/last_err.txt" | grep '^{')
  if [ -z "$line" ]; then
    line="{\"args\": \"$*\", \"error\": \"$(tail -n 2 "$OUT/last_err.txt" | tr '"\n' "' ")\"}"
  fi
  echo "$line" | tee -a "$J"
}

echo "# 1. pretraining step, ours"
m 90 --task pretrain --batch 128 --precision bf16 --profile "$OUT/profile_pretrain_bf16_b128.txt"
for B in 64 256; do m 90 --task pretrain --batch $B --precision bf16; done
m 90 --task pretrain --batch 64 --precision fp32

if [ -n "$ORIG" ]; then
  echo "# 2. the original on the same GPU"
  m 90 --task pretrain --impl original --original_src "$ORIG" --batch 64 --precision fp16 --attention math
  m 90 --task pretrain --impl original --original_src "$ORIG" --batch 128 --precision bf16 --attention fused
fi

echo "# 3. end to end: recipe + data pipeline"
timeout 150 $PY -m benchmarks.e2e --clips 256 --repeat 16 --batch_size 128 \
  --num_workers $(( $(nproc) - 2 )) --precision bf16 --device cuda:0 --out "$J" \
  || echo '{"e2e": "failed"}' | tee -a "$J"

echo "# 4. inference, encoder"
for MODE in multimodal audioonly videoonly; do
  m 60 --task inference --mode $MODE --batch 256 --precision bf16
done
if [ -n "$ORIG" ]; then
  m 60 --task inference --impl original --original_src "$ORIG" --batch 256 --precision fp16 --attention math
  m 60 --task inference --impl original --original_src "$ORIG" --batch 256 --precision bf16 --attention fused
fi
for L in 256 512 1024 2048; do m 60 --task encoder --audio_length $L --batch 64 --precision bf16; done

echo "# 5. torch.compile"
m 240 --task pretrain --batch 128 --precision bf16 --compile
if [ "${E2E_COMPILE:-0}" = 1 ]; then
  timeout 240 $PY -m benchmarks.e2e --clips 256 --repeat 24 --batch_size 128 \
    --num_workers $(( $(nproc) - 2 )) --precision bf16 --device cuda:0 --compile --out "$J" \
    || echo '{"e2e_compile": "failed"}' | tee -a "$J"
fi
echo "done: $J"
