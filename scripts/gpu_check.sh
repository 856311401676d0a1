#!/usr/bin/env bash
# The GPU checks of the estimator kernels, as run on a lent machine (issue 13): the kernel tests without the
# Triton interpreter, the compiled CPU estimator on that host's CPU, and `make bench` on the GPU and the host CPU.
# Usage: OUT=<folder> bash scripts/gpu_check.sh   (python3 must hold torch with CUDA, triton and pytest)
set -uo pipefail
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 GLAI_EXTENSIONS_DIR=${GLAI_EXTENSIONS_DIR:-/tmp/glai-extensions}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/device.txt"
$PY -m glai.kernels.estimator 2>&1 | tee "$OUT/build.log"
$PY -m pytest -q -p no:cacheprovider -rs tests/kernels 2>&1 | tee "$OUT/kernel-tests.log"
$PY scripts/bench_estimator.py --device cuda --batches 16,1024 --repeats 20 --warmup 3 --threads 8 \
    --out "$OUT/estimator-cuda.csv" 2>&1 | tee "$OUT/bench-cuda.log"
$PY scripts/bench_estimator.py --device cpu --batches 16 --shapes A1,A2,B1,B2,C1,C2 --repeats 30 --threads 1 \
    --out "$OUT/estimator-cpu-host.csv" 2>&1 | tee "$OUT/bench-cpu-host.log"
