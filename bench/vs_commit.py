"""`pyquant bench` of this working tree against an earlier commit, alternating in one run (the
machines are shared and noisy: only ratios measured side by side mean anything).

    python bench/vs_commit.py REV [--model smollm2] [--threads 2,1] [--rounds 4] [-p 64 -n 32]

REV is checked out once into a cached worktree (~/.cache/pyquant/worktrees/<sha>) and built there
with tools/dev_build.sh (in place, CUDA off); the working tree must be built already
(tools/dev_build.sh). Each round runs `pyquant bench MODEL -r 3 --json` for REV then for the
tree, at each thread count, in fresh processes; the table gives each side's medians of pp and tg
and the ratio tree / REV, and the load average seen.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worktree(rev: str) -> Path:
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    cache = Path(os.environ.get("PYQUANT_CACHE") or Path.home() / ".cache" / "pyquant")
    path = cache / "worktrees" / sha[:12]
    if not (path / "pyquant").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), sha], check=True,
                       stdout=subprocess.DEVNULL)
    if not list((path / "pyquant").glob("_C*.so")):
        print(f"building {rev} ({sha[:12]}) in {path} ...", file=sys.stderr)
        subprocess.run(["bash", "tools/dev_build.sh"], cwd=path, check=True, stdout=subprocess.DEVNULL)
    return path


def bench(tree: Path, model: str, threads: int, p: int, n: int) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-P", "-m", "pyquant", "bench", model, "-p", str(p), "-n", str(n), "-r", "3",
                          "-t", str(threads), "--json"], capture_output=True, text=True, env=env, cwd="/", check=True)
    res = json.loads(out.stdout)
    return res["pp_tok_s"], res["tg_tok_s"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the commit to compare with (e.g. HEAD~3, a sha)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", default="2,1", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("-p", type=int, default=64, help="prompt tokens (pp)")
    ap.add_argument("-n", type=int, default=32, help="generated tokens (tg)")
    args = ap.parse_args(argv)
    if not list((ROOT / "pyquant").glob("_C*.so")):
        sys.exit("vs_commit: build the working tree first (tools/dev_build.sh)")
    sides = {args.rev: worktree(args.rev), "tree": ROOT}
    threads = [int(t) for t in args.threads.split(",")]
    got = {(s, t): ([], []) for s in sides for t in threads}
    loads = []
    for r in range(args.rounds):
        for t in threads:
            for side, path in sides.items():
                pp, tg = bench(path, args.model, t, args.p, args.n)
                got[(side, t)][0].append(pp)
                got[(side, t)][1].append(tg)
                loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{args.model}: pp{args.p} / tg{args.n} tok/s, medians of {args.rounds} alternating rounds "
          f"(each -r 3); load avg {min(loads):.1f}-{max(loads):.1f}")
    print(f"{'threads':>7}  {'side':<14} {'pp':>8} {'tg':>8}")
    for t in threads:
        med = {s: (statistics.median(got[(s, t)][0]), statistics.median(got[(s, t)][1])) for s in sides}
        for s in sides:
            print(f"{t:>7}  {s[:14]:<14} {med[s][0]:8.1f} {med[s][1]:8.1f}")
        base, tree = med[args.rev], med["tree"]
        print(f"{t:>7}  {'tree / rev':<14} {tree[0] / base[0]:7.2f}x {tree[1] / base[1]:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
