#!/usr/bin/env bash
# What `make test` and `make run` need from the system, installed on first use.
#   bash tools/need.sh test|run|fuzz
# Missing packages: as root (a fresh container, CI) they are installed with apt-get and one
# line says so; otherwise the exact command is printed and make stops. Nothing is printed
# when everything is there.
set -euo pipefail
what=${1:?usage: need.sh test|run|fuzz}
pkgs=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || pkgs+=("$2"); }
need_cmd gcc gcc
case $what in
  test)
    need_cmd g++ g++                       # the CUDA emulator and its tests are C++
    need_cmd pkg-config pkg-config
    [ -f /usr/include/check.h ] || pkgs+=(check)
    need_cmd mpirun openmpi-bin            # data-parallel training's tests (tests/mpi/run.sh)
    echo '#include <mpi.h>' | mpicc -E -x c - > /dev/null 2>&1 || pkgs+=(libopenmpi-dev)
    ;;
  run)
    need_cmd gnuplot gnuplot-nox           # training-curve, rotation and shuffle plots
    # make data downloads the archive when no data set is given or present
    if [ -z "${CIFAR10_DIR:-}" ] && [ ! -f "${DATA_DIR:-data/cifar-10-batches-bin}/test_batch.bin" ]; then
      need_cmd curl curl
      [ -d /etc/ssl/certs ] && [ -n "$(ls /etc/ssl/certs 2>/dev/null)" ] || pkgs+=(ca-certificates)
    fi
    ;;
  fuzz)
    need_cmd clang clang                   # libFuzzer is clang's
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || pkgs+=(libclang-rt-dev)
    ;;
  *) echo "need.sh: unknown target '$what'" >&2; exit 2 ;;
esac
[ ${#pkgs[@]} -eq 0 ] && exit 0
list="${pkgs[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "convnet: make $what needs: $list (install them with your package manager)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "convnet: make $what needs: $list. Install them with:  sudo apt-get install -y $list" >&2
  exit 1
fi
echo "convnet: installing $list with apt-get (make $what needs them)"
log=$(mktemp /tmp/convnet-apt.XXXXXX.log)
if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $list; } >"$log" 2>&1; then
  tail -n 5 "$log" >&2
  echo "convnet: apt-get could not install $list (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
