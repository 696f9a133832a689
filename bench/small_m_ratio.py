"""Quick side-by-side check of the issue-#3 small-M bars on a loaded machine (thread CPU time).

    PYTHONPATH=. python bench/small_m_ratio.py [--cold-mib 640] [--types Q4_0,Q4_K] [--ms 1,8]

Runs single-threaded (the caller's thread does the work, so time.thread_time() counts only this
kernel even when other processes share the cores) on 4096x14336 (N x K): per type and M the best
thread-CPU time over a few calls, hot (one weight copy, cache-resident) and cold (rotating through
--cold-mib of copies), the M=8/M=1 ratio, the weight GB/s at M=1 against a 1-thread DRAM read probe
and GFLOP/s at large M. The real benchmark is bench/bench_matmul.py (wall time, quiet machine).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pyquant._ext import _C

GGUF = {"Q4_0": (2, 32, 18, [0]), "Q8_0": (8, 32, 34, [0]), "Q4_K": (12, 256, 144, [0, 2]),
        "Q6_K": (14, 256, 210, [208])}


def weight(name, n, k, rng):
    if name in GGUF:
        _, bs, ts, offs = GGUF[name]
        b = rng.integers(0, 256, (n * (k // bs), ts), dtype=np.uint8)
        for off in offs:
            b[:, off:off + 2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
        return (b.reshape(n, -1),)
    return (rng.integers(0, 256, (n, k // 2), dtype=np.uint8), np.full((n, k // 128), 0.01, np.float32),
            np.full((n, k // 128), -0.08, np.float32))


def caller(name, n, k, m):
    x = torch.randn(m, k)
    y = torch.empty(m, n)
    xa = (x.data_ptr(), x.numel() * 4, "float32", m, y.data_ptr(), y.numel() * 4, 0, 0, 1)
    made = {}   # one _C.Weight per pool copy, made once

    def weight(w):
        if id(w) not in made:
            made[id(w)] = (_C.Weight(GGUF[name][0], w[0], n, k) if name in GGUF
                           else _C.Weight(1000, w[0], n, k, w[1], w[2], 128))
        return made[id(w)]

    return lambda w, keep=(x, y): _C.linear(weight(w), *xa)


def best_time(fn, pool, reps):
    best = float("inf")
    fn(pool[0])
    for i in range(reps):
        w = pool[i % len(pool)]
        t0 = time.thread_time()
        fn(w)
        best = min(best, time.thread_time() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=14336)
    ap.add_argument("--types", default="Q4_0,Q4_K,Q6_K,Q8_0,int4-g128")
    ap.add_argument("--ms", default="1,8")
    ap.add_argument("--cold-mib", type=int, default=640)
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--no-hot", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    ms = [int(v) for v in a.ms.split(",")]
    bw = _C.bandwidth_probe(1 << 29, 1, 3) if a.cold_mib else 0.0
    print(f"# {a.n}x{a.k}, 1 thread, thread CPU time (ms); DRAM probe 1 thread: {bw:.1f} GB/s (wall)")
    for name in a.types.split(","):
        w0 = weight(name, a.n, a.k, rng)
        nbytes = sum(v.nbytes for v in w0)
        pool = [w0] + [tuple(v.copy() for v in w0) for _ in range(max(1, (a.cold_mib << 20) // nbytes))] if a.cold_mib else [w0]
        res = {}
        for m in ms:
            fn = caller(name, a.n, a.k, m)
            hot = float("nan") if a.no_hot else best_time(fn, [w0], a.reps)
            cold = best_time(fn, pool, max(a.reps, len(pool))) if a.cold_mib and m <= 16 else float("nan")
            res[m] = (hot, cold)
            gf = 2 * m * a.n * a.k / 1e9
            print(f"{name:10s} m={m:<4d} hot {hot*1e3:7.3f} ms  cold {cold*1e3:7.3f} ms  "
                  f"cold {nbytes/cold/1e9:5.1f} GB/s  hot {gf/hot:6.1f} GFLOP/s", flush=True)
        if 1 in res and 8 in res:
            print(f"{name:10s} m8/m1: hot {res[8][0]/res[1][0]:.2f}  cold {res[8][1]/res[1][1]:.2f}", flush=True)
        del pool


if __name__ == "__main__":
    main()
