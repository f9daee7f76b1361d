#!/usr/bin/env bash
# The PyPI torch baseline for `make bench`, in a virtual environment of its own (never a
# dependency of the build or the tests). Creates it on first use, then prints one line:
#   <python of the venv> <LD_LIBRARY_PATH it needs>
#   TORCH_VENV=DIR (default ~/.cache/convnet-torch-venv)   bash bench/torch_venv.sh [--create]
# Without --create a missing venv prints nothing and exits 1.
# PyPI's torch wheel is the CUDA build; on a CPU-only machine it imports when its nvidia
# libraries are installed without their dependency pins and found through LD_LIBRARY_PATH.
set -euo pipefail
VENV=${TORCH_VENV:-$HOME/.cache/convnet-torch-venv}
if [ ! -x "$VENV/bin/python" ]; then
  [ "${1:-}" = "--create" ] || exit 1
  echo "bench/torch_venv.sh: creating $VENV (PyPI torch, several GB)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps torch nvidia-cufile nvidia-cusparselt-cu13 nvidia-nvshmem-cu13 nvidia-nccl-cu13 >&2
  "$VENV/bin/pip" install -q numpy typing_extensions sympy filelock networkx jinja2 fsspec >&2
fi
libs=$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':')
echo "$VENV/bin/python ${libs%:}"
