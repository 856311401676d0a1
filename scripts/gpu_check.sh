#!/usr/bin/env bash
# The GPU checks of the estimator kernels, as run on a lent machine (issues 13, 21): the kernel tests without the
# Triton interpreter, the compiled CPU estimator on that host's CPU, `make bench` on the GPU (batch 16, 1024 and a
# full-batch pass) and the host CPU, and one stand-in run end to end on the GPU (embedding extraction and every
# head; the loop's timers synchronise with the device, glai.training.loop.wall_clock).
# Usage: OUT=<folder> [STANDIN=offline/C1] bash scripts/gpu_check.sh   (python3 must hold torch with CUDA, triton,
# pytest and the project's requirements; GLAI_DATA_ROOT must name the stand-ins' data for the end-to-end run)
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
$PY scripts/bench_estimator.py --device cuda --batches 16,1024,full --repeats 20 --warmup 3 --threads 8 \
    --out "$OUT/estimator-cuda.csv" 2>&1 | tee "$OUT/bench-cuda.log"
$PY scripts/bench_estimator.py --device cpu --batches 16 --shapes A1,A2,B1,B2,C1,C2 --repeats 30 --threads 1 \
    --out "$OUT/estimator-cpu-host.csv" 2>&1 | tee "$OUT/bench-cpu-host.log"
STANDIN=${STANDIN:-offline/C1}
for head in mlp mlp_reduced linear glai; do
    $PY run.py experiment="$STANDIN" head=$head device=cuda results_dir="$OUT/runs" 2>&1 | tee -a "$OUT/standin.log"
done
