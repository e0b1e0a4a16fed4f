#!/bin/bash
# The real tier's GPU checks (benchmarks/gpu_check.py says what each shows).
#   bash benchmarks/gpu_check.sh wheels   here, once a checkout: Hydra's wheels into .whl/ (git ignores it)
#   bash benchmarks/gpu_check.sh slim     here, before the device call: the paper suite's cells leave the working
#                                         tree (the device tool sends at most 64 MiB; the check reads only core/)
#   bash benchmarks/gpu_check.sh device   on the GPU machine, through the device tool with carry=[".whl"]
#   bash benchmarks/gpu_check.sh unslim   here, after it: the paper suite's cells back
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  wheels)
    grep -qxF '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
    rm -rf .whl
    # Pure-Python packages the GPU machine's image lacks; pinned to what this checkout installs.
    python -m pip download -q --no-deps -d .whl hydra-core==1.3.8 omegaconf==2.3.0
    python -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # published as a source archive only
    ls .whl ;;
  slim)
    git sparse-checkout set --no-cone '/*' '!/results/runs/paper/' ;;
  unslim)
    git sparse-checkout disable ;;
  device)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 benchmarks/gpu_check.py --out "${OUT:-results/bench}" "${@:2}" ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh wheels|slim|device [gpu_check.py options]|unslim" >&2; exit 2 ;;
esac
