"""pyquant against llama.cpp on the same GGUF files, the same threads, in the same minutes (issue #12):
`llama-bench -p 64 -n 32 -r 3` and `pyquant bench -p 64 -n 32 -r 3` run alternately, several rounds,
medians and ratios reported with the load average seen and the CPU model.

    PYTHONPATH=. pytest bench/bench_vs_llamacpp.py --benchmark-only -s
    PYQUANT_BENCH_VS_ROUNDS=3 (default)   PYQUANT_BENCH_VS_TYPES=Q4_1,Q4_K_M,Q8_0   PYQUANT_BENCH_VS_THREADS=2,1

Files: SmolLM2-135M-Instruct's Q4_1 GGUF as shipped, and the same model requantized by
`pyquant quantize` to Q4_K_M and Q8_0 (byte-identical to llama-quantize's output, cached).
llama-bench is built once from the llama-cpp-python 0.3.36 sdist (bench/llamacpp.py); where it
cannot be built the tests skip with the reason. The README's runner table comes from this file.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamacpp import cache_dir, find_llama_bench  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("PYQUANT_BENCH_VS_ROUNDS", "3"))
TYPES = os.environ.get("PYQUANT_BENCH_VS_TYPES", "Q4_1,Q4_K_M,Q8_0").split(",")
THREADS = [int(t) for t in os.environ.get("PYQUANT_BENCH_VS_THREADS", "2,1").split(",")]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="module")
def llama_bench():
    exe, why = find_llama_bench()
    if exe is None:
        pytest.skip(why)
    return exe


def _model(kind: str) -> Path:
    from pyquant.hub import fetch

    original = Path(fetch("smollm2"))
    if kind == "Q4_1":
        return original
    out = cache_dir().parent / "bench" / f"smollm2-{kind}.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pyquant", "quantize", str(original), str(out), kind],
                       check=True, capture_output=True, env=_env(), timeout=1200)
    return out


def _llama(exe: Path, model: Path, threads: int) -> dict:
    out = subprocess.run([str(exe), "-m", str(model), "-p", "64", "-n", "32", "-r", "3", "-t", str(threads),
                          "-o", "json"], check=True, capture_output=True, text=True, timeout=900)
    res = {}
    for row in json.loads(out.stdout):
        key = "pp_tok_s" if row.get("n_prompt") and not row.get("n_gen") else "tg_tok_s"
        res[key] = float(row["avg_ts"])
    return res


def _ours(model: Path, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "pyquant", "bench", str(model), "-t", str(threads), "-p", "64",
                          "-n", "32", "-r", "3", "--json"], check=True, capture_output=True, text=True, env=_env(),
                         timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("kind", TYPES)
def test_side_by_side(benchmark, llama_bench, kind, threads):
    model = _model(kind)
    runs = {"llama": [], "pyquant": []}
    loads = []

    def one_round():
        loads.append(os.getloadavg()[0])
        runs["llama"].append(_llama(llama_bench, model, threads))
        runs["pyquant"].append(_ours(model, threads))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    info = {"cpu": _cpu(), "file": model.name, "threads": threads, "rounds": ROUNDS,
            "load_avg": [round(x, 2) for x in loads]}
    for who, rs in runs.items():
        for key in ("pp_tok_s", "tg_tok_s"):
            vals = [r[key] for r in rs]
            info[f"{who}_{key}"] = statistics.median(vals)
            info[f"{who}_{key}_range"] = [round(min(vals), 1), round(max(vals), 1)]
    for key in ("pp_tok_s", "tg_tok_s"):
        info[f"ratio_{key}"] = info[f"pyquant_{key}"] / info[f"llama_{key}"]
    benchmark.extra_info.update(info)
    print(f"\n{kind} t={threads} [{info['cpu']}, load {info['load_avg']}]: "
          f"pp64 llama.cpp {info['llama_pp_tok_s']:.0f} pyquant {info['pyquant_pp_tok_s']:.0f} "
          f"({info['ratio_pp_tok_s']:.2f}x) | tg32 llama.cpp {info['llama_tg_tok_s']:.0f} "
          f"pyquant {info['pyquant_tg_tok_s']:.0f} ({info['ratio_tg_tok_s']:.2f}x)")
