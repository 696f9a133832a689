"""Triton kernels tested on the CPU with TRITON_INTERPRET=1 (tests/triton_interp_suite.py).

The interpreter has to be switched on before triton is first imported, and switching it on in this
process would turn every later Triton use into interpreted code, so the suite runs in a child
pytest with the variable set, and this test reports its result (the child's output on failure).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from child_process import child_env, child_python

pytest.importorskip("triton")
pytest.importorskip("gguf")

HERE = Path(__file__).resolve().parent


def test_triton_kernels_under_interpreter():
    root = str(HERE.parent)
    proc = subprocess.run(
        child_python("-m", "pytest", str(HERE / "triton_interp_suite.py"), "-q", "-p", "no:cacheprovider",
                     "-W", "ignore::RuntimeWarning", "--rootdir", root),
        cwd=root, env=child_env(TRITON_INTERPRET="1"), capture_output=True, text=True, timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print(f"triton interpreter suite: {summary}")
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
