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
# copy then rename: a new inode, so a running process that has the old module mapped keeps it
# (cp over it in place rewrites the mapped pages under that process: it crashes in _C)
for so in "$BUILD"/_C*.so; do
  cp -f "$so" "pyquant/.$(basename "$so").tmp" && mv -f "pyquant/.$(basename "$so").tmp" "pyquant/$(basename "$so")"
done
