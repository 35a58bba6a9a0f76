#!/usr/bin/env bash
# Everything a GPU machine is for, in one command (the device tool lends one for minutes at a time):
# build schedx with its CUDA module, run the CUDA and tensor-mode tests, run the GPU benchmark.
# Logs and the results files go to $OUT (default: benchmarks/results). BENCH_ARGS=--parity-only skips
# the timings.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-benchmarks/results}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
echo "==> build (SCHEDX_CUDA=1)"
SCHEDX_CUDA=1 "$PY" -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -n 20 || exit 1
"$PY" -c 'import schedx._cuda as c; print("schedx._cuda", c.launch)' || exit 1
echo "==> tests: CUDA + tensor mode"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_tensor_mode.py -rs 2>&1 | tee "$OUT/gpu-tests.log" | tail -n 40
echo "==> GPU benchmark"
"$PY" benchmarks/bench_gpu.py --out-dir "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu-bench.log" | tail -n 40
