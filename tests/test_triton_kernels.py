"""Triton kernels tested on the CPU with TRITON_INTERPRET=1 (tests/triton_interp_suite.py).

The interpreter has to be switched on before triton is first imported, and switching it on in this
process would turn every later Triton use into interpreted code, so the suite runs in a child
pytest with the variable set, and this test reports its result (the child's output on failure).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
pytest.importorskip("gguf")

HERE = Path(__file__).resolve().parent


def test_triton_kernels_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else root
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE / "triton_interp_suite.py"), "-q", "-p", "no:cacheprovider",
         "-W", "ignore::RuntimeWarning", "--rootdir", root],
        cwd=root, env=env, capture_output=True, text=True, timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print(f"triton interpreter suite: {summary}")
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
