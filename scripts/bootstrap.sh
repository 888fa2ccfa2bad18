#!/usr/bin/env bash
# Create (or update) the virtual environment $VENV (default .venv) with this toolkit installed.
#
# torch: the venv sees the system's site-packages, so a torch that is already installed (a CUDA
# build in a conda env or on a GPU machine) is kept. Without one, a machine with an NVIDIA driver
# gets pip's default (CUDA) build; a machine without gets the CPU build torch==2.13.0 (from the
# PyTorch CPU index, or a local wheel), never a multi-GB CUDA download. Everything else is then
# installed with a constraints file pinning the torch that is there, so pip can never replace it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test}
PYTHON=${PYTHON:-python3}
CPU_TORCH=${CPU_TORCH:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "bootstrap: NVIDIA GPU found, installing pip's default torch build"
    "$PY" -m pip install torch
  else
    echo "bootstrap: no GPU, installing the CPU build torch==$CPU_TORCH"
    "$PY" -m pip install --retries 1 "torch==$CPU_TORCH" \
      --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi

TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__)")
CONSTRAINTS="$VENV/torch-constraints.txt"
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
echo "bootstrap: keeping torch $TORCH_VERSION; installing inrcompress[$EXTRAS]"
"$PY" -m pip install --retries 1 -c "$CONSTRAINTS" -e ".[$EXTRAS]"
