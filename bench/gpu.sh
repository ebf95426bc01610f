#!/usr/bin/env bash
# Every benchmark and the CUDA tests on a GPU machine, one table at the end (under 8 minutes).
#   bench/gpu.sh            # --device cuda
#   bench/gpu.sh --quick    # extra arguments go to bench/run_all.py
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec timeout 480 "$PYTHON" bench/run_all.py --device cuda "$@"
