#!/usr/bin/env bash
# GPU check, run on a lent CUDA machine from the repository root:
#   bash deploy/gpu-check.sh            (writes its logs to $OUT or ./gpu-check-out)
# Runs the GPU test subset, the standard benchmark cases on CUDA (local engine, then the
# Dask engine with 1 and 2 workers), and on that machine's CPU the Dask engine with 1 and 2
# workers on the 3D case beside the split bound. Each step has its own time limit and log,
# and a failed step does not stop the next ones; the exit status is that of the first
# failed step.
#
# Installing: where ./.whl holds wheels (a machine with no package index: the image's
# python3 holds torch, the project's other dependencies travel as wheels, installed into
# /tmp/site), else into a venv from the package index (CUDA build of torch by default).
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (to try the script on a machine
# without a GPU); GPU_CHECK_CPU=0 leaves out the steps on the machine's CPU.
set -uo pipefail
OUT=${OUT:-gpu-check-out}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0

if [ -d .whl ] && compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    PY=python3
elif [ -n "${VIRTUAL_ENV:-}" ] && python -c "import daskorym" 2>/dev/null; then
    PY=python  # an environment that already holds the package
else
    python3 -m venv /tmp/dk-gpu && . /tmp/dk-gpu/bin/activate
    python -m pip install -q --upgrade pip
    python -c "import torch" 2>/dev/null || python -m pip install -q torch
    python -m pip install -q -e '.[test]' || exit 1
    PY=python
fi

# step NAME LIMIT_S COMMAND...: runs COMMAND with a time limit, its output to $OUT/NAME.txt
step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    tail -n 40 "$OUT/$name.txt"
    echo "== $name: rc $rc, $((SECONDS - t0)) s"
    if [ $rc -ne 0 ] && [ $status -eq 0 ]; then status=$rc; fi
}

step env 60 $PY -c "
import sys, torch, dask, distributed, zarr, numpy, daskorym
print(sys.version)
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
print('numpy', numpy.__version__, 'dask', dask.__version__, 'distributed', distributed.__version__,
      'zarr', zarr.__version__)"
command -v nvidia-smi > /dev/null && nvidia-smi >> "$OUT/env.txt" 2>&1

bench="$PY -m daskorym bench"
step gpu-tests 200 $PY -m pytest -q -rs -m gpu tests/test_gpu.py -s
step bench-$DEVICE 150 $bench --device "$DEVICE" --epochs 3 --json "$OUT/bench-$DEVICE.json"
step bench-$DEVICE-dask 90 $bench --device "$DEVICE" --epochs 3 --case 3d \
    --engine dask-1-direct --engine dask-2-direct
# the machine's CPU: more cores than workers, the Dask engine's scaling without sharing
# (GPU_CHECK_CPU=0 skips these)
[ "${GPU_CHECK_CPU:-1}" = 0 ] && exit $status
step bench-cpu-dask 120 $bench --device cpu --epochs 3 --case 3d --case 2d \
    --engine local --engine dask-1-direct --engine dask-2-direct --json "$OUT/bench-cpu-dask.json"
step bench-cpu-split 60 $bench --case 3d --split 2
exit $status
