#!/usr/bin/env bash
# The device check of issue #5, in one command (< 8 minutes on an H200):
#   1. build pyquant._C and pyquant._C_cuda in place (sm_90 only, all cores),
#   2. run the CUDA and Triton tests on CUDA tensors (tests/test_cuda_build.py, the Triton
#      interpreter suite too), log in $OUT/tests.log,
#   3. a whole model with device="cuda" (bench/model_cuda_check.py): logits and greedy tokens
#      against the CPU, tok/s against torch bf16, log in $OUT/model.log,
#   4. tensor parallelism's NCCL path at world size 1 (bench/parallel_nccl_check.py),
#   5. benchmark (bench/gpu_check.py): GEMV / GEMM on 4096 x 14336 for Q4_K, Q4_0, Q8_0, int4-g128, exl2-4.0
#      vs torch bf16 and the copy bandwidth; the table is printed last and saved to $OUT/table.txt.
# The test oracle (gguf, pure Python) is not on the device image: carry it as a wheel in .whl/
# (bench/GPU_CHECK.md says how); without it the GPU correctness tests skip and this script says so.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/pyquant_gpu_check}
mkdir -p "$OUT"
t0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
# Every step's timeout is its own cap or what is left of GPU_CHECK_BUDGET_S (default 520 s, under
# the device tool's 540 s call limit), whichever is smaller: the caps alone add up to more.
BUDGET=${GPU_CHECK_BUDGET_S:-520}
cap() { local left=$(( BUDGET - ($(date +%s) - t0) - 5 )); [ "$left" -lt "$1" ] && echo $(( left > 10 ? left : 10 )) || echo "$1"; }

stamp "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
nvcc --version | tail -1
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
python3 -c "import triton; print('triton', triton.__version__)" || true

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import gguf" 2>/dev/null || echo "WARNING: gguf (test oracle) missing: GPU correctness tests will SKIP"

stamp "build (CUDA sm_90)"
BUILD=build/gpu
PYBIND_DIR=$(python3 -c "import pybind11; print(pybind11.get_cmake_dir())")
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -Dpybind11_DIR="$PYBIND_DIR" \
  -DPython_EXECUTABLE="$(command -v python3)" -DPYQUANT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/build.log" 2>&1 \
  && cmake --build "$BUILD" -j "$(nproc)" >>"$OUT/build.log" 2>&1 \
  && cp -f "$BUILD"/_C*.so pyquant/ \
  || { tail -40 "$OUT/build.log"; stamp "BUILD FAILED"; exit 1; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import pyquant._C_cuda as m; print('CUDA dequantizers:', len(m.dequant_types()), 'devices:', m.device_count())"

stamp "tests on CUDA tensors"
PYQUANT_TRITON_AUTOTUNE=0 timeout "$(cap 200)" python3 -m pytest tests/test_cuda_build.py tests/test_triton_kernels.py \
  -q -rs -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -25

stamp "a whole model on CUDA: tiny models against the CPU, a Llama-shaped stack against torch bf16"
timeout "$(cap 90)" python3 bench/model_cuda_check.py 2>&1 | tee "$OUT/model.log" | tail -12

stamp "tensor parallel: NCCL path, world size 1"
timeout "$(cap 60)" python3 -m torch.distributed.run --nproc-per-node 1 bench/parallel_nccl_check.py 2>&1 | grep -v "^W" | tail -5

stamp "benchmark"
timeout "$(cap 200)" python3 bench/gpu_check.py --budget-s 120 --out "$OUT/table.txt" 2>&1 | tee "$OUT/bench.log" | tail -60
stamp "done"
