#!/usr/bin/env bash
# The device check of the GPU backend in one go: GPU tests, then bench/gpu_bench.py (~8 min on an H200).
#
#   bench/gpu_check.sh prepare   # where a package registry is reachable: fetch the wheels the
#                                # device image lacks (google-crc32c) into bench-results/gpu-wheels
#   bench/gpu_check.sh [OUTDIR]  # on the GPU machine; logs and gpu-bench.json go to OUTDIR
#                                # (default $OUT, else bench-results)
#   bench/gpu_check.sh rag [OUTDIR]  # the query layer instead (~2 min): Llama CuPy/numpy parity and
#                                # generation tok/s on both backends (random SmolLM2-shaped weights)
# On the device tool: run(command="bench/gpu_check.sh", carry=["bench-results/gpu-wheels"], timeout_s=600).
# The device image has cupy, numba, numpy, pytest but no registry: the gpu extra (cupy) is
# pip-installed only where it is missing, and the carried wheels are installed offline.
set -u
cd "$(dirname "$0")/.."
WHEELS=bench-results/gpu-wheels
PY=${PYTHON:-python3}
if [ "${1:-}" = prepare ]; then
    exec $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" google-crc32c
fi
STAGE=indices
if [ "${1:-}" = rag ]; then STAGE=rag; shift; fi
OUT_DIR=${1:-${OUT:-bench-results}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/shoal-numba-cache}
$PY -c "import cupy" 2>/dev/null || $PY -m pip install -q 'cupy-cuda12x>=13' || { echo "cannot install the gpu extra"; exit 1; }
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/shoal-site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/shoal-site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! $PY -c "import shoal" 2>/dev/null; then  # the repository root is the package: link it as 'shoal'
    mkdir -p /tmp/shoal-src && ln -sfn "$PWD" /tmp/shoal-src/shoal
    export PYTHONPATH=/tmp/shoal-src${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import logging; logging.basicConfig(level=logging.INFO)
from shoal.engine.backend import gpu_available
raise SystemExit(0 if gpu_available() else 'no usable GPU: see the log line above')" || exit 1
if [ "$STAGE" = rag ]; then
    timeout 60 $PY -m pytest tests/rag/test_models_llama.py -k cupy -q -rs -p no:cacheprovider 2>&1 | tee "$OUT_DIR/rag-gpu-tests.log"
    tests_rc=${PIPESTATUS[0]}
    timeout 200 $PY -m shoal.bench.llm_bench --random --backends numpy,cupy --out "$OUT_DIR/llm-bench.json" 2>&1 | tee "$OUT_DIR/llm-bench.log"
    bench_rc=${PIPESTATUS[0]}
    echo "rag gpu tests rc=$tests_rc, llm bench rc=$bench_rc"
    exit $(( tests_rc || bench_rc ))
fi
timeout 200 $PY -m pytest tests/gpu -q -rs -p no:cacheprovider 2>&1 | tee "$OUT_DIR/gpu-tests.log"
tests_rc=${PIPESTATUS[0]}
timeout 330 $PY -m shoal.bench.gpu_bench --out "$OUT_DIR/gpu-bench.json" 2>&1 | tee "$OUT_DIR/gpu-bench.log"
bench_rc=${PIPESTATUS[0]}
echo "gpu tests rc=$tests_rc, gpu bench rc=$bench_rc"
exit $(( tests_rc || bench_rc ))
