#!/usr/bin/env bash
# make bench: every CPU benchmark (and the GPU ones when a GPU is present), each with its
# baseline measured in the same run, printed and appended to bench/RESULTS.md with the date,
# the machine and the compiler flags.
#   THREADS=2 STEPS=10 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-10}
PY=$(command -v /usr/bin/python3 || command -v python3)
out=$(mktemp)
{
  echo "## $(date -u +%Y-%m-%d) — $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $THREADS threads"
  echo
  echo "Compiler: $(gcc --version | head -1); flags \`-std=c11 -O2\` (+ \`-mavx2 -mfma\` via target attribute in cpu/gemm_fast.c)."
  echo
  echo "### GEMM (\`bench/gemm --threads $THREADS\`)"
  echo
  if [ -x bench/gemm ]; then bench/gemm --threads "$THREADS"; else echo "(bench/gemm not built: install libopenblas-dev)"; fi
  echo
  echo "### Convolution layers (\`bench/conv --threads $THREADS\`)"
  echo
  bench/conv --threads "$THREADS"
  echo
  echo "### Data loader (\`bench/loader\`)"
  echo
  echo '```'
  bench/loader --batches 60
  echo '```'
  echo
  echo "### Training step, batch 128 (\`bench/train_step --threads $THREADS\` vs \`bench/torch_baseline.py --threads $THREADS\`)"
  echo
  echo '```'
  rss() { /usr/bin/time -f "peak RSS %M KB" "$@" 2>&1 >/dev/null | tail -1; }
  ours=$(bench/train_step --threads "$THREADS" --steps "$STEPS" | tee /dev/stderr | sed -n 's/^train_step img\/s: //p')
  oursev=$(bench/train_step --threads "$THREADS" --steps "$STEPS" --eval --batch-size 256 | tee /dev/stderr | sed -n 's/^eval_step img\/s: //p')
  if $PY -c 'import torch' 2>/dev/null; then
    theirs=$($PY bench/torch_baseline.py --threads "$THREADS" --steps "$STEPS" | tee /dev/stderr | sed -n 's/^torch_train_step img\/s: //p')
    theirsev=$($PY bench/torch_baseline.py --threads "$THREADS" --steps "$STEPS" --eval --batch-size 256 | tee /dev/stderr | sed -n 's/^torch_eval_step img\/s: //p')
    echo "train ratio convnet.c / torch: $(echo "scale=2; $ours / $theirs" | bc)"
    echo "convnet.c train step $(rss bench/train_step --threads "$THREADS" --steps 3)"
    echo "torch     train step $(rss $PY bench/torch_baseline.py --threads "$THREADS" --steps 3)"
    echo "eval  ratio convnet.c / torch: $(echo "scale=2; $oursev / $theirsev" | bc)"
  else
    echo "torch not installed: no baseline ratio"
  fi
  echo '```'
  if bench/gpu_bench --max 1024 >/dev/null 2>&1; then
    echo
    echo "### GPU"
    echo
    bench/gpu_bench
    bench/train_step --device gpu --steps 30
  fi
  echo
} 2>&1 | tee "$out"
cat "$out" >> bench/RESULTS.md
rm -f "$out"
echo "appended to bench/RESULTS.md"
