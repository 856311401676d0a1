#!/usr/bin/env bash
# The GPU checks of the estimator kernels, as run on a lent machine: the kernel tests without the Triton interpreter
# (the compiled CPU estimator and its per-CPU tuning included, on that host's CPU), the benchmark on the GPU with
# every shape, the family T blocks FFN384 and MiniLM among them (batch 16, 1024 and a full-batch pass; the blocks at
# their token batches), the host CPU's benchmark (its CPU and the compiled kernels' tuned blocking in every row), and
# one stand-in run end to end on the GPU (embedding extraction and every head; the loop's timers synchronise with the
# device, glai.training.loop.wall_clock). Never part of CI: it needs the lent machine.
# Usage: OUT=<folder> [STANDIN=offline/C1] bash scripts/gpu_check.sh   (python3 must hold torch with CUDA, triton,
# pytest and the project's requirements; GLAI_DATA_ROOT must name the stand-ins' data, all-MiniLM-L6-v2's weights and
# DBPedia-14 for the MiniLM rows and the end-to-end run; without them the MiniLM rows are skipped with a message)
set -uo pipefail
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 GLAI_EXTENSIONS_DIR=${GLAI_EXTENSIONS_DIR:-/tmp/glai-extensions}
PY=${PY:-python3}
SHAPES=${SHAPES:-A1,A2,B1,B2,C1,C2,T768,D768,FFN384,MiniLM}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
$PY -c "import json; from glai.results.cpu import cpu_info; print(json.dumps(cpu_info()))" | tee -a "$OUT/device.txt"
$PY -m glai.kernels.estimator 2>&1 | tee "$OUT/build.log"
$PY -m pytest -q -p no:cacheprovider -rs tests/kernels tests/integration/test_bench.py 2>&1 | tee "$OUT/kernel-tests.log"
$PY scripts/bench_estimator.py --device cuda --shapes "$SHAPES" --batches 16,1024,full --repeats 20 --warmup 3 \
    --threads 8 --out "$OUT/estimator-cuda.csv" 2>&1 | tee "$OUT/bench-cuda.log"
$PY scripts/bench_estimator.py --device cpu --batches 16 --shapes A1,A2,B1,B2,C1,C2 --repeats 30 --threads 1 \
    --out "$OUT/estimator-cpu-host.csv" 2>&1 | tee "$OUT/bench-cpu-host.log"
STANDIN=${STANDIN:-offline/C1}
for head in mlp mlp_reduced linear glai; do
    $PY run.py experiment="$STANDIN" head=$head device=cuda results_dir="$OUT/runs" 2>&1 | tee -a "$OUT/standin.log"
done
# the host CPU's tuned choices (glai.kernels.estimator.tuning), beside the CSVs that used them
cp -r "${GLAI_CACHE_DIR:-$HOME/.cache/glai}/tuning" "$OUT/tuning" 2>/dev/null || true
