#!/usr/bin/env bash
# One call runs every benchmark that needs a GPU and writes benchmarks/results/gpu.md:
#   bash benchmarks/gpu_suite.sh              # CUDA when available, else the tiny CPU run
#   bash benchmarks/gpu_suite.sh --cpu-tiny   # tiny sizes on the CPU (CI; a few minutes)
# Details and goals: benchmarks/gpu_suite.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/gpu_suite.py "$@"
