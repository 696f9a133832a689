"""pyquant: fast kernels for quantized LLM weights (GGUF, AWQ, EXL2) on CPU, CUDA and Triton.

Data flow: file -> format reader (pyquant.formats) -> QTensor (packed bytes + format) ->
kernels (pyquant.kernels: reference / cpu / cuda / triton, chosen by pyquant.dispatch) ->
QuantLinear (pyquant.nn) -> model (pyquant.models) -> generate / CLI.

Public names are imported lazily so `import pyquant` stays fast (no torch import until used).
"""
from __future__ import annotations

import importlib

from .errors import FormatError, GGUFError, KernelError, PyquantError, UnsupportedQTypeError
from .qtypes import QType, qtype

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "dequantize": "pyquant.decode",
    "quantize": "pyquant.quantization",
    "GGUFReader": "pyquant.formats.gguf",
    "GGUFWriter": "pyquant.formats.gguf",
    "QTensor": "pyquant.qtensor",
    "qmatmul": "pyquant.ops",
    "QuantLinear": "pyquant.nn",
    "quantize_model": "pyquant.nn",
    "load": "pyquant.models",
    "get_num_threads": "pyquant._ext",
    "set_num_threads": "pyquant._ext",
}


# submodules reachable as attributes without an explicit import (pyquant.hub.fetch(...))
_SUBMODULES = {"hub", "formats", "kernels", "models", "runtime", "dispatch", "ops", "nn", "qtypes"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"pyquant.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyquant' has no attribute {name!r}")
    attr = "num_threads" if name == "get_num_threads" else name
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__all__ = [
    "PyquantError", "FormatError", "GGUFError", "KernelError", "UnsupportedQTypeError",
    "QType", "qtype", *_LAZY,
]
