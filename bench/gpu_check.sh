#!/usr/bin/env bash
# The one script for a machine with an NVIDIA GPU (must finish in under 8 minutes):
#   build for the card, run the GPU-vs-CPU kernel tests on the device, compute-sanitizer
#   (memcheck, racecheck) over them, the GEMM benchmark against cuBLAS, the training-step
#   throughput against PyTorch + cuDNN, and a 2-epoch apps/resnet --device gpu run on a
#   CIFAR-format data set (the real one if CIFAR10_DIR points at it, else generated here).
# Prints one table at the end; full logs go to $OUT (or /tmp/gpu_check).
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu_check}
mkdir -p "$LOG"
export PATH="$PATH:/usr/local/cuda/bin"
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
echo "card: ${card:-none found}  compute capability: ${arch:-?}  date: $(date -u +%Y-%m-%dT%H:%MZ)"
rows=()
step() {   # step NAME TIMEOUT CMD...: runs, records rc, seconds and the last line of output
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s.%N)
  timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
  local rc=$? t=$(echo "$(date +%s.%N) - $t0" | bc)
  local last=$(grep -v '^\s*$' "$LOG/$name.log" | tail -1 | cut -c1-110 | tr '|' '/')
  rows+=("| $name | $([ $rc = 0 ] && echo ok || echo "FAIL ($rc)") | $(printf %.1f "$t") | $last |")
  echo "[$name] rc=$rc ${t}s"
}

# 1. build for this card (nvcc + gcc on the machine; the Check library is only needed for tests)
if [ -f /usr/include/check.h ]; then
  step build 240 make -j"$(nproc)" CUDA_ARCH="${arch:-90}" all build/gpu_tests
else
  step build 240 make -j"$(nproc)" CUDA_ARCH="${arch:-90}" all
  echo "no check.h here: using the carried build/gpu_tests (make gpu-bundle) if present"
fi

# 2. the CPU-vs-GPU tests on the device, then under compute-sanitizer
if [ -x build/gpu_tests ]; then
  step gpu_tests 120 build/gpu_tests
  if command -v compute-sanitizer >/dev/null; then
    step memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 9 build/gpu_tests
    step racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 9 build/gpu_tests
  fi
fi

# 3. benchmarks: GEMM vs cuBLAS; train step vs PyTorch eager + cuDNN (same batch, same model)
step gemm 90 bench/gpu_bench --max 4096
step train_step_gpu 60 bench/train_step --device gpu --steps 30
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  step torch_cudnn 90 python3 bench/torch_baseline.py --device cuda --steps 30
fi

# 4. a short real training run on the GPU
data=${CIFAR10_DIR:-}
if [ -z "$data" ] || [ ! -f "$data/data_batch_1.bin" ]; then
  data="$LOG/cifar-synthetic"
  mkdir -p "$data"
  python3 - "$data" <<'PY'
import os, sys, random
d = sys.argv[1]; rnd = random.Random(0)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, name), "wb") as f:
        for _ in range(10000):
            y = rnd.randrange(10)   # class-dependent brightness, so accuracy can rise above chance
            f.write(bytes([y]) + bytes([min(255, y * 20 + rnd.randrange(60)) for _ in range(64)]) * 48)
PY
fi
step train_2_epochs 240 apps/resnet --device gpu --epochs 2 --val-every 1 --retrain --data "$data" --out "$LOG/run"

echo
echo "| step | result | seconds | last line |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
for f in gemm train_step_gpu torch_cudnn; do [ -f "$LOG/$f.log" ] && { echo "--- $f"; cat "$LOG/$f.log"; }; done
grep -h "epoch\|best weights" "$LOG/train_2_epochs.log" 2>/dev/null
