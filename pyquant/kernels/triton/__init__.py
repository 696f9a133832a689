"""Triton kernels as the "triton" dispatch backend.

Importable without a GPU; without triton installed the import raises ImportError (dispatch skips
the backend). On CUDA tensors it ranks below the CUDA C++ backend; under TRITON_INTERPRET=1 (CPU
tests) it registers for CPU tensors with a negative priority, so it only runs when forced
(PYQUANT_BACKEND=triton) and never slows ordinary CPU calls.
"""
from __future__ import annotations

import os

try:
    import triton  # noqa: F401
except ImportError as e:  # optional dependency
    raise ImportError(f"pyquant.kernels.triton needs the 'triton' package ({e})") from e

from . import ops  # noqa: E402

PRIORITY_CUDA = 15


def _register() -> None:
    try:
        from ...dispatch import Backend, register_backend
    except ImportError:
        return
    if os.environ.get("TRITON_INTERPRET") == "1":
        register_backend(Backend("triton", "cpu", ops.supports, dict(ops.IMPL), priority=-1))
    else:
        register_backend(Backend("triton", "cuda", ops.supports, dict(ops.IMPL), priority=PRIORITY_CUDA))


_register()
