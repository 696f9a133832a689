"""Shared benchmark fixtures: the DRAM roofline measured in the same run, thread control, and
"cold" weight pools (M <= 16 rotates through more than the L3 so every call streams from DRAM).

Environment:
  PYQUANT_BENCH_COLD_MIB   MiB of weight copies to rotate through for cold runs (default: the larger
                           of 288 MiB, 9x the 32 MiB L3 of the reference machine, and 2x this L3)
  PYQUANT_BENCH_SECONDS    target time per benchmark (default 0.25 s; rounds are derived from it)
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from pyquant._ext import _C

def _l3_bytes() -> int:
    """Last-level cache size from sysfs (0 if unknown)."""
    try:
        text = open("/sys/devices/system/cpu/cpu0/cache/index3/size").read().strip().upper()
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        return int(text.rstrip("KMG")) * mult
    except (OSError, ValueError):
        return 0


# At least 288 MiB (9x the 32 MiB L3 of the reference machine) and 2x this machine's L3.
COLD_BYTES = (int(os.environ["PYQUANT_BENCH_COLD_MIB"]) << 20 if "PYQUANT_BENCH_COLD_MIB" in os.environ
              else max(288 << 20, 2 * _l3_bytes()))
TARGET_S = float(os.environ.get("PYQUANT_BENCH_SECONDS", "0.25"))


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: the small subset (4096x14336, M in {1, 8, 512}, 2 threads)")
    config.addinivalue_line("markers", "anchor: torch reference kernels on the same shapes")


_ROOFLINE: dict[int, float] = {}


@pytest.fixture(scope="session")
def roofline():
    """roofline(nthreads) -> DRAM read GB/s (AVX2 sweep over 1 GiB, best of 5), cached per run."""

    def get(nthreads: int) -> float:
        if nthreads not in _ROOFLINE:
            _ROOFLINE[nthreads] = _C.bandwidth_probe(1 << 30, nthreads, 5)
        return _ROOFLINE[nthreads]

    return get


@pytest.fixture
def threads():
    """threads(n): run pyquant and torch with n threads for this test."""
    before_pq, before_torch = _C.get_num_threads(), torch.get_num_threads()

    def set_(n: int):
        _C.set_num_threads(n)
        torch.set_num_threads(n)

    yield set_
    _C.set_num_threads(before_pq)
    torch.set_num_threads(before_torch)


def n_copies(nbytes: int, cold: bool) -> int:
    """How many copies of a weight to rotate through so the working set exceeds COLD_BYTES."""
    return max(2, -(-COLD_BYTES // max(nbytes, 1)) + 1) if cold else 1


_POOL: dict = {}


def cached_pool(key, build, nbytes_of_one, cold: bool):
    """Weight copies for `key` (kernel, shape), built once and reused across M / threads (only the
    last key is kept, so memory stays at one pool). Hot runs use the first copy only."""
    if _POOL.get("key") != key:
        _POOL.clear()
        first = build()
        _POOL.update(key=key, items=[first])
    items = _POOL["items"]
    if cold:
        want = n_copies(nbytes_of_one, True)
        while len(items) < want:
            items.append(_clone(items[0]))
        return items
    return items[:1]


def _clone(item):
    if isinstance(item, tuple):
        return tuple(_clone(v) for v in item)
    return item.clone() if isinstance(item, torch.Tensor) else item.copy()


def run_rotating(benchmark, fn, pool, extra):
    """Benchmark fn(item) rotating through `pool`; rounds sized to ~TARGET_S. Returns mean seconds."""
    state = {"i": 0}

    def setup():
        state["i"] = (state["i"] + 1) % len(pool)
        return (pool[state["i"]],), {}

    t0 = time.perf_counter()
    fn(pool[0])
    est = max(time.perf_counter() - t0, 1e-6)
    rounds = int(min(50, max(3, TARGET_S / est)))
    benchmark.extra_info.update(extra)
    benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=1, iterations=1)
    return benchmark.stats.stats.min


def best_time(fn, repeat: int = 3, warmup: int = 0) -> float:
    """Best wall time of `repeat` calls of fn() after `warmup` untimed ones (seconds)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def random_blocks(rng, rows: int, nblocks: int, type_size: int, fp16_offsets) -> np.ndarray:
    """Random block bytes with sane fp16 scales: every bit pattern of the quants, finite results."""
    b = rng.integers(0, 256, (rows * nblocks, type_size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    for off in fp16_offsets:
        b[:, off:off + 2] = scale
    return b.reshape(rows, nblocks * type_size)



@pytest.fixture(scope="module")
def tensors(request):
    """get(name) -> the test module's packed_tensor(name), cached, only the latest kept (each is
    100-250 MB): the dequantize benches' weights."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache.clear()
            cache[name] = request.module.packed_tensor(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def gguf_seconds(tensors):
    """get(name) -> (wall s, CPU s) of gguf-py's dequantize of tensors(name), measured once (a
    single round: it takes seconds). Skips the test when the gguf package is missing."""
    import warnings

    gguf_quants = pytest.importorskip("gguf.quants")
    from gguf.constants import GGMLQuantizationType

    times: dict[str, tuple[float, float]] = {}

    def get(name):
        if name not in times:
            data = tensors(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                t0, c0 = time.perf_counter(), time.process_time()
                gguf_quants.dequantize(data, GGMLQuantizationType[name])
                times[name] = (time.perf_counter() - t0, time.process_time() - c0)
        return times[name]

    return get
