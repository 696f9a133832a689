"""Per-call cost of each way to run a quantized linear, on a tiny shape (M=1, N=8, K=256: the kernel
itself is ~0.5 us, so the rest is call overhead) and on a SmolLM2-135M projection (576x576, M=1).

    PYTHONPATH=. python -m pytest bench/bench_call_overhead.py --benchmark-only -q \\
        --benchmark-columns=min,median --benchmark-sort=name

Rows per (format, shape): `raw` (_C.linear on the QTensor's _C.Weight, arguments precomputed: the floor), `linear_into`
(pyquant.kernels.cpu.matmul.linear_into: the runner's path), `qmatmul` (torch.library op +
pyquant.dispatch, grad mode), `qmatmul_inference` (same under torch.inference_mode: no autograd
layer), `QuantLinear`, and torch's fp32 `F.linear` on the same shape. One thread, so the numbers
are Python/dispatcher overhead and not thread-pool wake-ups. The box is shared: compare rows of
one run.
"""
from __future__ import annotations

import pytest
import torch

import pyquant
from pyquant._ext import _C
from pyquant.kernels.cpu.matmul import linear_into
from pyquant.nn import QuantLinear
from pyquant.qtensor import QTensor

SHAPES = {"tiny": (8, 256), "smollm2_q": (576, 576)}
FORMATS = ["int8", "int4", "Q4_0", "Q8_0"]
WAYS = ["raw", "linear_into", "qmatmul", "qmatmul_inference", "QuantLinear", "F.linear"]


@pytest.fixture(autouse=True)
def one_thread():
    before_pq, before_torch = _C.get_num_threads(), torch.get_num_threads()
    _C.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    _C.set_num_threads(before_pq)
    torch.set_num_threads(before_torch)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_call_overhead(benchmark, shape, fmt, way):
    n, k = SHAPES[shape]
    if fmt == "int4" and k % 64:
        k -= k % 64
    w = torch.randn(n, k) * 0.05
    qt = QTensor.quantize(w, fmt, group_size=64)
    x, out = torch.randn(1, k), torch.empty(1, n)
    benchmark.group = f"{shape} {fmt}"
    benchmark.extra_info.update(n=n, k=k, fmt=fmt, path=qt.cpu_call is not None)
    if way == "raw":
        args = (qt.cpu_call, x.data_ptr(), x.nbytes, "float32", 1, out.data_ptr(), out.nbytes, 0, 0, 1)
        benchmark(_C.linear, *args)
    elif way == "linear_into":
        benchmark(linear_into, x, qt, out)
    elif way == "qmatmul":
        benchmark(pyquant.qmatmul, x, qt)
    elif way == "qmatmul_inference":
        with torch.inference_mode():
            benchmark(pyquant.qmatmul, x, qt)
    elif way == "QuantLinear":
        layer = QuantLinear(qt)
        benchmark(layer, x)
    else:
        benchmark(torch.nn.functional.linear, x, w)
