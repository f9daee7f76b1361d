#!/usr/bin/env bash
# make fuzz: runs every libFuzzer target for FUZZ_SECONDS seconds from the seed corpus
# (written by BUILD/fuzz/seeds) and prints executions, coverage and crashes per target.
#   bash tests/fuzz/run.sh BUILD target...
# The corpus each target grows stays in BUILD/fuzz/corpus/<target> (not committed); a crash
# input lands in BUILD/fuzz/crashes/<target>/: copy it to tests/fuzz/crashes/<target>/ once
# fixed, and make test replays it from then on.
set -uo pipefail
build=$1; shift
secs=${FUZZ_SECONDS:-60}
seeds=$build/fuzz/seed-corpus
rm -rf "$seeds"
"$build/fuzz/seeds" "$seeds" "${CIFAR10_DIR:-}" || exit 1
printf '%-12s %10s %8s %8s %8s  %s\n' target execs exec/s cov features crashes
total_crash=0
for t in "$@"; do
  corpus=$build/fuzz/corpus/$t crashes=$build/fuzz/crashes/$t log=$build/fuzz/$t.log
  mkdir -p "$corpus" "$crashes"
  # the saved crash inputs are part of every start corpus (a target may have none: git keeps
  # no empty folder, so tests/fuzz/crashes/<target> exists only where one was saved)
  saved=()
  [ -d "tests/fuzz/crashes/$t" ] && saved=("tests/fuzz/crashes/$t")
  "$build/fuzz/fuzz_$t" "$corpus" "$seeds/$t" "${saved[@]}" -max_total_time="$secs" \
      -print_final_stats=1 -artifact_prefix="$crashes/" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | awk '{print $2}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  n=$(find "$crashes" -type f | wc -l)
  [ $rc -ne 0 ] && [ "$n" -eq 0 ] && n="rc=$rc"
  printf '%-12s %10s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$n"
  [ "$n" != 0 ] && total_crash=1 && echo "  see $log and $crashes/"
done
exit $total_crash
