"""llama.cpp's own quantizers as a test oracle, built at test time.

The C sources come from PyPI's llama-cpp-python sdist (it vendors llama.cpp; 0.3.36 vendors
ggml-org/llama.cpp 0c1e570). Only the handful of files ggml-quants.c needs are extracted into a
cache directory; they are compiled the way llama.cpp compiles its ggml-base library (C, gnu11,
-O3 -DNDEBUG, no -march: ggml-base is built for the baseline ISA, only ggml-cpu gets -march)
together with tests/oracle/ggml_shim.c, and loaded with ctypes. Nothing from the sdist is
committed. The build takes ~15-30 s on 2 cores and is cached
($PYQUANT_CACHE/oracle, default ~/.cache/pyquant/oracle).

    lib = load()             # raises OracleUnavailable (with the reason) when it cannot be built
    lib.quantize(qtype_id, x)   # numpy float32 [rows, cols] -> numpy uint8 [rows, row_bytes]

Environment: PYQUANT_ORACLE_CFLAGS adds compiler flags (e.g. "-march=native -ffp-contract=fast" to
see whether FMA contraction changes any byte: see tests/test_quantize.py for the finding).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

SDIST = "llama-cpp-python==0.3.36"
PREFIX = "vendor/llama.cpp/"
SOURCES = [
    "ggml/src/ggml-quants.c", "ggml/src/ggml-quants.h", "ggml/src/ggml-common.h", "ggml/src/ggml-impl.h",
    "ggml/src/ggml-cpu/ggml-cpu-impl.h", "ggml/include/ggml.h", "ggml/include/gguf.h",
    "ggml/include/ggml-cpu.h", "ggml/include/ggml-backend.h", "ggml/include/ggml-alloc.h",
]
BASE_CFLAGS = ["-O3", "-DNDEBUG", "-std=gnu11", "-D_GNU_SOURCE", "-fPIC", "-shared"]
_HERE = pathlib.Path(__file__).resolve().parent


class OracleUnavailable(RuntimeError):
    pass


def cache_dir() -> pathlib.Path:
    root = os.environ.get("PYQUANT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyquant")
    return pathlib.Path(root) / "oracle" / SDIST.replace("==", "-")


def _fetch_sources(dest: pathlib.Path) -> None:
    """pip-download the sdist (no build, no install) and extract only SOURCES into dest."""
    with tempfile.TemporaryDirectory() as tmp:
        base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
                "-d", tmp, "--quiet", SDIST]
        # pip prepares the sdist's metadata; without build isolation it reuses the installed
        # scikit-build-core (fast, offline); if that is missing, let pip fetch it.
        errors = []
        for extra in (["--no-build-isolation"], []):
            r = subprocess.run(base[:4] + extra + base[4:], capture_output=True, text=True)
            if r.returncode == 0:
                break
            errors.append(r.stderr[-2000:])
        else:
            raise OracleUnavailable("pip download %s failed:\n%s" % (SDIST, "\n".join(errors)))
        archives = list(pathlib.Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not archives:
            raise OracleUnavailable("pip download produced no sdist")
        with tarfile.open(archives[0]) as tar:
            top = tar.getnames()[0].split("/")[0] + "/"
            for rel in SOURCES:
                member = tar.getmember(top + PREFIX + rel)
                data = tar.extractfile(member).read()
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)


def _build(dest: pathlib.Path, lib_path: pathlib.Path, extra_flags: list[str]) -> None:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise OracleUnavailable("no C compiler (gcc/cc) on PATH")
    src = dest / "ggml" / "src"
    tmp_lib = lib_path.with_suffix(".tmp%d.so" % os.getpid())
    cmd = [cc, *BASE_CFLAGS, *extra_flags, "-I", str(src), "-I", str(dest / "ggml" / "include"),
           str(src / "ggml-quants.c"), str(_HERE / "ggml_shim.c"), "-o", str(tmp_lib), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise OracleUnavailable("oracle compile failed: %s\n%s" % (" ".join(cmd), r.stderr[-3000:]))
    os.replace(tmp_lib, lib_path)  # atomic: concurrent test processes never load a half-written file


class GGMLOracle:
    def __init__(self, lib_path: pathlib.Path):
        self.path = lib_path
        self._lib = ctypes.CDLL(str(lib_path))
        f = self._lib.pq_oracle_quantize
        f.restype = ctypes.c_size_t
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        g = self._lib.pq_oracle_dequantize
        g.restype = ctypes.c_int
        g.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    def quantize(self, qtype_id: int, x: np.ndarray, row_bytes: int) -> np.ndarray:
        """ggml_quantize_chunk(type, x, ..., imatrix=NULL) of a float32 [rows, cols] matrix."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        rows, cols = x.shape
        out = np.zeros((rows, row_bytes), dtype=np.uint8)
        n = self._lib.pq_oracle_quantize(int(qtype_id), x.ctypes.data, out.ctypes.data, rows, cols, None)
        if n != out.nbytes:
            raise ValueError(f"oracle wrote {n} bytes for type {qtype_id}, expected {out.nbytes}")
        return out

    def dequantize(self, qtype_id: int, data: np.ndarray, n: int) -> np.ndarray:
        data = np.ascontiguousarray(data, dtype=np.uint8)
        out = np.empty(n, dtype=np.float32)
        if not self._lib.pq_oracle_dequantize(int(qtype_id), data.ctypes.data, out.ctypes.data, n):
            raise ValueError(f"oracle has no dequantizer for type {qtype_id}")
        return out


_loaded: dict[str, GGMLOracle] = {}


def load() -> GGMLOracle:
    extra = os.environ.get("PYQUANT_ORACLE_CFLAGS", "").split()
    key = hashlib.sha256(" ".join(extra).encode() + (_HERE / "ggml_shim.c").read_bytes()).hexdigest()[:12]
    if key in _loaded:
        return _loaded[key]
    dest = cache_dir()
    lib_path = dest / f"libggml_quants_{key}.so"
    if not lib_path.exists():
        dest.mkdir(parents=True, exist_ok=True)
        if not all((dest / rel).exists() for rel in SOURCES):
            _fetch_sources(dest)
        _build(dest, lib_path, extra)
    _loaded[key] = GGMLOracle(lib_path)
    return _loaded[key]


if __name__ == "__main__":  # python -m tests.oracle.ggml_oracle: build (or find) the oracle, print its path
    print(load().path)
