"""Quantize throughput (MB/s of float32 input) of pyquant.quantize vs gguf-py's numpy quantizer
(legacy types; gguf-py has no k-quant/i-quant quantizer) and vs llama.cpp's C reference (the
test oracle, single-threaded, when it can be built).

    PYTHONPATH=. python bench/bench_quantize.py [--rows 4096 --cols 4096 --threads 2]
    PYTHONPATH=. python -m pytest bench/bench_quantize.py --benchmark-only   (pytest-benchmark)
"""
from __future__ import annotations

import argparse
import os
import sys

import pytest
import torch

import pyquant
from pyquant.qtypes import QType, row_bytes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import best_time  # noqa: E402

TYPES = ["Q8_0", "Q4_0", "Q5_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]


def measure(rows=4096, cols=4096, threads=2, types=TYPES, repeat=3):
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0))
    x = w.numpy()
    mb = w.numel() * 4 / 1e6
    try:
        import gguf.quants as gq
        from gguf import GGMLQuantizationType
    except ImportError:
        gq = None
    try:
        from tests.oracle.ggml_oracle import load

        oracle = load()
    except Exception:
        oracle = None
    print(f"float32 [{rows}, {cols}] = {mb:.0f} MB; pyquant threads={threads}; MB/s (best of {repeat})")
    print(f"{'type':8s} {'pyquant':>10s} {'llama.cpp C 1t':>15s} {'gguf-py numpy':>14s} {'vs gguf-py':>10s}")
    for name in types:
        qt = QType[name]
        ours = mb / best_time(lambda: pyquant.quantize(w, qt, nthreads=threads), repeat)
        ref = mb / best_time(lambda: oracle.quantize(int(qt), x, row_bytes(qt, cols)), 1) if oracle else float("nan")
        npy = float("nan")
        if gq is not None and qt in (QType.Q4_0, QType.Q4_1, QType.Q5_0, QType.Q5_1, QType.Q8_0):
            npy = mb / best_time(lambda: gq.quantize(x, GGMLQuantizationType(int(qt))), 1)
        ratio = f"{ours / npy:9.1f}x" if npy == npy else f"{'-':>10s}"
        print(f"{name:8s} {ours:10.1f} {ref:15.1f} {npy:14.1f} {ratio}")


@pytest.mark.parametrize("name", TYPES)
def test_bench_quantize(benchmark, name):
    w = torch.randn(1024, 4096)
    benchmark(lambda: pyquant.quantize(w, name, nthreads=2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    measure(a.rows, a.cols, a.threads, repeat=a.repeat)
