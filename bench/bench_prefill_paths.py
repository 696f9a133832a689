"""Every CPU matmul path at prompt-sized m, side by side in one run: the numbers behind
`choose_path` (csrc/cpu/matmul.cpp), i.e. where the int8 GEMM takes over from the XQ8 GEMV and
where int8x2 hands over to the float GEMM.

    PYTHONPATH=. pytest bench/bench_prefill_paths.py --benchmark-only -s
    PYQUANT_BENCH_PATH_TYPES=Q4_0,Q4_K   PYQUANT_BENCH_PATH_THREADS=1 (default)

Weight 4096 x 4096 (hot: 9-16 MB, the crossovers are compute properties), x float32 [m, 4096].
Per (type, m, activations) one benchmark times the default path; the others (forced with
_C.set_gemm_min_m / _C.set_int8_gemm, restored after) are timed in the same test, best of 5,
and land in extra_info as ms with the ratio to the default: "gemv" (the XQ8 / 1..4-row GEMV),
"int8_gemm" and "float_gemm". Types without an int8 GEMM (Q8_0) have no int8_gemm column.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conftest import best_time, random_blocks
from pyquant._ext import _C

TYPES = os.environ.get("PYQUANT_BENCH_PATH_TYPES", "Q4_0,Q4_1,Q4_K,Q6_K,Q8_0,int4-g128").split(",")
THREADS = int(os.environ.get("PYQUANT_BENCH_PATH_THREADS", "1"))
MS = [4, 8, 16, 64, 128, 256, 512]
N = K = 4096
GGUF = {"Q4_0": (2, 32, 18, [0]), "Q4_1": (3, 32, 20, [0, 2]), "Q4_K": (12, 256, 144, [0, 2]),
        "Q6_K": (14, 256, 210, [208]), "Q8_0": (8, 32, 34, [0])}
INT8_GEMM = {"Q4_0", "Q4_1", "Q4_K", "Q6_K", "int4-g128"} | ({"Q8_0"} if _C.get_vnni() else set())   # VNNI: Q8_0 too


def _weight(name):
    rng = np.random.default_rng(0)
    if name in GGUF:
        qt, bs, ts, offs = GGUF[name]
        return _C.Weight(qt, random_blocks(rng, N, K // bs, ts, offs), N, K)
    gs = int(name.split("-g")[1])
    q = rng.integers(0, 256, (N, K // 2), dtype=np.uint8)
    return _C.Weight(1000, q, N, K, np.full((N, K // gs), 0.01, np.float32), np.full((N, K // gs), -0.08, np.float32),
                     gs)


_CACHE: dict = {}




@pytest.mark.parametrize("act", ["int8x2", "int8"])
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("name", TYPES)
def test_paths(benchmark, name, m, act):
    if _CACHE.get("name") != name:
        _CACHE.clear()
        _CACHE.update(name=name, w=_weight(name))
    w = _CACHE["w"]
    x = torch.randn(m, K)
    y = torch.empty(m, N)
    args = (x.data_ptr(), x.numel() * 4, "float32", m, y.data_ptr(), y.numel() * 4, 0, 0, THREADS)
    kind, qtype = ("int4", 0) if name.startswith("int4") else ("gguf", GGUF[name][0])
    before = _C.get_matmul_act()
    _C.set_matmul_act(act)
    rows = 2 * m if act == "int8x2" else m
    forced = {"gemv": (rows, True), "float_gemm": (1, False)}
    if name in INT8_GEMM:
        forced["int8_gemm"] = (1, True)
    try:
        path = _C.matmul_path(kind, qtype, m)
        benchmark.pedantic(lambda: _C.linear(w, *args), rounds=5, iterations=1, warmup_rounds=1)
        default = benchmark.stats.stats.min
        info = {"path": path.split(":")[0], "m": m, "act": act, "threads": THREADS,
                "default_ms": round(default * 1e3, 3), "GFLOPs": round(2 * m * N * K / default / 1e9, 1)}
        for label, (min_m, int8_gemm) in forced.items():
            _C.set_gemm_min_m(min_m)
            _C.set_int8_gemm(int8_gemm)
            try:
                s = best_time(lambda: _C.linear(w, *args), repeat=5, warmup=1)
            finally:
                _C.set_gemm_min_m(0)
                _C.set_int8_gemm(True)
            info[f"{label}_ms"] = round(s * 1e3, 3)
            info[f"{label}_x_default"] = round(s / default, 2)
        benchmark.extra_info.update(info)
        print(f"\n{name} m={m} {act}: default {info['path']} {info['default_ms']} ms | " +
              " | ".join(f"{k} {info[k + '_ms']} ms ({info[k + '_x_default']}x)" for k in forced))
    finally:
        _C.set_matmul_act(before)
