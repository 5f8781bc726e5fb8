#!/usr/bin/env bash
# Run gangplank's whole test suite on a fresh machine: installs what is
# missing (scripts/setup.sh, plus torch and jax for the other Keras backends),
# then runs pytest. The Keras callback tests run on TensorFlow and, in
# subprocesses, again on PyTorch and on JAX. Exits non-zero on any failure.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
GANGPLANK_EXTRAS=tensorflow,test,examples source scripts/setup.sh
# torch 2.13.0's CPU wheel lies on this kind of machine; pip takes it from there.
"$PY" -c "import torch" >/dev/null 2>&1 || "$PY" -m pip install -q "torch==2.13.0"
# CPU jax for the third backend (works with the numpy and Keras that setup.sh installs).
"$PY" -c "import jax" >/dev/null 2>&1 || "$PY" -m pip install -q "jax[cpu]==0.10.2"

export TF_CPP_MIN_LOG_LEVEL=2 PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m pytest -p no:cacheprovider "$@"
