"""I-quant dequantize throughput: a 4096x14336 tensor (a Llama-3-8B FFN matrix) per i-quant type,
pyquant's C++ kernel at 2 threads (AVX2 and forced-scalar) against gguf-py's numpy dequantizer.

    PYTHONPATH=. python -m pytest bench/bench_dequantize_iq.py --benchmark-only -q
    PYQUANT_BENCH_TYPES=IQ2_XXS,IQ4_XS ...   restricts the types.

extra_info: in_GBps (packed bytes read / time), out_GBps (float32 bytes written / time), gguf_s
(gguf-py's time, one round) and x_gguf (gguf_s / this mean time). Output goes into a preallocated,
pre-touched tensor, so the rows measure the kernel, not page faults. The box is shared and noisy:
compare ratios measured in one run. The torch reference is not timed here: at ~0.2 s per million
elements it is a specification, not a contender (tests/test_dequantize_iq.py checks it).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import pyquant
from pyquant._ext import _C
from pyquant.qtypes import info

ROWS, COLS = 4096, 14336
THREADS = 2
ALL_TYPES = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS"]
TYPES = [t for t in os.environ.get("PYQUANT_BENCH_TYPES", ",".join(ALL_TYPES)).split(",") if t]


def packed_tensor(name: str) -> np.ndarray:
    """[ROWS, row_bytes] uint8: random codes, realistic f16 super-scales (random scale bits would make
    some NaN/inf and many subnormal, which no real tensor has and which slow every dequantizer)."""
    i = info(name)
    rng = np.random.default_rng(int(i.qtype))
    nb = ROWS * COLS // i.block_size
    raw = rng.integers(0, 256, size=(nb, i.type_size), dtype=np.uint8)
    d = (rng.random(nb, dtype=np.float32) * 0.01 + 1e-4).astype(np.float16).view(np.uint16)
    if name == "IQ1_M":  # d lives in the top nibbles of the four u16 scale words (bytes 48..55)
        words = raw[:, 48:56].copy().view(np.uint16)
        for w in range(4):
            words[:, w] = (words[:, w] & 0x0FFF) | (((d >> (4 * w)) & 0xF) << 12)
        raw[:, 48:56] = words.view(np.uint8)
    else:
        raw[:, 0:2] = d.view(np.uint8).reshape(nb, 2)
    return raw.reshape(ROWS, -1)


@pytest.fixture(params=["avx2", "scalar"])
def isa(request):
    if request.param == "avx2" and not _C.cpu_has_avx2():
        pytest.skip("no AVX2")
    before = _C.active_isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(before)


@pytest.mark.parametrize("name", TYPES)
def test_dequantize_into(benchmark, name, isa, tensors, gguf_seconds):
    data = tensors(name)
    g = gguf_seconds(name)[0]
    out = torch.empty(ROWS, COLS)
    out.fill_(0)
    before = pyquant.get_num_threads()
    pyquant.set_num_threads(THREADS)
    try:
        benchmark.group = f"dequantize {name}"
        benchmark(pyquant.dequantize, data, name, (ROWS, COLS), out=out)
    finally:
        pyquant.set_num_threads(before)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        qtype=name, isa=isa, shape=[ROWS, COLS], threads=THREADS, gguf_s=round(g, 3), x_gguf=round(g / mean, 1),
        in_GBps=round(data.nbytes / mean / 1e9, 2), out_GBps=round(ROWS * COLS * 4 / mean / 1e9, 2))
