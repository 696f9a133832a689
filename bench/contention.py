"""Generation speed on a machine someone else is using: one busy process per core, pyquant at 1 and
at all threads (and llama.cpp's llama-bench the same way, alternately, when --llama-bin is given).

    python bench/contention.py smollm2 [--busy 2] [--rounds 2] [--llama-bin DIR]

Issue #9 measured 2 threads at 2.6-26 tok/s against 29-54 for 1 thread under such load: threads that
meet ~150 times per token wait for a partner the OS has descheduled. The token step now sleeps
after a short spin and runs a token on 1 thread when that has been faster lately (LlmStep's
governor); `PYQUANT_ADAPTIVE_THREADS=0` is the fixed-thread-count baseline, printed beside it.
The busy processes are this script's children and die with it (and after --max-seconds anyway).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

BUSY = "import time\nt = time.monotonic() + {s}\nwhile time.monotonic() < t: pass\n"


def pyquant_tg(model: str, threads: int, adaptive: bool) -> float:
    env = dict(os.environ, PYQUANT_ADAPTIVE_THREADS="1" if adaptive else "0")
    out = subprocess.run([sys.executable, "-m", "pyquant", "bench", model, "-p", "64", "-n", "32", "-t",
                          str(threads), "-r", "3", "--json"], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)["tg_tok_s"]


def llama_tg(bin_dir: str, gguf: str, threads: int) -> float:
    out = subprocess.run([os.path.join(bin_dir, "llama-bench"), "-m", gguf, "-p", "0", "-n", "32", "-t",
                          str(threads), "-r", "3", "-o", "json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["avg_ts"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="GGUF path or alias (smollm2)")
    ap.add_argument("--busy", type=int, default=os.cpu_count(), help="busy processes (default: one per core)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--llama-bin", help="directory with llama.cpp's llama-bench")
    ap.add_argument("--max-seconds", type=int, default=900, help="the busy processes stop after this")
    a = ap.parse_args(argv)
    from pyquant.hub import resolve

    gguf = str(resolve(a.model))
    busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(s=a.max_seconds)]) for _ in range(a.busy)]
    res: dict[str, list[float]] = {}
    try:
        for _ in range(a.rounds):
            for t in (1, a.threads):
                res.setdefault(f"pyquant -t {t}", []).append(pyquant_tg(gguf, t, True))
                if t > 1:
                    res.setdefault(f"pyquant -t {t} (fixed threads)", []).append(pyquant_tg(gguf, t, False))
                if a.llama_bin:
                    res.setdefault(f"llama.cpp -t {t}", []).append(llama_tg(a.llama_bin, gguf, t))
    finally:
        for p in busy:
            p.kill()
    print(f"tg32 tok/s with {a.busy} busy process(es) on {os.cpu_count()} cores, load avg "
          f"{os.getloadavg()[0]:.1f}; median of {a.rounds} rounds (each -r 3)")
    for name, v in res.items():
        print(f"  {name:32s} {statistics.median(v):7.1f}   {[round(x, 1) for x in v]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
