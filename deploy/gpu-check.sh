#!/usr/bin/env bash
# GPU check, run on a lent CUDA machine from the repository root:
#   bash deploy/gpu-check.sh            (writes its logs to $OUT or ./gpu-check-out)
# Installs the package (CUDA build of torch from the machine's index), runs the GPU
# test subset and the standard benchmark cases on CUDA.
set -euo pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
python3 -m venv /tmp/dk-gpu && . /tmp/dk-gpu/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q torch
python -m pip install -q -e '.[test]'
nvidia-smi | tee "$OUT/nvidia-smi.txt"
python -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.txt"
daskorym bench --device cuda --epochs 3 --json "$OUT/bench-cuda.json" 2>&1 | tee "$OUT/bench-cuda.txt"
daskorym bench --device cpu --epochs 3 --json "$OUT/bench-cpu.json" 2>&1 | tee "$OUT/bench-cpu.txt"
