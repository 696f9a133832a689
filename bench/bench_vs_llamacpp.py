"""pyquant against llama.cpp on the same GGUF files, the same threads, in the same minutes (issue #12):
`llama-bench -p 64 -n 32 -r 3` and `pyquant bench -p 64 -n 32 -r 3` run alternately, several rounds,
medians and ratios reported with the load average seen and the CPU model.

    PYTHONPATH=. pytest bench/bench_vs_llamacpp.py --benchmark-only -s
    PYQUANT_BENCH_VS_ROUNDS=3 (default)   PYQUANT_BENCH_VS_TYPES=Q4_1,Q4_K_M,Q8_0   PYQUANT_BENCH_VS_THREADS=2,1
    PYQUANT_LLAMACPP_ISA=avx2: llama.cpp built for AVX2 only (a Zen 3's ISA; bench/llamacpp.py)

Files: SmolLM2-135M-Instruct's Q4_1 GGUF as shipped, and the same model requantized by
`pyquant quantize` to Q4_K_M and Q8_0 (byte-identical to llama-quantize's output, cached).
`stack8b-<type>` (e.g. PYQUANT_BENCH_VS_TYPES=stack8b-Q4_0,stack8b-Q4_K,stack8b-Q8_0): a synthetic
Llama-3-8B-shaped stack (d 4096, FFN 14336, 32 heads / 8 KV heads, 2 layers, a 256-token byte vocab,
random weights quantized by pyquant, cached), where a token streams 0.25-0.46 GB of weights: the
bandwidth-bound case SmolLM2's small matrices are not. Its lines add weight bytes per token / time
per token as a fraction of the read probe pyquant measures in the same process (`bench --roofline`).
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
from llamacpp import cache_dir, find_llama_bench, llamacpp_isa  # noqa: E402

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


def _stack8b(qtype: str) -> Path:
    out = cache_dir().parent / "bench" / f"stack8b-{qtype}.gguf"
    if not out.exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from test_model import _write_tiny_model

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        _write_tiny_model(tmp, "llama", biases=False, n_layers=2, d=4096, H=32, Hkv=8, ff=14336, qtype=qtype)
        tmp.rename(out)
    return out


def _model(kind: str) -> Path:
    from pyquant.hub import fetch

    if kind.startswith("stack8b-"):
        return _stack8b(kind.split("-", 1)[1])

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
                          "-n", "32", "-r", "3", "--json", "--roofline"], check=True, capture_output=True, text=True, env=_env(),
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
    info = {"cpu": _cpu(), "llama_isa": llamacpp_isa(), "file": model.name, "threads": threads, "rounds": ROUNDS,
            "load_avg": [round(x, 2) for x in loads]}
    for who, rs in runs.items():
        for key in ("pp_tok_s", "tg_tok_s"):
            vals = [r[key] for r in rs]
            info[f"{who}_{key}"] = statistics.median(vals)
            info[f"{who}_{key}_range"] = [round(min(vals), 1), round(max(vals), 1)]
    for key in ("pp_tok_s", "tg_tok_s"):
        info[f"ratio_{key}"] = info[f"pyquant_{key}"] / info[f"llama_{key}"]
    # weight bytes per token / time per token against the read probe of pyquant's same runs
    wbytes = runs["pyquant"][0]["weight_bytes_per_token"]
    info["probe_GB_s"] = statistics.median(r["roofline_GB_s"] for r in runs["pyquant"])
    for who in runs:
        info[f"{who}_tg_frac_probe"] = wbytes * info[f"{who}_tg_tok_s"] / 1e9 / info["probe_GB_s"]
    benchmark.extra_info.update(info)
    print(f"\n{kind} t={threads} [{info['cpu']}, llama.cpp {info['llama_isa']}, load {info['load_avg']}]: "
          f"pp64 llama.cpp {info['llama_pp_tok_s']:.0f} pyquant {info['pyquant_pp_tok_s']:.0f} "
          f"({info['ratio_pp_tok_s']:.2f}x) | tg32 llama.cpp {info['llama_tg_tok_s']:.0f} "
          f"pyquant {info['pyquant_tg_tok_s']:.0f} ({info['ratio_tg_tok_s']:.2f}x) | tg weight bytes/s vs the "
          f"{info['probe_GB_s']:.1f} GB/s probe: llama.cpp {info['llama_tg_frac_probe']:.0%} "
          f"pyquant {info['pyquant_tg_frac_probe']:.0%}")
