"""One rank of the all-reduce latency measurement (bench/bench_parallel.py starts it under
torch.distributed.run): a float32 vector of each size summed over the ranks, as the tensor-parallel
step does after every row-parallel linear. Two ways: gloo's own all_reduce, and pyquant's exchange
(TensorParallel.all_reduce on gloo: one round of isend/irecv, a sum in rank order). Rank 0 prints
one JSON line: {size: {"gloo_all_reduce_us": median, "exchange_us": median}}.
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torch.distributed as dist

from pyquant.parallel import TensorParallel

SIZES = (576, 2048, 4096, 8192, 16384)


def median_us(fn, n: int = 200, rounds: int = 5) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(rounds):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def main() -> None:
    tp = TensorParallel()
    out = {}
    for size in SIZES:
        t = torch.zeros(size)
        out[size] = {"gloo_all_reduce_us": median_us(lambda: dist.all_reduce(t)),
                     "exchange_us": median_us(lambda: tp.all_reduce(t))}
    if tp.rank == 0:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
