"""The thread pool under stress (issue #15): parallel regions of different thread counts back to
back, from 1 to 64 threads, every result checked, a watchdog on the whole run.

Before the per-worker mailboxes (csrc/cpu/threadpool.cpp), 4 threads alternating a 2-row and a
3-row region segfaulted within seconds, 8 threads every time, and random thread counts returned
wrong numbers: a worker that sat one job out read the next job's fields. Each scenario runs in a
child process so a crash or a hang fails the test instead of killing the suite; the child's own
time budget is PYQUANT_STRESS_S seconds per thread count (default 1.5; e.g. 60 for a soak run).
"""
from __future__ import annotations

import os
import subprocess

import pytest
import torch
from child_process import child_env, child_python

CHILD = r"""
import os, random, sys, time
import torch, pyquant
from pyquant._ext import _C

budget = float(os.environ.get("PYQUANT_STRESS_S", "1.5"))
torch.manual_seed(0)
small = pyquant.QTensor.quantize(torch.randn(64, 256), "Q4_K")      # few rows: regions of 1-2 threads
big = pyquant.QTensor.quantize(torch.randn(2000, 256), "Q4_K")      # many rows: every thread
x = torch.randn(3, 256)
w8 = torch.randn(300, 512)
_C.set_num_threads(1)
ref_small, ref_big = pyquant.qmatmul(x, small), pyquant.qmatmul(x, big)
ref_q = pyquant.quantize(w8, "Q8_0")
ref_d = pyquant.dequantize(ref_q, "Q8_0", tuple(w8.shape))
rng = random.Random(int(sys.argv[1]))
for n in [int(v) for v in sys.argv[2].split(",")]:
    t_end = time.monotonic() + budget
    calls = 0
    while time.monotonic() < t_end:
        nt = n if n > 0 else rng.choice([1, 2, 3, 4, 5, 8, 13, 64])
        _C.set_num_threads(nt)
        for _ in range(20):
            a, b = pyquant.qmatmul(x, small), pyquant.qmatmul(x, big)
            assert torch.equal(a, ref_small) and torch.equal(b, ref_big), ("matmul", nt)
            q = pyquant.quantize(w8, "Q8_0")
            assert torch.equal(q, ref_q), ("quantize", nt)
            assert torch.equal(pyquant.dequantize(q, "Q8_0", tuple(w8.shape)), ref_d), ("dequantize", nt)
            calls += 4
    print(f"threads={n or 'random'}: {calls} checked calls")
"""


@pytest.mark.parametrize("counts", ["1,2,3,4", "8,64", "0"], ids=["1-4", "8-64", "random"])
def test_pool_regions_of_changing_size(counts):
    budget = float(os.environ.get("PYQUANT_STRESS_S", "1.5"))
    n = len(counts.split(","))
    watchdog = 60 + 4 * budget * n
    try:
        r = subprocess.run(child_python("-c", CHILD, "7", counts), env=child_env(), capture_output=True,
                           text=True, timeout=watchdog)
    except subprocess.TimeoutExpired:
        pytest.fail(f"thread pool hung: no result within {watchdog:.0f} s (threads {counts})")
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    assert r.stdout.count("checked calls") == n, r.stdout


FORK_CHILD = r"""
import multiprocessing as mp, torch, pyquant
pyquant.set_num_threads(2)
w = pyquant.QTensor.quantize(torch.randn(512, 256), "Q4_K")
x = torch.randn(3, 256)
ref = pyquant.qmatmul(x, w)                 # the parent's pool now has a worker thread

def child(_):
    return bool(torch.equal(pyquant.qmatmul(x, w), ref))   # the child's first threaded kernel

with mp.get_context("fork").Pool(2) as pool:
    print("child results", pool.map(child, range(4), chunksize=1))
"""


def test_pool_after_fork():
    """A fork()ed child (multiprocessing's default start method on Linux) runs threaded kernels:
    it gets a fresh pool instead of waiting forever for the parent's workers."""
    try:
        r = subprocess.run(child_python("-c", FORK_CHILD), env=child_env(), capture_output=True, text=True,
                           timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a forked child's threaded kernel hung")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "child results [True, True, True, True]" in r.stdout, r.stdout


@pytest.mark.parametrize("fmt", ["Q4_0", "Q4_K", "Q6_K", "Q8_0", "IQ4_XS", "int4", "int8", "F16"])
def test_matmul_bit_identical_across_thread_counts(fmt):
    """Each output is computed whole by one thread (rows are split, never the K sum), so 1, 2 and 3
    threads give the same bits at every M (GEMV, the int8x2 pair kernel and the GEMM path)."""
    import pyquant
    from pyquant.qtensor import QTensor

    g = torch.Generator().manual_seed(7)
    qt = QTensor.quantize(torch.randn(200, 512, generator=g), fmt, group_size=64)
    before = pyquant.get_num_threads()
    try:
        for m in (1, 3, 8, 100):
            x = torch.randn(m, 512, generator=g)
            outs = []
            for t in (1, 2, 3):
                pyquant.set_num_threads(t)
                outs.append(pyquant.qmatmul(x, qt))
            assert all(torch.equal(outs[0], o) for o in outs[1:]), (fmt, m)
    finally:
        pyquant.set_num_threads(before)


def test_model_bit_identical_across_thread_counts(smollm2_path):
    """The prefill and every C++ token step give the same logits at 1 and 2 threads (the step's
    governor switches between them at run time, so generation must not depend on it)."""
    import pyquant

    ids = [1, 504, 3575, 282, 4649, 314, 7, 8]
    before = pyquant.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            pyquant.set_num_threads(t)
            m = pyquant.load(smollm2_path, max_seq_len=32)
            outs.append((m.forward(ids, 0, all_logits=True).clone(),
                         torch.stack([m.step(tok, p).clone() for p, tok in enumerate(ids)])))
    finally:
        pyquant.set_num_threads(before)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
