"""CUDA kernels (pyquant._C_cuda) as the "cuda" dispatch backend.

Imported lazily by pyquant.dispatch the first time an op runs on a CUDA tensor; raises ImportError
when pyquant was built without nvcc (dispatch then skips it and the Triton / reference backends
serve CUDA tensors).
"""
from __future__ import annotations

from ..._ext import _C_cuda

if _C_cuda is None:
    raise ImportError("pyquant._C_cuda is not built (pyquant was installed without nvcc)")

from . import matmul  # noqa: E402

PRIORITY = 20  # above triton (15): the CUDA kernels are the tuned path


def _register() -> None:
    try:
        from ...dispatch import Backend, register_backend
    except ImportError:  # dispatch not there (older tree): nothing to register with
        return
    register_backend(Backend("cuda", "cuda", matmul.supports, dict(matmul.IMPL), priority=PRIORITY))


_register()
