#!/usr/bin/env bash
# Part 1 side by side: apps/resnet and bench/torch_practical.py (the notebook's recipe in
# plain PyTorch) at one schedule, on the same data and the same 45,000/5,000 split, one seed
# after the other; then the table of bench/side_by_side.py.
#   bash bench/side_by_side.sh OUT [EPOCHS=30] [MILESTONES=21,27] [SEEDS="1 2"]
# PyTorch: the python3 with torch (Debian's python3-torch), or TORCH_PY=... (e.g. the venv of
# bench/torch_venv.sh with its LD_LIBRARY_PATH exported). Both use THREADS (default: 2).
set -euo pipefail
out=${1:?usage: side_by_side.sh OUT [EPOCHS] [MILESTONES] [SEEDS]}
epochs=${2:-30}; milestones=${3:-21,27}; seeds=${4:-1 2}; threads=${THREADS:-2}
py=${TORCH_PY:-$(command -v /usr/bin/python3 || command -v python3)}
: "${CIFAR10_DIR:?set CIFAR10_DIR to the CIFAR-10 binary directory}"
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
git -C "$root" log -1 --format='%H %s' > "$out/COMMIT"
"$py" -c 'import torch; print("torch", torch.__version__)' > "$out/TORCH"
for s in $seeds; do
  echo "== seed $s: convnet.c ($(date -u +%T))"
  "$root/apps/resnet" --epochs "$epochs" --milestones "$milestones" --val-every 10 --seed "$s" \
      --threads "$threads" --out "$out/ours$s" --retrain > "$out/ours$s.log" 2>&1
  tail -1 "$out/ours$s.log"
  echo "== seed $s: PyTorch ($(date -u +%T))"
  "$py" "$root/bench/torch_practical.py" --epochs "$epochs" --milestones "$milestones" --val-every 10 \
      --seed "$s" --threads "$threads" --split "$out/ours$s/split_val.txt" --out "$out/torch$s" > "$out/torch$s.log" 2>&1
  tail -1 "$out/torch$s.log"
done
python3 "$root/bench/side_by_side.py" "$out"
