#!/usr/bin/env bash
# Data-parallel training's cost on this machine (core/dist.h over MPI): the practical's ResNet,
# batch 128, a training step with 1, 2 and 3 processes sharing the machine's cores (threads
# split so that processes x threads = cores; 3 processes on fewer cores is oversubscribed, for
# the record only), each step's time and the part of it spent in the sums over processes
# (gradients, batchnorm's statistics and sums, the loss: waiting for the slowest included).
#   bash bench/mpi_scaling.sh [STEPS=20]      (needs make build/mpi_steps: mpicc)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
bin=build/mpi_steps
[ -x $bin ] || make -s $bin
flags=()
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  flags=(--oversubscribe --bind-to none)
fi
cores=$(nproc)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $cores cores; $(mpirun --version 2>&1 | head -1)"
echo
echo "| processes | threads each | ms/step | in the sums | img/s | note |"
echo "|---|---|---|---|---|---|"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for np in 1 2 3; do
  threads=$((cores / np)); [ $threads -lt 1 ] && threads=1
  note=""; [ $((np * threads)) -gt "$cores" ] && note="oversubscribed: correctness only"
  [ $np -gt "$cores" ] && note="oversubscribed: correctness only"
  line=$(OMP_NUM_THREADS=$threads mpirun "${flags[@]}" -np $np $bin train "$steps" "$out/w" | grep "^step:")
  ms=$(echo "$line" | sed 's/step: \([0-9.]*\) ms.*/\1/')
  comm=$(echo "$line" | sed 's/.*, of which \([0-9.]*\) ms.*/\1/')
  echo "| $np | $threads | $ms | $comm ms | $(awk -v m="$ms" 'BEGIN { printf "%.0f", 128 / m * 1000 }') | $note |"
done
