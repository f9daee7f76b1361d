#!/usr/bin/env bash
# The one script for a machine with an NVIDIA GPU; every step has a time limit and the limits
# add up to under 590 s, the build included (a full run has taken 215 s on an H200).
#   bash bench/gpu_check.sh             on the GPU machine (a lent one or your own)
#   bash bench/gpu_check.sh --dry-run   here, without a GPU: builds the bundle the lent machine
#                                       needs and checks everything that needs no GPU
#
# Steps, in this order (PLAN below: name and limit in seconds), the cheap and decisive first,
# the sanitizers last so that they can never starve the rest:
#   build        make all for the card, warnings kept as warnings (WERROR=0: the card's machine
#                may have newer compilers than ours); the warnings seen are counted and shown
#   gpu_tests    the GPU-vs-CPU kernel tests on the device (mma_fragment_layout among them), one
#                process, each test's result printed as it ends
#   gpu_tests_forked  only when gpu_tests failed: again, a process per test (CK_FORK=yes), so a
#                test that stops its process hides none of the others
#   plan*        the step's plan and bound (bench/gpu_plan, emulator: no GPU needed)
#   train_step*  the training step: tensor cores (3xTF32); the same launches eagerly, each timed
#                (--profile: a row per launch site); CUDA cores (fp32), no fused backward,
#                the readable kernels (--kernels reference: gpu/conv2d.cu, gpu/batchnorm.cu, ...),
#                and the data-parallel table (--data-parallel-table: the fast convolutions with
#                the readable batchnorm, what more than one process runs) on the one card
#   data         synthetic CIFAR-format files, unless CIFAR10_DIR is set
#   train_2_epochs  apps/resnet --device gpu, 2 epochs
#   train_reference_1_epoch  the same with the readable kernels (--kernels reference)
#   gemm, epoch_ours, epoch_torch, torch_practical_2_epochs   the benchmarks against cuBLAS
#                and PyTorch + cuDNN (an epoch is 351 steps of batch 128)
#   memcheck     compute-sanitizer memcheck on a short subset of the tests (MEMCHECK_TESTS)
#   racecheck    racecheck on the tests of the kernels with shared memory (RACECHECK_TESTS)
#   ncu_step     Nsight Compute's counters for every kernel of one eager training step: time,
#                SM and DRAM throughput as % of peak, achieved occupancy, grid, block, registers
#                (CSV, in bench.log); "no counters here" (gVisor) is reported as a skip
# A compute-sanitizer that refuses the device ("Device not supported", as under gVisor) is
# reported as such, not as a failure of our kernels.
#
# What comes back from a lent machine is at most 8 files under $OUT: each step's log is
# appended to one of them as the step ends (so a run cut short still returns what it did):
#   table.md (the table below), env.log, build.log, tests.log, bench.log, train.log,
#   sanitizers.log
# A lent machine has nvcc but probably not the Check library: the GPU tests are built here
# (`make gpu-bundle`: build-device/gpu_tests, needing only glibc) and carried:
#   run(command="bash bench/gpu_check.sh", carry=["build-device"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
LOG=${OUT:-/tmp/gpu_check}
WORK=/tmp/gpu_check_work
rm -rf "$WORK"
mkdir -p "$LOG" "$WORK"
rm -f "$LOG"/{table.md,env.log,build.log,tests.log,bench.log,train.log,sanitizers.log}
# build-device/ also carries this machine's make, for an image that has a compiler but no make
export PATH="$PATH:/usr/local/cuda/bin:$PWD/build-device"
T0=$(date +%s)
fails=0

PLAN=(build:120 gpu_tests:40 gpu_tests_forked:30 plan:5 plan_fp32:5 train_step_gpu:15 train_step_profile:20
      train_step_fp32:12 train_step_unfused:12 train_step_reference:20 train_step_data_parallel:12 data:15 train_2_epochs:20 train_reference_1_epoch:60
      gemm:20 epoch_ours:15 epoch_torch:30 torch_practical_2_epochs:40 memcheck:25 racecheck:25 ncu_step:45)
# GPU_CHECK_ONLY=build,gpu_tests,...: run just these steps (a second call on a lent machine that
# repeats only what the first one showed wrong); the budget counts the chosen steps alone
if [ -n "${GPU_CHECK_ONLY:-}" ]; then
  chosen=()
  for e in "${PLAN[@]}"; do [[ ",$GPU_CHECK_ONLY," == *",${e%%:*},"* ]] && chosen+=("$e"); done
  PLAN=("${chosen[@]}")
