"""Table and roofline plot from a bench_matmul.py pytest-benchmark JSON.

    python bench/report.py bench/out/matmul.json [--png docs/roofline.png] [--threads 2]

Prints one row per (shape, M, threads): time (best of the rotating runs), weight GB/s, share of
the DRAM roofline measured in the same run, GFLOP/s, and the speed-up over torch's int4 kernel;
then the issue's bars. The PNG is a roofline: GFLOP/s against FLOP per weight byte, with the
measured DRAM bandwidth as the slanted roof (matplotlib: pip install matplotlib).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def load(path):
    data = json.loads(Path(path).read_text())
    rows = []
    for b in data["benchmarks"]:
        e = b.get("extra_info", {})
        if "kernel" not in e or "n" not in e:
            continue
        rows.append({**e, "sec": b["stats"]["min"]})
    return data, rows


def table(rows):
    torch_int4 = {(r["n"], r["k"], r["m"], r["threads"]): r["sec"] for r in rows
                  if r["kernel"].startswith("torch-int4")}
    by = defaultdict(list)
    for r in rows:
        by[(r["n"], r["k"], r["m"], r["threads"])].append(r)
    lines = [f"{'N x K':>12} {'M':>4} {'thr':>3} {'kernel':<22} {'ms':>9} {'GB/s':>7} {'%roof':>6} "
             f"{'GFLOP/s':>8} {'x torch-int4':>12}"]
    for key in sorted(by):
        n, k, m, t = key
        for r in sorted(by[key], key=lambda r: r["sec"]):
            ti = torch_int4.get(key)
            ratio = f"{ti / r['sec']:.2f}" if ti else "-"
            lines.append(f"{n:>6}x{k:<5} {m:>4} {t:>3} {r['kernel']:<22} {r['sec'] * 1e3:>9.3f} {r['GBps']:>7.1f} "
                         f"{100 * r['frac_roofline']:>5.0f}% {r['GFLOPs']:>8.1f} {ratio:>12}")
    return "\n".join(lines)


def bars(rows):
    """The issue's bars, evaluated on this run."""
    get = {(r["kernel"], r["n"], r["k"], r["m"], r["threads"]): r for r in rows}
    out = ["", "Bars (M=1, N=4096, K=14336, 2 threads, cold):"]
    t4 = get.get(("torch-int4-g128-bf16", 4096, 14336, 1, 2))
    # *-x8: the row-interleaved layout the runner packs Q4_0 / Q4_1 / Q4_K / Q8_0 / int4 into
    for name in ["Q4_0", "Q4_0-x8", "Q4_K", "Q4_K-x8", "Q6_K", "Q6_K-x8", "Q8_0", "Q8_0-x8", "int4-g128", "int4-g128-x8"]:
        r = get.get((name, 4096, 14336, 1, 2))
        if not r:
            out.append(f"  {name:<10} not measured")
            continue
        vs = f"{t4['sec'] / r['sec']:.2f}x torch int4 (bar 3x)" if t4 else "torch int4 not measured"
        out.append(f"  {name:<10} {100 * r['frac_roofline']:5.1f}% of {r['roofline_GBps']:.1f} GB/s (bar 80%), {vs}")
        r8 = get.get((name, 4096, 14336, 8, 2))
        if r8:
            out.append(f"  {'':<10} M=8 / M=1 time: {r8['sec'] / r['sec']:.2f} (bar <= 2)")
    for name in ["Q4_0", "Q4_K", "Q6_K", "Q8_0", "int4-g128", "int8"]:
        r = get.get((name, 4096, 14336, 512, 2))
        if r:
            out.append(f"  M=512 {name:<10} {r['GFLOPs']:.1f} GFLOP/s at 2 threads (bar 120)")
    return "\n".join(out)


def plot(rows, png, threads):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install matplotlib): no plot", file=sys.stderr)
        return
    sel = [r for r in rows if r["threads"] == threads]
    if not sel:
        return
    bw = max(r["roofline_GBps"] for r in sel)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    kernels = sorted({r["kernel"] for r in sel})
    for i, name in enumerate(kernels):
        pts = sorted(((2 * r["m"] * r["n"] * r["k"] / r["weight_bytes"], r["GFLOPs"]) for r in sel
                      if r["kernel"] == name))
        marker = "x" if name.startswith("torch") else "o"
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker, label=name, alpha=0.8, color=f"C{i % 10}")
    xs = [min(2 * r["m"] * r["n"] * r["k"] / r["weight_bytes"] for r in sel) / 2,
          max(2 * r["m"] * r["n"] * r["k"] / r["weight_bytes"] for r in sel) * 2]
    ax.loglog(xs, [bw * x for x in xs], "k--", lw=1, label=f"DRAM {bw:.1f} GB/s (measured)")
    ax.set_xlabel("FLOP per weight byte (2*M*N*K / weight bytes)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"pyquant CPU matmul vs roofline, {threads} thread(s), Llama-3 shapes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"saved {png}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("--png", default="docs/roofline.png")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    data, rows = load(a.json)
    m = data.get("machine_info", {})
    print(f"machine: {m.get('cpu', {}).get('brand_raw', '?')}, {m.get('cpu', {}).get('count', '?')} cpus")
    print(table(rows))
    print(bars(rows))
    plot(rows, a.png, a.threads)


if __name__ == "__main__":
    main()
