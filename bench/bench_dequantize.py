"""Dequantize throughput: a 4096x14336 tensor (a Llama-3-8B FFN matrix) per ggml type, pyquant's C++
kernel at 2 threads against gguf-py's numpy dequantizer and pyquant's torch reference.

    PYTHONPATH=. python -m pytest bench/bench_dequantize.py --benchmark-only -q
    PYQUANT_BENCH_TYPES=Q4_0,Q4_K ...   restricts the types.

extra_info per benchmark: in_GBps (packed bytes read / time), out_GBps (float32 bytes written /
time), gguf_s (gguf-py's time, one round: it takes seconds) and x_gguf (gguf_s / this mean time);
cpu_s / gguf_cpu_s / x_gguf_cpu: the same in CPU seconds (steadier on a loaded box).
Two pyquant rows per type: `alloc` (pyquant.dequantize returning a new tensor, page faults
included, as gguf-py pays too) and `into` (decoding into a preallocated tensor: the kernel alone).
The box is shared and noisy: compare ratios measured in one run.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

import pyquant
from pyquant.qtypes import info

ROWS, COLS = 4096, 14336
THREADS = 2
ALL_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
             "TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "F16", "BF16"]
TYPES = [t for t in os.environ.get("PYQUANT_BENCH_TYPES", ",".join(ALL_TYPES)).split(",") if t]
# fp16 scale fields (byte offsets) that get realistic values: random bits would make ~3% of them
# NaN/inf and many subnormal, which no real tensor has (and subnormal products slow every dequantizer).
F16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
              "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "TQ1_0": [52], "TQ2_0": [64]}


def packed_tensor(name: str) -> np.ndarray:
    """[ROWS, row_bytes] uint8 of random quants with realistic scales."""
    i = info(name)
    rng = np.random.default_rng(int(i.qtype))
    nb = ROWS * COLS // i.block_size
    if name in ("F16", "BF16"):
        w = rng.standard_normal(ROWS * COLS, dtype=np.float32) * 0.02
        bits = w.astype(np.float16).view(np.uint16) if name == "F16" else (w.view(np.uint32) >> 16).astype(np.uint16)
        return bits.view(np.uint8).reshape(ROWS, -1)
    raw = rng.integers(0, 256, size=(nb, i.type_size), dtype=np.uint8)
    for off in F16_FIELDS.get(name, []):
        scales = (rng.random(nb, dtype=np.float32) * 0.01 + 1e-4).astype(np.float16).view(np.uint8)
        raw[:, off:off + 2] = scales.reshape(nb, 2)
    if name == "MXFP4":
        raw[:, 0] = rng.integers(118, 124, nb)
    if name == "NVFP4":
        raw[:, 0:4] = rng.integers(0x20, 0x40, (nb, 4))
    return raw.reshape(ROWS, -1)


@pytest.fixture(autouse=True)
def two_threads():
    before = pyquant.get_num_threads()
    pyquant.set_num_threads(THREADS)
    yield
    pyquant.set_num_threads(before)


def _report(benchmark, name, data, gguf, fn=None):
    """Throughput and ratios. gguf = (wall s, CPU s) of gguf-py. With `fn`, one more call is timed
    in CPU seconds (all threads): on a shared box CPU time is the steadier measure of work, and
    x_gguf_cpu compares the CPU seconds each implementation burns."""
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        qtype=name, shape=[ROWS, COLS], threads=THREADS,
        in_GBps=round(data.nbytes / mean / 1e9, 2), out_GBps=round(ROWS * COLS * 4 / mean / 1e9, 2),
        gguf_s=round(gguf[0], 3), x_gguf=round(gguf[0] / mean, 1), gguf_cpu_s=round(gguf[1], 3))
    if fn is not None:
        c0 = time.process_time()
        fn()
        cpu = time.process_time() - c0
        benchmark.extra_info.update(cpu_s=round(cpu, 4), x_gguf_cpu=round(gguf[1] / max(cpu, 1e-6), 1))


@pytest.mark.parametrize("name", TYPES)
def test_pyquant_alloc(benchmark, name, tensors, gguf_seconds):
    data = tensors(name)
    g = gguf_seconds(name)
    benchmark.group = f"dequantize {name}"
    benchmark(pyquant.dequantize, data, name, (ROWS, COLS))
    _report(benchmark, name, data, g, lambda: pyquant.dequantize(data, name, (ROWS, COLS)))


@pytest.mark.parametrize("name", TYPES)
def test_pyquant_into(benchmark, name, tensors, gguf_seconds):
    data = tensors(name)
    g = gguf_seconds(name)
    out = torch.empty(ROWS, COLS)
    out.fill_(0)  # touch the pages once: this row measures the kernel, not the page faults
    benchmark.group = f"dequantize {name}"
    benchmark(pyquant.dequantize, data, name, (ROWS, COLS), out=out)
    _report(benchmark, name, data, g, lambda: pyquant.dequantize(data, name, (ROWS, COLS), out=out))


@pytest.mark.parametrize("name", TYPES)
def test_torch_reference(benchmark, name, tensors, gguf_seconds):
    data = tensors(name)
    g = gguf_seconds(name)
    torch_data = torch.from_numpy(data)
    prev = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        benchmark.group = f"dequantize {name}"
        benchmark.pedantic(pyquant.dequantize, args=(torch_data, name, (ROWS, COLS)),
                           kwargs={"backend": "reference"}, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(prev)
    _report(benchmark, name, data, g)


def test_write_roofline(benchmark):
    """Filling a preallocated float32 tensor of the same size at 2 threads: the output-write bound."""
    out = torch.empty(ROWS, COLS)
    out.fill_(0)
    prev = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        benchmark.group = "roofline"
        benchmark(out.fill_, 1.0)
    finally:
        torch.set_num_threads(prev)
    benchmark.extra_info.update(out_GBps=round(out.numel() * 4 / benchmark.stats.stats.mean / 1e9, 2))
