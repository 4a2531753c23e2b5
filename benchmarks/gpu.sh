#!/usr/bin/env bash
# The whole benchmark on a GPU machine in one short command (a few minutes on an H100):
#   bash benchmarks/gpu.sh [ORIGINAL_SRC]
# Prints the device and versions, full-size pretraining throughput (fp32/TF32 and bf16, eager
# and torch.compile) with peak memory, inference per mode, encoder cost against audio length,
# and, when the original's 'src' folder is given, the side-by-side ratios on the same GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
$PY - <<'PYEOF'
import torch, timm, platform
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__,
      "python", platform.python_version())
PYEOF
OUT=${OUT:-results/bench}
mkdir -p "$OUT"
$PY -m benchmarks.run --device cuda --sections pretrain inference encoder \
    --batches 32 64 --infer_batch 64 --warmup 3 --iters 5 --out "$OUT/gpu-eager.json"
for B in 64 128; do
  $PY -m benchmarks.measure --task pretrain --batch $B --precision bf16 --compile \
      --warmup 3 --iters 5 | tee -a "$OUT/gpu-compile.jsonl"
done
if [ $# -ge 1 ]; then
  $PY -m benchmarks.run --device cuda --sections compare --original_src "$1" \
      --compare_batch 64 --repeats 2 --warmup 3 --iters 5 --out "$OUT/gpu-compare.json"
fi
