"""GPU benchmark of pyquant's CUDA and Triton matmul kernels (issue #5's device check).

GEMV / GEMM on a 4096 x 14336 weight (K = 4096 inputs, N = 14336 outputs: a Llama-3-8B FFN
up-projection) for Q4_K, Q4_0, Q8_0, int4-g128 and int4-g64 (AWQ) and an EXL2 4.0 bpw mix in its own
widths (Triton), at M = 1, 16 and 512, against torch's bf16 matmul and the device-to-device copy
bandwidth measured in the same run. Prints one table last.

Timing: every variant is captured in a CUDA graph that replays `reps` calls cycling over enough
weight copies to exceed the L2 several times (a GEMV re-reading one 33 MB weight would run from
the H200's 60 MB L2), timed with CUDA events; best of 5 replays. Also measures the GEMV vs
dequant+cuBLAS crossover in M for Q4_K.

    python bench/gpu_check.py              # on a CUDA machine (bench/gpu_check.sh builds + tests first)
    python bench/gpu_check.py --dry-run    # CPU: the same code and table with tiny shapes, the
                                           # reference backend and wall-clock timing
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, ".."))
sys.path.insert(0, _HERE)

import exl2_mixes  # noqa: E402
from pyquant.qtypes import QType  # noqa: E402

# byte offsets of the f16 scale fields and (block size, bytes per block) of the benchmarked types
_GGUF = {"Q4_K": ((0, 2), 256, 144), "Q4_0": ((0,), 32, 18), "Q8_0": ((0,), 32, 34)}
# int4-g128 / int4-g64: AWQ checkpoints after their load-time repack (group 128 and 64);
# exl2-4.0: an EXL2 Linear in its own widths (formats/exl2/native.py), exl2_mixes.MIXES' 4.0 bpw mix
# (4.5 bits read); the kernels see the act-order columns (the gather of x is the caller's, as for
# a Q4_0 single type)
FORMATS = ("Q4_K", "Q4_0", "Q8_0", "int4-g128", "int4-g64", "exl2-4.0")


@dataclass
class Row:
    fmt: str
    m: int
    impl: str
    us: float
    wbytes: int
    n: int
    k: int
    note: str = ""

    def gbs(self):
        return self.wbytes / (self.us * 1e-6) / 1e9

    def tflops(self):
        return 2.0 * self.m * self.n * self.k / (self.us * 1e-6) / 1e12


def make_weights(fmt, n, k, device, gen):
    """Random quants with small normal f16 scales (no NaN / inf), built on the device."""
    if fmt in exl2_mixes.MIXES:
        from pyquant.formats.exl2.native import block_offsets

        block_bits = exl2_mixes.widths(fmt, k)
        off = block_offsets(block_bits)
        qw = torch.randint(0, 256, (n, int(off[-1])), dtype=torch.uint8, device=device, generator=gen)
        d = torch.tensor([0.004], dtype=torch.float16).view(torch.uint8).tolist()
        qw[:, off[:-1].to(device)] = d[0]
        qw[:, off[:-1].to(device) + 1] = d[1]
        return {"qweight": qw, "block_bits": block_bits.to(device)}
    if fmt.startswith("int4-g"):
        g = int(fmt.split("-g")[1])
        qw = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device=device, generator=gen)
        scales = torch.rand(n, k // g, device=device, generator=gen) * 0.02 + 1e-3
        mins = -torch.rand(n, k // g, device=device, generator=gen) * 0.1
        return {"qweight": qw, "scales": scales, "mins": mins, "group_size": g}
    fields, qk, ts = _GGUF[fmt]
    w = torch.randint(0, 256, (n, k // qk, ts), dtype=torch.uint8, device=device, generator=gen)
    half = torch.full((n, k // qk), 0.004, dtype=torch.float16, device=device).view(torch.uint8)
    half = half.reshape(n, k // qk, 2)
    for off in fields:
        w[:, :, off:off + 2] = half
    return {"w": w.reshape(n, -1), "qtype": int(QType[fmt])}


def weight_bytes(wd):
    return sum(t.numel() * t.element_size() for t in wd.values() if isinstance(t, torch.Tensor))


def call(backend, wd, x, n, k, path=None):
    kw = {} if path is None else {"path": path}
    if "qtype" in wd:
        return backend.gguf_matmul(x, wd["w"], wd["qtype"], n, k, None, **kw)
    if "block_bits" in wd:
        return backend.exl2_matmul(x, wd["qweight"], wd["block_bits"], None, **kw)
    return backend.int4_matmul(x, wd["qweight"], wd["scales"], wd["mins"], wd["group_size"], None, **kw)


class Timer:
    """Per-call microseconds of fn(i) over `reps` calls (i cycles the weight copies)."""

    def __init__(self, device, dry):
        self.device, self.dry = device, dry

    def __call__(self, fn, reps):
        if self.dry:
            fn(0)
            t0 = time.perf_counter()
            for i in range(reps):
                fn(i)
            return (time.perf_counter() - t0) / reps * 1e6
        for i in range(3):  # warm-up: JIT / autotune / cuBLAS heuristics, outside the graph
            fn(i)
        torch.cuda.synchronize()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(s):
                fn(0)
            torch.cuda.current_stream().wait_stream(s)
            with torch.cuda.graph(graph):
                for i in range(reps):
                    fn(i)
            run = graph.replay
        except Exception as e:  # not capturable: eager timing (includes launch overhead)
            print(f"  (graph capture failed: {type(e).__name__}: {e}; timing eagerly)")
            torch.cuda.synchronize()

            def run():
                for i in range(reps):
                    fn(i)
        best = math.inf
        for _ in range(5):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            run()
            b.record()
            b.synchronize()
            best = min(best, a.elapsed_time(b) * 1e3 / reps)
        return best


def copy_bandwidth(device, dry, nbytes):
    a = torch.empty(nbytes, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    us = Timer(device, dry)(lambda i: b.copy_(a), 5 if not dry else 2)
    return 2 * nbytes / (us * 1e-6) / 1e9  # bytes read + written


def backends(dry):
    """(name, module, paths) to benchmark."""
    if dry:
        from pyquant.kernels.reference import matmul as ref

        class RefAdapter:  # same call signature as the CUDA module (path ignored)
            @staticmethod
            def gguf_matmul(x, w, qtype, n, k, bias=None, path=None):
                return ref.gguf_matmul(x, w, qtype, n, k, bias)

            @staticmethod
            def int4_matmul(x, qw, s, mn, g, bias=None, path=None):
                return ref.int4_matmul(x, qw, s, mn, g, bias)

            @staticmethod
            def exl2_matmul(x, qw, bits, bias=None, path=None):
                return ref.exl2_matmul(x, qw, bits, bias)

        return [("reference", RefAdapter, (None,))]
    out = []
    try:
        from pyquant.kernels.cuda import matmul as cm

        out.append(("cuda", cm, ("gemv", "dequant")))
    except ImportError as e:
        print(f"CUDA backend unavailable: {e}")
    try:
        from pyquant.kernels.triton import ops as tops

        class TritonAdapter:
            @staticmethod
            def gguf_matmul(x, w, qtype, n, k, bias=None, path=None):
                return tops.gguf_matmul(x, w, qtype, n, k, bias)

            @staticmethod
            def int4_matmul(x, qw, s, mn, g, bias=None, path=None):
                return tops.int4_matmul(x, qw, s, mn, g, bias)

            @staticmethod
            def exl2_matmul(x, qw, bits, bias=None, path=None):
                return tops.exl2_matmul(x, qw, bits, bias)

        out.append(("triton", TritonAdapter, (None,)))
    except ImportError as e:
        print(f"Triton backend unavailable: {e}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, reference backend")
    ap.add_argument("--n", type=int, default=14336)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--ms", default="1,16,512")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--budget-s", type=float, default=300, help="stop starting new measurements after this")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args(argv)
    dry = args.dry_run
    t_start = time.time()
    if dry:
        device, n, k, ms = "cpu", 64, 512, [1, 4, 16]
    else:
        if not torch.cuda.is_available():
            sys.exit("gpu_check: no CUDA device (use --dry-run on a CPU machine)")
        device, n, k, ms = "cuda", args.n, args.k, [int(v) for v in args.ms.split(",")]
        p = torch.cuda.get_device_properties(0)
        print(f"device: {p.name}, {p.multi_processor_count} SMs, L2 {getattr(p, 'L2_cache_size', 0) / 2**20:.0f} MiB, "
              f"torch {torch.__version__}")
    timer = Timer(device, dry)
    gen = torch.Generator(device=device).manual_seed(0)
    l2 = 0 if dry else getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20)

    bw = copy_bandwidth(device, dry, (1 << 20) if dry else (2 << 30))
    print(f"copy bandwidth (read + write): {bw:.0f} GB/s")

    rows: list[Row] = []
    dense_cache = {}
    for fmt in args.formats.split(","):
        if time.time() - t_start > args.budget_s:
            print(f"budget reached, skipping {fmt}")
            break
        w0 = make_weights(fmt, n, k, device, gen)
        wb = weight_bytes(w0)
        ncopy = 1 if dry else max(2, math.ceil(4 * l2 / wb))  # cycle > 4x L2 of weights
        ws = [w0] + [make_weights(fmt, n, k, device, gen) for _ in range(ncopy - 1)]
        for m in ms:
            x = torch.randn(m, k, device=device, generator=gen).to(torch.bfloat16 if not dry else torch.float32)
            reps = 20 if not dry else 2
            # dense baseline: x @ W_bf16.T with bf16 weights, also cycling copies (2 bytes / weight)
            if m not in dense_cache:
                nd = 1 if dry else max(2, math.ceil(4 * l2 / (2 * n * k)))
                wd = [torch.randn(n, k, device=device, generator=gen).to(x.dtype) for _ in range(nd)]
                us = timer(lambda i: x @ wd[i % nd].t(), reps)
                dense_cache[m] = us
                rows.append(Row("bf16" if not dry else "f32", m, "torch", us, 2 * n * k, n, k))
                del wd
            for name, be, paths in backends(dry):
                if "block_bits" in w0 and not hasattr(be, "exl2_matmul"):
                    continue   # the CUDA C++ backend reads EXL2 as its single type only
                for path in paths:
                    if path == "gemv" and m > 64:
                        continue  # CUDA-core FMAs: not a large-M kernel
                    label = name if path is None else f"{name}:{path}"
                    try:
                        us = timer(lambda i: call(be, ws[i % len(ws)], x, n, k, path), reps)
                    except Exception as e:
                        print(f"  {fmt} M={m} {label}: FAILED {type(e).__name__}: {e}")
                        continue
                    rows.append(Row(fmt, m, label, us, wb, n, k))
        # GEMV vs dequant+cuBLAS crossover for the headline format
        if fmt == "Q4_K" and not dry:
            cm = next((b for nm, b, _ in backends(False) if nm == "cuda"), None)
            if cm is not None:
                cross = None
                for m in (1, 2, 4, 8, 16, 24, 32, 48, 64):
                    x = torch.randn(m, k, device=device, generator=gen).to(torch.bfloat16)
                    g = timer(lambda i: call(cm, ws[i % len(ws)], x, n, k, "gemv"), 10)
                    d = timer(lambda i: call(cm, ws[i % len(ws)], x, n, k, "dequant"), 10)
                    print(f"  crossover scan Q4_K M={m}: gemv {g:.1f} us, dequant+cuBLAS {d:.1f} us")
                    if cross is None and d < g:
                        cross = m
                print(f"  Q4_K: dequant+cuBLAS beats the GEMV from M={cross} (PYQUANT_CUDA_GEMV_MAX_M default 16)")
        ws = w0 = None   # the copies go before the next format (del would confuse pyflakes: a loop)
        if not dry:
            torch.cuda.empty_cache()

    table = format_table(rows, bw, dense_cache)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return rows


def format_table(rows, bw, dense):
    head = f"{'format':<10} {'M':>4} {'kernel':<15} {'us':>9} {'W GB/s':>8} {'%copy':>6} {'TFLOP/s':>8} {'vs torch':>8}"
    lines = ["", f"pyquant GPU check: y[M,N] = x[M,K] @ W[N,K].T, N={rows[0].n if rows else 0} "
             f"K={rows[0].k if rows else 0}, x bf16; copy bandwidth {bw:.0f} GB/s (read+write)", head,
             "-" * len(head)]
    for r in rows:
        lines.append(f"{r.fmt:<10} {r.m:>4} {r.impl:<15} {r.us:>9.1f} {r.gbs():>8.0f} {100 * r.gbs() / bw:>5.0f}% "
                     f"{r.tflops():>8.1f} {dense[r.m] / r.us:>7.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
