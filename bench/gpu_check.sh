#!/usr/bin/env bash
# The one script for a machine with an NVIDIA GPU; finishes in under 8 minutes.
#   bash bench/gpu_check.sh             on the GPU machine (a lent one or your own)
#   bash bench/gpu_check.sh --dry-run   here, without a GPU: builds the bundle the lent machine
#                                       needs, checks its size, runs every step that needs no GPU
# Steps: build for the card; the GPU-vs-CPU kernel tests on the device (the tensor-core
# fragment layout among them: mma_fragment_layout); compute-sanitizer
# memcheck and racecheck over them; GEMM vs cuBLAS; training step vs PyTorch + cuDNN, and
# one epoch's worth of steps of each; a 2-epoch apps/resnet --device gpu run and the same 2
# epochs of the notebook's recipe in PyTorch (bench/torch_practical.py). Each step has
# a time limit and the whole run a deadline; each row of the table prints as its step ends.
#
# A lent machine has nvcc but probably not the Check library, so the GPU tests are built
# here (`make gpu-bundle`: build-device/gpu_tests, Check linked statically) and carried:
#   run(command="bash bench/gpu_check.sh", carry=["build-device"], timeout_s=540)
# Data and training runs go to /tmp; only small logs go to $OUT (at most 8 files come back).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
LOG=${OUT:-/tmp/gpu_check}
WORK=/tmp/gpu_check_work
mkdir -p "$LOG" "$WORK"
export PATH="$PATH:/usr/local/cuda/bin"
BUDGET=${GPU_CHECK_SECONDS:-450}              # the whole script, in seconds
T0=$(date +%s)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
fails=0

card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
echo "card: ${card:-none found}  compute capability: ${arch:-?}  date: $(date -u +%Y-%m-%dT%H:%MZ)  $([ $DRY = 1 ] && echo '(dry run)')"
echo
echo "| step | result | seconds | last line |"
echo "|---|---|---|---|"

row() { echo "| $1 | $2 | $3 | $4 |"; }
# step NAME LIMIT CMD...: runs CMD with min(LIMIT, time left) seconds, prints its row at once.
step() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  if [ "$left" -lt 15 ]; then row "$name" "SKIP (no time left)" 0 "-"; return 99; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t=$(now)
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  local last=$(grep -v '^\s*$' "$WORK/$name.log" | tail -1 | cut -c1-110 | tr '|' '/')
  local res=ok
  if [ $rc = 124 ]; then res="FAIL (timeout ${limit}s)"; elif [ $rc != 0 ]; then res="FAIL ($rc)"; fi
  [ $rc = 0 ] || fails=$((fails + 1))
  row "$name" "$res" "$(secs "$t" "$(now)")" "$last"
  return $rc
}
skip() { row "$1" "SKIP ($2)" 0 "-"; }

# ---- 1. build ----------------------------------------------------------------------------
if [ $DRY = 1 ] && ! command -v nvcc > /dev/null; then
  skip bundle "no nvcc here: the bundle needs the CUDA toolkit"
elif [ $DRY = 1 ]; then
  step bundle 300 make -j"$(nproc)" gpu-bundle
  # what travels: the working tree (tracked + untracked-not-ignored) and the carried bundle
  tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | awk '$2 == "total" { s += $1 } END { print s + 0 }')
  bundle=$(du -sb build-device 2>/dev/null | cut -f1)
  total=$(( tree + ${bundle:-0} ))
  if [ "$total" -le $((64 * 1024 * 1024)) ]; then r=ok; else r="FAIL (over 64 MiB)"; fails=$((fails + 1)); fi
  row "bundle size" "$r" 0 "tree $((tree / 1024)) KiB + build-device $((${bundle:-0} / 1024)) KiB of 65536 KiB"
else
  step build 180 make -j"$(nproc)" CUDA_ARCH="${arch:-90}" all
fi

# ---- 2. the GPU-vs-CPU tests on the device, then under compute-sanitizer -----------------
tests=""
if [ -f /usr/include/check.h ] && [ $DRY = 0 ] && make -j"$(nproc)" CUDA_ARCH="${arch:-90}" build/gpu_tests > "$WORK/gpu_tests_build.log" 2>&1; then
  tests=build/gpu_tests
elif [ -x build-device/gpu_tests ]; then
  tests=build-device/gpu_tests              # built by make gpu-bundle, carried
fi
if [ -z "$tests" ]; then
  row gpu_tests "FAIL (no test binary: no check.h here and no carried build-device/gpu_tests)" 0 "-"
  fails=$((fails + 1))
elif [ $DRY = 1 ]; then
  # without a GPU the binary must start and stop with the one-line reason
  if "$tests" > "$WORK/gpu_tests.log" 2>&1; then r="FAIL (passed without a GPU?)"; fails=$((fails + 1)); else r="ok (no GPU: refused)"; fi
  row gpu_tests "$r" 0 "$(grep -v '^\s*$' "$WORK/gpu_tests.log" | tail -1 | cut -c1-110 | tr '|' '/')"
