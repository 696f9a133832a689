"""Splitting a model over processes on one 2-core host: SmolLM2 (Q4_1) generation and prompt
processing with `--tp 2` and `--split 0.5,0.5` at one thread per rank, against one process at 2
threads and at 1, run alternately in the same minutes; and the measured all-reduce latency that
decides where TP starts to pay off.

    PYTHONPATH=. python -m pytest bench/bench_parallel.py --benchmark-only -q -s
    PYQUANT_BENCH_TP_ROUNDS=5   rounds of the alternation (default 3)

extra_info: per configuration the median tg32 / pp64 tok/s and peak RSS (rank 0's with --tp) over
the rounds, the ratios against one process at 2 threads, and the latency model
(test_where_tp_pays_off).

On one host the ranks share the cores and the DRAM of the single process they are compared with,
so TP can only add the all-reduce cost here: it is for models that do not fit one host or one GPU,
and for hosts whose bandwidth adds up. The latency model says from which hidden size splitting a
layer over 2 hosts saves more DRAM time than its two all-reduces cost.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("PYQUANT_BENCH_TP_ROUNDS", "3"))


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(n: int, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-port",
            str(_port()), *args]


def _bench(model: str, threads: int, procs: int, split: str | None) -> dict:
    args = ["-m", "pyquant", "bench", model, "-t", str(threads), "-p", "64", "-n", "32", "-r", "3", "--json"]
    if procs == 1:
        cmd = [sys.executable, *args]
    else:   # procs -1: torchrun, one process, --tp 1 (the sharded load and the step's hooks alone)
        n = abs(procs)
        cmd = _torchrun(n, *args, *(["--split", split] if split else ["--tp", str(n)]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _latency() -> dict:
    out = subprocess.run(_torchrun(2, str(ROOT / "bench" / "parallel_latency.py")), capture_output=True,
                         text=True, env=_env(), timeout=600, check=True)
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


@pytest.fixture(scope="module")
def smollm2():
    from pyquant.hub import fetch

    return str(fetch("smollm2"))


def test_tp2_vs_one_process(benchmark, smollm2):
    """Alternating rounds: 1 process x 2 threads, 1 process x 1 thread, --tp 1 (one rank: the
    machinery without communication), --tp 2 and --split 0.5,0.5 at 1 thread a rank."""
    configs = {"1proc_2t": (2, 1, None), "1proc_1t": (1, 1, None), "tp1_1t": (1, -1, None),
               "tp2_1t": (1, 2, None), "split2_1t": (1, 2, "0.5,0.5")}
    runs = {k: [] for k in configs}

    def one_round():
        for name, (threads, procs, split) in configs.items():
            runs[name].append(_bench(smollm2, threads, procs, split))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    info = {"cpu": _cpu(), "load_avg": os.getloadavg()[0]}
    for name, rs in runs.items():
        for key in ("tg_tok_s", "pp_tok_s", "peak_rss_mib"):
            info[f"{name}_{key}"] = statistics.median(r[key] for r in rs)
    for key in ("tg_tok_s", "pp_tok_s"):
        for mode in ("tp1", "tp2", "split2"):
            info[f"{mode}_vs_1proc_2t_{key}"] = info[f"{mode}_1t_{key}"] / info[f"1proc_2t_{key}"]
    benchmark.extra_info.update(info)
    print(json.dumps(info, indent=1))


def test_where_tp_pays_off(benchmark):
    """All-reduce latency by vector size (gloo's all_reduce vs pyquant's exchange), and the model:
    a Llama-shaped layer of hidden size d holds ~12 d^2 weights (GQA attention 2.5 d^2, FFN of
    3.5 d: 10.5 d^2), 4.5 bits each = 6.75 d^2 bytes; a token step reads them once. Over 2 hosts
    of bandwidth B each, TP saves half of that read per layer and pays 2 all-reduces of d floats:
    it pays off when 6.75 d^2 / (2 B) > 2 lat(d)."""
    lat = benchmark.pedantic(_latency, rounds=1, iterations=1)
    from pyquant._ext import _C

    bw = _C.bandwidth_probe(256 << 20, 1, 3) * 1e9   # one rank's thread, bytes/s
    info = {"cpu": _cpu(), "read_GB_s_1thread": bw / 1e9}
    breakeven = None
    for d in sorted(lat):
        saved_us = 6.75 * d * d / (2 * bw) * 1e6
        cost_us = 2 * lat[d]["exchange_us"]
        info[f"d{d}"] = {**lat[d], "saved_read_us_per_layer": saved_us, "allreduce_us_per_layer": cost_us}
        if breakeven is None and saved_us > cost_us:
            breakeven = d
    info["tp2_pays_off_from_d"] = breakeven
    benchmark.extra_info.update(info)
    print(json.dumps(info, indent=1))


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