fi
BUDGET=0
for e in "${PLAN[@]}"; do BUDGET=$((BUDGET + ${e##*:})); done
MEMCHECK_TESTS=gemm_kernels,conv2d_kernels,batchnorm_kernels,block_backward_pair,linear_kernels,loss_and_head_kernels,read_back_after_capture
RACECHECK_TESTS=gemm_kernels,mma_fragment_layout,conv2d_kernels,batchnorm_kernels

out() { echo "$*" | tee -a "$LOG/table.md"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
row() { out "| $1 | $2 | $3 | $4 | $5 |"; }
# the file under $LOG a step's log is appended to
group() {
  case $1 in
    build|bundle*|warnings*) echo build ;;
    gpu_tests*) echo tests ;;
    memcheck|racecheck) echo sanitizers ;;
    ncu_step) echo bench ;;
    data|train_*|torch_practical_2_epochs) echo train ;;
    *) echo bench ;;
  esac
}
keep() {   # keep NAME RC SECONDS: the step's whole log into its file under $LOG
  { echo "=== $1 (exit $2, $3 s)"; cat "$WORK/$1.log" 2> /dev/null; echo; } >> "$LOG/$(group "$1").log"
}
# step NAME LIMIT CMD...: CMD with min(LIMIT, time left) seconds (then SIGTERM, and SIGKILL 5 s
# later), its row printed and its log kept as it ends
step() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET + 20 - ($(date +%s) - T0) ))
  if [ "$left" -lt 10 ]; then row "$name" "SKIP (no time left)" 0 "$limit" "-"; return 99; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t=$(now)
  timeout -k 5 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$? s
  s=$(secs "$t" "$(now)")
  local last=$(grep -v '^\s*$' "$WORK/$name.log" | tail -1 | cut -c1-110 | tr '|' '/')
  local res=ok
  if [ $rc = 124 ] || [ $rc = 137 ]; then res="FAIL (timeout ${limit}s)"; elif [ $rc != 0 ]; then res="FAIL ($rc)"; fi
  if [ $rc != 0 ] && [[ $name == memcheck || $name == racecheck ]] && grep -qi "device not supported" "$WORK/$name.log"; then
    res="SKIP (compute-sanitizer: device not supported here; not a kernel failure)"; rc=0
  fi
  [ $rc = 0 ] || fails=$((fails + 1))
  row "$name" "$res" "$s" "$limit" "$last"
  keep "$name" "$rc" "$s"
  return $rc
}
skip() { row "$1" "SKIP ($2)" 0 "$3" "-"; }
fail() { row "$1" "FAIL ($2)" 0 "$3" "${4:--}"; fails=$((fails + 1)); }

