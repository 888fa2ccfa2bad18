#!/usr/bin/env bash
# Create (or update) .venv-aimet: a SEPARATE environment with AIMET (aimet-torch, the quantizer the
# paper ran) next to this toolkit, for `--quantizer aimet`, tests/test_aimet.py (make test-aimet) and
# benchmarks/aimet_crosscheck.py. The default environment (.venv, `make setup`) is never touched.
#
# Why a second environment: aimet-torch needs torchvision, and the torchvision that matches the CPU
# torch of .venv (2.13.0) does not import next to aimet-torch 2.42; torch 2.14.1 with torchvision
# 0.29.1 does (CUDA builds, ~6.4 GB installed, ~2 min from local wheels; AIMET runs on the CPU).
# Everything is installed in one resolver pass with a constraints file pinning that torch and
# torchvision, so no later requirement can swap them.
#
# Variables: AIMET_VENV (default .venv-aimet), PYTHON (default python3, >= 3.10 for aimet-torch),
# AIMET_TORCH / AIMET_TORCHVISION / AIMET_VERSION (the pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."
AIMET_VENV=${AIMET_VENV:-.venv-aimet}
PYTHON=${PYTHON:-python3}
AIMET_TORCH=${AIMET_TORCH:-2.14.1}
AIMET_TORCHVISION=${AIMET_TORCHVISION:-0.29.1}
AIMET_VERSION=${AIMET_VERSION:-2.42.0}

if [ "$(cd "$(dirname "$AIMET_VENV")" 2>/dev/null && pwd)/$(basename "$AIMET_VENV")" = "$(pwd)/.venv" ]; then
  echo "error: AIMET_VENV must not be .venv (the default environment)" >&2
  exit 2
fi
if [ ! -x "$AIMET_VENV/bin/python" ]; then
  # No system site-packages: nothing from the machine's Python may shadow the pinned torch stack.
  "$PYTHON" -m venv "$AIMET_VENV"
fi
echo '*' > "$AIMET_VENV/.gitignore"  # git never sees the 6 GB environment, whatever .gitignore says
PY="$AIMET_VENV/bin/python"

CONSTRAINTS="$AIMET_VENV/aimet-constraints.txt"
printf 'torch==%s\ntorchvision==%s\naimet-torch==%s\n' "$AIMET_TORCH" "$AIMET_TORCHVISION" "$AIMET_VERSION" > "$CONSTRAINTS"
echo "setup_aimet: torch $AIMET_TORCH, torchvision $AIMET_TORCHVISION, aimet-torch $AIMET_VERSION into $AIMET_VENV"
"$PY" -m pip install --retries 1 -c "$CONSTRAINTS" \
  "torch==$AIMET_TORCH" "torchvision==$AIMET_TORCHVISION" "aimet-torch==$AIMET_VERSION" -e ".[test]"
"$PY" -c "import aimet_torch, torch; print('setup_aimet: aimet-torch imports with torch', torch.__version__)"
