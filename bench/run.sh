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
  echo "Compiler: $(gcc --version | head -1); flags \`-std=c11 -O2\`; ISA-specific kernels through target attributes, chosen at run time."
  echo
  echo "### GEMM (\`bench/gemm --threads $THREADS\`)"
  echo
  if [ -x bench/gemm ]; then bench/gemm --threads "$THREADS"; else echo "(bench/gemm not built: install libopenblas-dev)"; fi
  echo
  # ---- the PyTorch baselines: Debian's python3-torch and PyPI's torch (bench/torch_venv.sh) ----
  torches=()   # "label|python|LD_LIBRARY_PATH"
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    torches+=("torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') (Debian)|/usr/bin/python3|")
  fi
  if venv=$(bash bench/torch_venv.sh 2>/dev/null); then
    vpy=${venv%% *}; vlib=${venv#* }
    if LD_LIBRARY_PATH=$vlib $vpy -c 'import torch' 2>/dev/null; then
      torches+=("torch $(LD_LIBRARY_PATH=$vlib $vpy -c 'import torch; print(torch.__version__)') (PyPI)|$vpy|$vlib")
    fi
  fi
  tpy() { local t=$1; shift; local py=${t#*|}; py=${py%%|*}; env LD_LIBRARY_PATH="${t##*|}" "$py" "$@"; }
  tcmd() { local t=$1; local py=${t#*|}; py=${py%%|*}; echo env "LD_LIBRARY_PATH=${t##*|}" "$py"; }
  num() { sed -n "s/^$1 img\/s: //p"; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  # keep the better of (a, b); the layout that gave it in L[key]
  declare -A L
  best() { awk -v a="${1:-0}" -v b="$2" 'BEGIN { print (b > a) ? b : a }'; }
  echo "### Convolution layers (\`bench/conv --threads $THREADS\`, PyTorch per layer: \`bench/torch_layers.py\`)"
  echo
  tl=$(mktemp)
  if [ ${#torches[@]} -gt 0 ]; then
    tpy "${torches[0]}" bench/torch_layers.py --threads "$THREADS" > "$tl"
    echo "PyTorch column: ${torches[0]%%|*}, each operation in its faster layout."
    echo
    bench/conv --threads "$THREADS" --torch "$tl"
  else
    bench/conv --threads "$THREADS"
  fi
  rm -f "$tl"
  echo
  echo "### The kernel ladder (\`bench/ladder --threads $THREADS\`): each operator from the readable kernel to the fastest, against this machine's measured peaks"
  echo
  bench/ladder --threads "$THREADS"
  echo
  echo "### Data loader (\`bench/loader\`)"
  echo
  echo '```'
  bench/loader --batches 60
  echo '```'
  echo
  echo "### Training step (batch 128) and evaluation (batch 256), ours vs PyTorch, back to back"
  echo
  echo "Two rounds; each side's best figure kept, torch's over both layouts (NCHW and channels_last) in both rounds. \`bench/train_step\` vs \`bench/torch_baseline.py\`."
  echo
  echo '```'
  declare -A tr ev
  for round in 1 2; do
    for th in 1 "$THREADS"; do
      v=$(bench/train_step --threads "$th" --steps "$STEPS" | num train_step)
      tr[ours,$th]=$(awk -v a="${tr[ours,$th]:-0}" -v b="$v" 'BEGIN { print (b > a) ? b : a }')
      v=$(bench/train_step --threads "$th" --steps "$STEPS" --eval --batch-size 256 | num eval_step)
      ev[ours,$th]=$(awk -v a="${ev[ours,$th]:-0}" -v b="$v" 'BEGIN { print (b > a) ? b : a }')
    done
    for i in "${!torches[@]}"; do
      t=${torches[$i]}
      for l in nchw channels_last; do
        v=$(tpy "$t" bench/torch_baseline.py --threads "$THREADS" --steps "$STEPS" --layout "$l" | num torch_train_step)
        [ "$(best "${tr[$i]:-0}" "$v")" = "$v" ] && L[tr$i]=$l
        tr[$i]=$(best "${tr[$i]:-0}" "$v")
        v=$(tpy "$t" bench/torch_baseline.py --threads "$THREADS" --steps "$STEPS" --layout "$l" --eval --batch-size 256 | num torch_eval_step)
        [ "$(best "${ev[$i]:-0}" "$v")" = "$v" ] && L[ev$i]=$l
        ev[$i]=$(best "${ev[$i]:-0}" "$v")
        v=$(tpy "$t" bench/torch_baseline.py --threads 1 --steps "$STEPS" --layout "$l" | num torch_train_step)
        tr[$i,1]=$(best "${tr[$i,1]:-0}" "$v")
      done
    done
  done
  rss() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }
  printf "%-34s %12s %12s %14s %10s\n" "" "train img/s" "eval img/s" "1-thread train" "peak RSS"
  printf "%-34s %12s %12s %14s %7s MB\n" "convnet.c ($THREADS threads)" "${tr[ours,$THREADS]}" "${ev[ours,$THREADS]}" \
    "${tr[ours,1]}" "$(( $(rss bench/train_step --threads "$THREADS" --steps 3) / 1024 ))"
  for i in "${!torches[@]}"; do
    t=${torches[$i]}
    printf "%-34s %12s %12s %14s %7s MB\n" "${t%%|*}" "${tr[$i]}" "${ev[$i]}" "${tr[$i,1]}" \
      "$(( $(rss $(tcmd "$t") bench/torch_baseline.py --threads "$THREADS" --steps 3 --layout "${L[tr$i]}") / 1024 ))"
  done
  echo
  echo "convnet.c thread scaling ($THREADS vs 1 thread): train $(ratio "${tr[ours,$THREADS]}" "${tr[ours,1]}")x, eval $(ratio "${ev[ours,$THREADS]}" "${ev[ours,1]}")x"
  echo "convnet.c 1-thread eval img/s: ${ev[ours,1]}"
  for i in "${!torches[@]}"; do
    echo "${torches[$i]%%|*}: faster layout train ${L[tr$i]}, eval ${L[ev$i]}"
    echo "ratio vs ${torches[$i]%%|*}: train $(ratio "${tr[ours,$THREADS]}" "${tr[$i]}"), eval $(ratio "${ev[ours,$THREADS]}" "${ev[$i]}"), 1-thread train $(ratio "${tr[ours,1]}" "${tr[$i,1]}")"
  done
  [ ${#torches[@]} -gt 0 ] || echo "torch not installed (apt-get install python3-torch; bash bench/torch_venv.sh --create): no baseline ratio"
  echo "$(bench/train_step --threads 1 --steps 1 | sed -n 's/^kernels: /convnet.c kernels: /p')"
  echo '```'
  if [ -x bench/gpu_plan ]; then
    echo
    echo "### The GPU training step's plan (\`bench/gpu_plan\`, emulator, no GPU needed)"
    echo
    echo '```'
    bench/gpu_plan
    echo '```'
  fi
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