# ---- what this machine is -----------------------------------------------------------------
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
{
  echo "card: ${card:-none found}  compute capability: ${arch:-?}  date: $(date -u +%Y-%m-%dT%H:%MZ)"
  for t in make gcc g++ nvcc compute-sanitizer python3; do echo "$t: $(command -v $t || echo MISSING)"; done
  echo "gcc: $(gcc --version 2>/dev/null | head -1)"
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  echo "cpus: $(nproc)"
} > "$LOG/env.log" 2>&1
out "$(head -1 "$LOG/env.log")  $([ $DRY = 1 ] && echo '(dry run)')"
out "tools: $(sed -n '2,7p' "$LOG/env.log" | tr '\n' ' ')"
out "budget: $(for e in "${PLAN[@]}"; do printf '%s %ss + ' "${e%%:*}" "${e##*:}"; done | sed 's/ + $//') = $BUDGET s"
out ""
out "| step | result | seconds | limit | last line |"
out "|---|---|---|---|---|"
if [ "$BUDGET" -ge 590 ]; then fail budget "the limits add up to $BUDGET s, not under 590 s" 0; fi

# ---- the steps --------------------------------------------------------------------------
tests=""
do_build() {
  if [ $DRY = 1 ]; then
    if ! command -v nvcc > /dev/null; then skip bundle "no nvcc here: the bundle needs the CUDA toolkit" 300; return; fi
    step bundle 300 make -j"$(nproc)" gpu-bundle
    cp "$(command -v make)" build-device/make
    # what travels: the working tree (tracked + untracked-not-ignored) and the carried bundle
    local tree bundle total
    tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | awk '$2 == "total" { s += $1 } END { print s + 0 }')
    bundle=$(du -sb build-device 2>/dev/null | cut -f1)
    total=$(( tree + ${bundle:-0} ))
    if [ "$total" -le $((64 * 1024 * 1024)) ]; then
      row "bundle size" ok 0 0 "tree $((tree / 1024)) KiB + build-device $((${bundle:-0} / 1024)) KiB of 65536 KiB"
    else fail "bundle size" "over 64 MiB" 0; fi
    # the carried binary must run on a minimal image: glibc's libraries only
    local extra
    extra=$(ldd build-device/gpu_tests 2>&1 | awk '{ print $1 }' | grep -v -E '^(linux-vdso\.so|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|/lib64/ld-linux-x86-64\.so)' | tr '\n' ' ')
    if [ -z "$extra" ]; then row "bundle libraries" ok 0 0 "$(ldd build-device/gpu_tests | awk '{ print $1 }' | tr '\n' ' ')"
    else fail "bundle libraries" "needs more than glibc" 0 "$extra"; fi
    # a compiler that warns must not stop the card's build: one file with a warning flag that
    # fires, built as the card's build is (WERROR=0: must pass, warnings shown) and as ours (must stop)
    local wb="$WORK/warnbuild"
    WFLAG=-Wconversion
    make --no-print-directory BUILD="$wb" WERROR=0 EXTRA_CFLAGS="$WFLAG" NVCC= "$wb/core/model.o" > "$WORK/warnings_kept.log" 2>&1
    local rc=$? n
    n=$(grep -c "warning:" "$WORK/warnings_kept.log")
    if [ $rc = 0 ] && [ "$n" -gt 0 ]; then row "warnings kept as warnings" ok 0 0 "$WFLAG: $n warnings in core/model.c, built"
    else fail "warnings kept as warnings" "exit $rc, $n warnings" 0; fi
    rm -rf "$wb"
    make --no-print-directory BUILD="$wb" EXTRA_CFLAGS="$WFLAG" NVCC= "$wb/core/model.o" > "$WORK/warnings_stop.log" 2>&1
    if [ $? != 0 ]; then row "warnings as errors (ours)" ok 0 0 "the same file stops the build with WERROR=1"
    else fail "warnings as errors (ours)" "WERROR=1 did not stop on $WFLAG" 0; fi
    keep warnings_kept "$rc" 0
    rm -rf "$wb"
    [ -x build-device/gpu_tests ] && tests=build-device/gpu_tests
    return
  fi
  local what="all"
  [ -f /usr/include/check.h ] && what="all build/gpu_tests"
  # shellcheck disable=SC2086
  step build "$1" make -j"$(nproc)" WERROR=0 CUDA_ARCH="${arch:-90}" $what
  local n
  n=$(grep -c "warning:" "$WORK/build.log")
  if [ "$n" -gt 0 ]; then
    out "  build: $n lines with warnings (kept as warnings); the first ones:"
    grep "warning:" "$WORK/build.log" | sort -u | head -5 | cut -c1-160 | sed 's/^/    /' | tee -a "$LOG/table.md"
  fi
  if [ -x build/gpu_tests ] && [ -f /usr/include/check.h ]; then tests=build/gpu_tests
  elif [ -x build-device/gpu_tests ]; then tests=build-device/gpu_tests; fi   # made by make gpu-bundle, carried
}
do_gpu_tests() {
  if [ -z "$tests" ]; then fail gpu_tests "no test binary: no check.h here and no carried build-device/gpu_tests" "$1"; return; fi
  if [ $DRY = 1 ]; then
    # without a GPU the binary must start and stop with the one-line reason
    if "$tests" > "$WORK/gpu_tests.log" 2>&1; then fail gpu_tests "passed without a GPU?" "$1"
    else row gpu_tests "ok (no GPU: refused)" 0 "$1" "$(grep -v '^\s*$' "$WORK/gpu_tests.log" | tail -1 | cut -c1-110 | tr '|' '/')"; fi
    keep gpu_tests 1 0
    return
  fi
  step gpu_tests "$1" "$tests"
  tests_rc=$?
}
tests_rc=0
do_gpu_tests_forked() {
  if [ $DRY = 1 ] || [ -z "$tests" ]; then skip gpu_tests_forked "only after gpu_tests fails on a GPU" "$1"; return; fi
  if [ "$tests_rc" = 0 ]; then skip gpu_tests_forked "gpu_tests passed" "$1"; return; fi
  CK_FORK=yes step gpu_tests_forked "$1" "$tests"
}
do_plan() { step plan "$1" bench/gpu_plan; }
do_plan_fp32() { step plan_fp32 "$1" bench/gpu_plan --gpu-math fp32; }
needs_gpu() { if [ $DRY = 1 ]; then skip "$1" "dry run: needs a GPU" "$2"; return 0; fi; return 1; }
do_train_step_gpu() { needs_gpu train_step_gpu "$1" || step train_step_gpu "$1" bench/train_step --device gpu --steps 30; }
# the same step with the convolutions on CUDA cores (fp32) instead of tensor cores (3xTF32)
do_train_step_fp32() { needs_gpu train_step_fp32 "$1" || step train_step_fp32 "$1" bench/train_step --device gpu --steps 30 --gpu-math fp32; }
# and with each convolution's backward as two launches (no fused backward)
do_train_step_unfused() { needs_gpu train_step_unfused "$1" || step train_step_unfused "$1" bench/train_step --device gpu --steps 30 --no-fused-backward; }
do_train_step_profile() { needs_gpu train_step_profile "$1" || step train_step_profile "$1" bench/train_step --device gpu --steps 10 --profile; }
do_train_step_reference() { needs_gpu train_step_reference "$1" || step train_step_reference "$1" bench/train_step --device gpu --steps 10 --kernels reference; }
# the table data-parallel training runs with more than one process, on one card
do_train_step_data_parallel() { needs_gpu train_step_data_parallel "$1" || step train_step_data_parallel "$1" bench/train_step --device gpu --steps 20 --data-parallel-table; }
data=${CIFAR10_DIR:-}
do_data() {
  if [ -n "$data" ] && [ -f "$data/data_batch_1.bin" ]; then skip data "CIFAR10_DIR is set" "$1"; return; fi
  data="$WORK/cifar-synthetic"
  needs_gpu data "$1" && return
  step data "$1" python3 - "$data" <<'PY'
import os, sys, random
d = sys.argv[1]; os.makedirs(d, exist_ok=True); rnd = random.Random(0)
for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    with open(os.path.join(d, name), "wb") as f:
        for _ in range(10000):
            y = rnd.randrange(10)   # class-dependent brightness, so accuracy can rise above chance
            f.write(bytes([y]) + bytes([min(255, y * 20 + rnd.randrange(60)) for _ in range(64)]) * 48)
print("synthetic CIFAR-10 format data in", d)
PY
}
do_train_2_epochs() {
  if [ $DRY = 1 ]; then
    # the same command without a GPU: one clear line and exit status 2
    apps/resnet --device gpu --epochs 1 --data "$data" --out "$WORK/run" > "$WORK/train_2_epochs.log" 2>&1
    local rc=$?
    if [ $rc = 2 ] && grep -q "no usable CUDA GPU" "$WORK/train_2_epochs.log"; then
      row train_2_epochs "ok (no GPU: refused, exit 2)" 0 "$1" "$(tail -1 "$WORK/train_2_epochs.log" | cut -c1-110)"
    else fail train_2_epochs "$rc" "$1"; fi
    keep train_2_epochs "$rc" 0
    return
  fi
  step train_2_epochs "$1" apps/resnet --device gpu --epochs 2 --val-every 1 --retrain --data "$data" --out "$WORK/run"
}
do_train_reference_1_epoch() {
  needs_gpu train_reference_1_epoch "$1" || step train_reference_1_epoch "$1" apps/resnet --device gpu \
    --kernels reference --epochs 1 --val-every 1 --retrain --data "$data" --out "$WORK/run_reference"
}
do_gemm() { needs_gpu gemm "$1" || step gemm "$1" bench/gpu_bench --max 4096; }
# one epoch of the practical = 351 steps of batch 128 (45,000 images, drop_last), model only
do_epoch_ours() { needs_gpu epoch_ours "$1" || step epoch_ours "$1" bench/train_step --device gpu --steps 351; }
have_torch() { [ "${HAVE_TORCH:-}" ] || { python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null && HAVE_TORCH=1 || HAVE_TORCH=0; }; [ "$HAVE_TORCH" = 1 ]; }
do_epoch_torch() {
  needs_gpu epoch_torch "$1" && return
  if have_torch; then step epoch_torch "$1" python3 bench/torch_baseline.py --device cuda --steps 351
  else skip epoch_torch "no torch with CUDA" "$1"; fi
}
# the notebook's recipe in PyTorch on the same card, data and split (its epoch times next to ours)
do_torch_practical_2_epochs() {
  needs_gpu torch_practical_2_epochs "$1" && return
  if have_torch && [ -f "$WORK/run/split_val.txt" ]; then
    step torch_practical_2_epochs "$1" python3 bench/torch_practical.py --device cuda --epochs 2 --val-every 1 \
      --data "$data" --split "$WORK/run/split_val.txt" --out "$WORK/torch_run"
  else skip torch_practical_2_epochs "no torch with CUDA, or no split from our run" "$1"; fi
}
sanitizer() {   # sanitizer TOOL LIMIT TESTS
  if [ $DRY = 1 ]; then   # the subset must name tests the suite has
    local t missing=""
    for t in ${3//,/ }; do grep -q "ADD[_LOOP]*($t[,)]" tests/test_gpu.c || missing="$missing $t"; done
    if [ -z "$missing" ]; then skip "$1" "dry run: needs a GPU; its subset's tests exist: $3" "$2"
    else fail "$1" "no such test in tests/test_gpu.c:$missing" "$2"; fi
    return
  fi
  if ! command -v compute-sanitizer > /dev/null; then skip "$1" "compute-sanitizer not installed" "$2"; return; fi
  if [ -z "$tests" ]; then skip "$1" "no test binary" "$2"; return; fi
  CK_FORK=no CONVNET_GPU_TESTS=$3 step "$1" "$2" compute-sanitizer --tool "$1" --error-exitcode 9 --print-limit 20 "$tests"
}
do_memcheck() { sanitizer memcheck "$1" "$MEMCHECK_TESTS"; }
NCU_METRICS=gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,launch__registers_per_thread
do_ncu_step() {
  if [ $DRY = 1 ]; then skip ncu_step "dry run: needs a GPU" "$1"; return; fi
  if ! command -v ncu > /dev/null; then skip ncu_step "ncu not installed" "$1"; return; fi
  step ncu_step "$1" ncu --clock-control none --csv --page raw --metrics "$NCU_METRICS" --launch-count 200 \
    bench/train_step --device gpu --profile --steps 1 --warmup 0
  if [ $? != 0 ] && grep -qi "LibraryNotLoaded\|ERR_NVGPUCTRPERM\|not supported" "$WORK/ncu_step.log"; then
    fails=$((fails - 1)); out "  ncu_step: the profiler cannot read counters on this machine (not a kernel failure)"
  fi
}
do_racecheck() { sanitizer racecheck "$1" "$RACECHECK_TESTS"; }

for e in "${PLAN[@]}"; do "do_${e%%:*}" "${e##*:}"; done

# ---- the details ------------------------------------------------------------------------
echo
for f in gemm train_step_gpu train_step_profile train_step_fp32 train_step_unfused train_step_reference train_step_data_parallel epoch_ours epoch_torch; do
  [ -s "$WORK/$f.log" ] && { echo "--- $f"; cat "$WORK/$f.log"; }
done
grep -h "epoch\|best weights\|test" "$WORK/train_2_epochs.log" 2> /dev/null
[ -s "$WORK/train_reference_1_epoch.log" ] && { echo "--- the readable kernels"; grep -h "epoch\|best weights" "$WORK/train_reference_1_epoch.log"; }
[ -s "$WORK/torch_practical_2_epochs.log" ] && { echo "--- PyTorch, the same recipe"; grep -h "epoch\|best weights" "$WORK/torch_practical_2_epochs.log"; }
echo
out "files in $LOG: $(cd "$LOG" && ls | tr '\n' ' ')"
out "gpu_check: $fails failed step(s) in $(( $(date +%s) - T0 )) s (budget $BUDGET s)"
[ $fails = 0 ]
