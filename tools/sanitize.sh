#!/usr/bin/env bash
# ASan + UBSan run of pyquant's C++ side (issue #15), part of CI (.ci/run):
#   1. builds pyquant._C with -fsanitize=address,undefined (-O3 kernels, no LTO: it made the link
#      take many minutes; -g for readable reports) into
#      build/asan and places it in a copy of the package (build/asan/site/pyquant),
#   2. runs the tests that drive the C++ code hardest against that copy, with the sanitizer runtimes
#      preloaded into Python: the thread pool stress, the GGUF reader and its fuzz (fixed seed),
#      the CPU kernels, the C++ token step, the runner on tiny models, AWQ / EXL2 readers and the
#      input-validation cases. Any sanitizer report aborts the run (halt_on_error / abort_on_error).
# Usage: tools/sanitize.sh [extra pytest args]   (~8 min on 2 cores: 1.5 to build, 6.5 to test;
# 719 tests, 0 reports on 2026-12-06)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${PYQUANT_ASAN_BUILD_DIR:-build/asan}
PYBIND_DIR=$(python3 -c "import pybind11; print(pybind11.get_cmake_dir())")
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
      -Dpybind11_DIR="$PYBIND_DIR" \
      -DPython_EXECUTABLE="$(command -v python3)" -DPYQUANT_CUDA=OFF \
      -DPYQUANT_SANITIZE=address,undefined >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
SITE="$BUILD/site"
rm -rf "$SITE" && mkdir -p "$SITE"
cp -r pyquant "$SITE/"
rm -f "$SITE"/pyquant/_C*.so "$SITE"/pyquant/_C_cuda*.so
cp "$BUILD"/_C*.so "$SITE/pyquant/"
# The runtimes must come first in the process; leaks are not checked (CPython and torch keep
# allocations alive at exit by design); torch's own operator new/delete pairs trip the mismatch check.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# Reports go to files (pytest captures a test's stderr, and an aborted process never prints it).
REPORTS="$PWD/$BUILD/reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1:halt_on_error=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan"
export PYTHONPATH="$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYQUANT_SANITIZED=1
# -P: the working directory (the source tree, with the regular _C) must not shadow the copy
python3 -P -c "import pyquant._ext as e; f = e._C.__file__; print('sanitized _C:', f); assert 'asan' in f, f"
trap 'status=$?; for f in "$REPORTS"/*; do [ -e "$f" ] && { echo "== $f"; cat "$f"; }; done; exit $status' EXIT
python3 -P -m pytest -q -p no:cacheprovider -x -rfE \
  tests/test_threadpool.py tests/test_gguf_reader.py tests/test_gguf_fuzz.py tests/test_dequantize.py \
  tests/test_cpu_matmul.py tests/test_step_native.py tests/test_model.py tests/test_input_validation.py \
  tests/test_awq.py tests/test_exl2.py tests/test_parallel.py -k "not peak_rss and not smollm2_awq" "$@"
