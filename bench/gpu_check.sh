#!/usr/bin/env bash
# GPU readiness: pytest -m gpu, gcref check --backend cuda, bench_gc's cases against torch.func
# on the same GPU, VGG-13 CIFAR-10-shaped training-step throughput; writes
# validation/gpu-results.md (or --out FILE). Under 8 minutes on one GPU (each phase has a limit).
#   bash bench/gpu_check.sh              # on a machine with a GPU (CuPy and a CUDA torch installed)
#   bash bench/gpu_check.sh --dry        # CPU, tiny sizes: checks the script itself (run by the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" bench/gpu_check.py "$@"