else
  step gpu_tests 90 "$tests"
  if command -v compute-sanitizer > /dev/null; then
    for tool in memcheck racecheck; do
      step "$tool" 90 compute-sanitizer --tool "$tool" --error-exitcode 9 "$tests"
      if grep -q "Device not supported\|device not supported" "$WORK/$tool.log"; then
        echo "  ($tool: compute-sanitizer refused the device, as it does under gVisor: not a kernel failure)"
      fi
    done
  else
    skip memcheck "compute-sanitizer not installed"; skip racecheck "compute-sanitizer not installed"
  fi
fi

# ---- 3. benchmarks ------------------------------------------------------------------------
# the plan's bound (the emulator: no GPU needed) next to the measured step below
step plan 30 bench/gpu_plan
step plan_fp32 30 bench/gpu_plan --gpu-math fp32
if [ $DRY = 1 ]; then
  for s in gemm train_step_gpu train_step_fp32 train_step_unfused torch_cuda epoch_ours epoch_torch; do skip "$s" "dry run: needs a GPU"; done
else
  step gemm 60 bench/gpu_bench --max 4096
  step train_step_gpu 45 bench/train_step --device gpu --steps 30
  # the same step with the convolutions on CUDA cores (fp32) instead of tensor cores (3xTF32)
  step train_step_fp32 30 bench/train_step --device gpu --steps 30 --gpu-math fp32
  # and with each convolution's backward as two launches (no fused backward: the plan's 777 MB)
  step train_step_unfused 30 bench/train_step --device gpu --steps 30 --no-fused-backward
  have_torch=0
  python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null && have_torch=1
  if [ $have_torch = 1 ]; then
    step torch_cuda 60 python3 bench/torch_baseline.py --device cuda --steps 30
  else
    skip torch_cuda "no torch with CUDA"
  fi
  # one epoch of the practical = 351 steps of batch 128 (45,000 images, drop_last), model only
  step epoch_ours 60 bench/train_step --device gpu --steps 351
  if [ $have_torch = 1 ]; then
    step epoch_torch 90 python3 bench/torch_baseline.py --device cuda --steps 351
  else
    skip epoch_torch "no torch with CUDA"
  fi
fi

# ---- 4. a short real training run (synthetic CIFAR-format data unless CIFAR10_DIR is set) --
data=${CIFAR10_DIR:-}
if [ -z "$data" ] || [ ! -f "$data/data_batch_1.bin" ]; then
  data="$WORK/cifar-synthetic"
  step data 60 python3 - "$data" <<'PY'
import os, sys, random
d = sys.argv[1]; os.makedirs(d, exist_ok=True); rnd = random.Random(0)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, name), "wb") as f:
        for _ in range(10000):
            y = rnd.randrange(10)   # class-dependent brightness, so accuracy can rise above chance
            f.write(bytes([y]) + bytes([min(255, y * 20 + rnd.randrange(60)) for _ in range(64)]) * 48)
print("synthetic CIFAR-10 format data in", d)
PY
fi
if [ $DRY = 1 ]; then
  # the same command without a GPU: one clear line and exit status 2
  apps/resnet --device gpu --epochs 1 --data "$data" --out "$WORK/run" > "$WORK/train.log" 2>&1
  rc=$?
  if [ $rc = 2 ] && grep -q "no usable CUDA GPU" "$WORK/train.log"; then r="ok (no GPU: refused, exit 2)"; else r="FAIL ($rc)"; fails=$((fails + 1)); fi
  row train_2_epochs "$r" 0 "$(tail -1 "$WORK/train.log" | cut -c1-110)"
else
  step train_2_epochs 120 apps/resnet --device gpu --epochs 2 --val-every 1 --retrain --data "$data" --out "$WORK/run"
  # the notebook's recipe in PyTorch on the same card, data and split (its epoch times next to ours)
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null && [ -f "$WORK/run/split_val.txt" ]; then
    step torch_practical_2_epochs 150 python3 bench/torch_practical.py --device cuda --epochs 2 --val-every 1 \
      --data "$data" --split "$WORK/run/split_val.txt" --out "$WORK/torch_run"
  else
    skip torch_practical_2_epochs "no torch with CUDA, or no split from our run"
  fi
fi

# ---- the details, and a few small logs for $OUT ------------------------------------------
echo
for f in gemm train_step_gpu train_step_fp32 train_step_unfused torch_cuda epoch_ours epoch_torch; do
  [ -s "$WORK/$f.log" ] && { echo "--- $f"; cat "$WORK/$f.log"; }
done
grep -h "epoch\|best weights\|test" "$WORK/train_2_epochs.log" 2> /dev/null
[ -s "$WORK/torch_practical_2_epochs.log" ] && { echo "--- PyTorch, the same recipe"; grep -h "epoch\|best weights" "$WORK/torch_practical_2_epochs.log"; }
cat "$WORK"/gpu_tests.log "$WORK"/memcheck.log "$WORK"/racecheck.log 2> /dev/null | tail -c 2000000 > "$LOG/tests.log"
cat "$WORK"/build.log "$WORK"/bundle.log "$WORK"/gpu_tests_build.log 2> /dev/null | tail -c 1000000 > "$LOG/build.log"
echo
echo "gpu_check: $fails failed step(s) in $(( $(date +%s) - T0 )) s"
[ $fails = 0 ]
