"""Loads the compiled extensions. `_C` (CPU) always exists in an installed pyquant; `_C_cuda` only
when the package was built with nvcc. Nothing is compiled at import time."""
from __future__ import annotations

import importlib

_C = importlib.import_module("pyquant._C")

try:  # the CUDA module needs libcudart's driver only when a kernel launches
    _C_cuda = importlib.import_module("pyquant._C_cuda")
except ImportError:
    _C_cuda = None


def num_threads() -> int:
    """Threads the CPU kernels use: pyquant.set_num_threads(), else PYQUANT_NUM_THREADS, else torch's."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Threads for pyquant's CPU kernels (its own pool, separate from torch's); n <= 0 restores the
    default (PYQUANT_NUM_THREADS, else torch.get_num_threads() at import). The token step may still
    run a token on 1 thread when that has been faster lately (a busy machine: see LlmStep.governor)."""
    _C.set_num_threads(int(n))


def _default_threads() -> None:
    import os

    if "PYQUANT_NUM_THREADS" not in os.environ and _C.get_num_threads() > 0:
        try:
            import torch

            _C.set_num_threads(torch.get_num_threads())
        except Exception:  # torch missing is fine: hardware concurrency then
            pass


_default_threads()
