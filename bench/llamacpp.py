"""llama.cpp's llama-bench, built once from the sdist the tests already use (PyPI's llama-cpp-python
0.3.36 vendors llama.cpp 0c1e570), for side-by-side runs with `pyquant bench` (issue #12).

    python bench/llamacpp.py            # build (or find) it and print its path

Cached under $PYQUANT_CACHE/llama.cpp-<version>/ (default ~/.cache/pyquant). Release, GGML_NATIVE
(the CPU's own ISA, as a user building it would), the llama-bench target only: ~10-20 min on 2 cores
the first time. PYQUANT_LLAMACPP_ISA=avx2 builds (into build-avx2/) for AVX2 + FMA + F16C + BMI2
only, the ISA of an AMD Zen 3: on a CPU with AVX-512 (Zen 4, recent Xeons) that is the comparison
for the machines without it, since pyquant's kernels are AVX2 everywhere. `find_llama_bench()` returns None with the reason when it cannot be built (offline,
no compiler): the benchmarks then skip with that notice.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "llama-cpp-python==0.3.36"


def cache_dir() -> Path:
    root = Path(os.environ.get("PYQUANT_CACHE", Path.home() / ".cache" / "pyquant"))
    return root / f"llama.cpp-{SDIST.split('==')[1]}"


def _source(dest: Path) -> Path:
    """The sdist's vendor/llama.cpp tree, extracted into dest (once)."""
    src = dest / "llama.cpp"
    if (src / "CMakeLists.txt").exists():
        return src
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
                        "--no-build-isolation", SDIST, "-d", tmp], check=True, capture_output=True, timeout=600)
        archive = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(archive) as tar:
            prefix = tar.getnames()[0].split("/")[0] + "/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(src, members=[m for m in members if m.name], filter="data")
    return src


def llamacpp_isa() -> str:
    """"native" (GGML_NATIVE) or "avx2" (PYQUANT_LLAMACPP_ISA)."""
    isa = os.environ.get("PYQUANT_LLAMACPP_ISA", "native")
    if isa not in ("native", "avx2"):
        raise RuntimeError(f"PYQUANT_LLAMACPP_ISA must be native or avx2, got {isa!r}")
    return isa


def build_llama_bench(jobs: int | None = None) -> Path:
    dest = cache_dir()
    isa = llamacpp_isa()
    build = dest / ("build" if isa == "native" else f"build-{isa}")
    exe = build / "bin" / "llama-bench"
    if exe.exists():
        return exe
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake not found")
    src = _source(dest)
    flags = ["-DGGML_NATIVE=ON"] if isa == "native" else [
        "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON",
        "-DGGML_AVX512=OFF", "-DGGML_AVX_VNNI=OFF"]
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *flags,
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF", "-DBUILD_SHARED_LIBS=OFF"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-bench", "-j", str(jobs or os.cpu_count() or 2)],
                   check=True, capture_output=True)
    return exe


def find_llama_bench() -> tuple[Path | None, str]:
    """(llama-bench, "") or (None, why not)."""
    try:
        return build_llama_bench(), ""
    except (OSError, RuntimeError, subprocess.SubprocessError, StopIteration) as e:
        err = getattr(e, "stderr", b"") or b""
        tail = err.decode(errors="replace").strip().splitlines()[-3:] if isinstance(err, bytes) else []
        return None, f"llama-bench unavailable ({type(e).__name__}: {e}; {' | '.join(tail)})"


if __name__ == "__main__":
    exe, why = find_llama_bench()
    print(exe or why)
    sys.exit(0 if exe else 1)
