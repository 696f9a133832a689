#!/usr/bin/env bash
# Incremental in-place build for development: compiles the extension(s) into build/dev and
# copies them next to the Python sources, so `PYTHONPATH=. pytest` uses them.
# Usage: tools/dev_build.sh [extra cmake -D args]   (PYQUANT_CUDA=OFF by default here: faster)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${PYQUANT_BUILD_DIR:-build/dev}
PYBIND_DIR=$(python3 -c "import pybind11; print(pybind11.get_cmake_dir())")
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -Dpybind11_DIR="$PYBIND_DIR" \
        -DPython_EXECUTABLE="$(command -v python3)" -DPYQUANT_CUDA=${PYQUANT_CUDA:-OFF} "$@" >/dev/null
fi
cmake --build "$BUILD" -j 2
cp -f "$BUILD"/_C*.so pyquant/
