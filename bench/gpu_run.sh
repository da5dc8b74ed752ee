#!/usr/bin/env bash
# The GPU benchmark on a machine whose python3 already has a CUDA torch and Triton (a lent GPU box, no network,
# no venv): installs this checkout without dependencies into a temp folder, runs `repnext bench --device cuda`,
# and writes GPU_RESULTS.md and the log (autotuner choices included) into OUT_DIR (default: bench/).
# Usage: bench/gpu_run.sh [OUT_DIR] [--quick]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/bench}" && cd "${1:-$repo/bench}" && pwd)
shift || true
site=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" "$repo"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv || true
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
# run from the install, so that the checkout's repnext_core/ (kernels/ not mapped into it) cannot shadow it
cd "$site"
PYTHONPATH=$site TRITON_PRINT_AUTOTUNING=1 PYTHONUNBUFFERED=1 \
    python3 -m repnext_core.cli bench --device cuda --out "$out/GPU_RESULTS.md" "$@" 2>&1 | tee "$out/gpu_bench.log"
