"""CPU fused dequant-matmul vs the DRAM roofline and torch's CPU kernels, on Llama-3 shapes.

    # full matrix (~10 min on a quiet 2-core machine), JSON for bench/report.py:
    pytest bench/bench_matmul.py --benchmark-json=bench/out/matmul.json
    python bench/report.py bench/out/matmul.json          # table + docs/roofline.png
    # quick subset (4096x14336, M in {1, 8, 512}, 2 threads):
    pytest bench/bench_matmul.py -m quick --benchmark-json=bench/out/quick.json
    # any slice: -k "Q4_K and m1-" , -k "t2 and 4096x14336" ...

Weights are random valid blocks (sane fp16 scales). M <= 16 runs "cold": it rotates through
PYQUANT_BENCH_COLD_MIB (288) MiB of weight copies so each call streams its weight from DRAM, as
decoding a real model does. extra_info: weight GB/s, GFLOP/s, roofline (DRAM GB/s measured in this
run with the same thread count), frac_roofline, and the ratio to torch's int4 kernel when that
anchor ran earlier in the same session.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import exl2_mixes
from conftest import cached_pool, random_blocks, run_rotating
from pyquant._ext import _C

# (N, K): Llama-3-8B q/o, gate/up, down; Llama-3-70B down, gate/up.
SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336), (8192, 28672), (28672, 8192)]
SHAPES_8B = SHAPES[:3]
MS_DECODE = [1, 2, 4, 8, 16]
MS_PREFILL = [64, 512]
THREADS = [1, 2]

# name -> (ggml id, block size, type size, fp16 scale offsets)
GGUF = {
    "Q4_0": (2, 32, 18, [0]),
    "Q8_0": (8, 32, 34, [0]),
    "Q4_K": (12, 256, 144, [0, 2]),
    "Q6_K": (14, 256, 210, [208]),
}
# int4-g*: pyquant's int4 layout, which AWQ checkpoints (group 128 / 64 / 32) are repacked into at load
# exl2-*: an EXL2 Linear in its own widths (formats/exl2/native.py): its groups' 32-blocks at their
# widths in act-order (b + 0.5 bits read a weight), rows interleaved by 8 as the runner packs them,
# plus the gather of x through the permutation; the mixes are exl2_mixes.MIXES
EXL2 = exl2_mixes.MIXES
# *-x8: the same blocks stored row-interleaved (pyquant/kernels/cpu/interleave.py), as the runner packs them
X8 = {"Q4_0-x8": "Q4_0", "Q4_K-x8": "Q4_K", "Q6_K-x8": "Q6_K", "Q8_0-x8": "Q8_0"}
KERNELS = list(GGUF) + list(X8) + ["int4-g128", "int4-g128-x8", "int4-g64", "int4-g32", "int8"] + list(EXL2)
QUICK_SHAPE = (4096, 14336)

_TORCH_INT4_S: dict[tuple, float] = {}  # (n, k, m, threads) -> seconds, for the ratios


def _params(kernels, shapes, ms):
    out = []
    for name in kernels:
        for (n, k) in shapes:
            for m in ms:
                for t in THREADS:
                    quick = (n, k) == QUICK_SHAPE and m in (1, 8, 512) and t == 2
                    out.append(pytest.param(name, n, k, m, t, marks=[pytest.mark.quick] if quick else [],
                                            id=f"{name}-{n}x{k}-m{m}-t{t}"))
    return out


def _cases(kernels, prefill_shapes=SHAPES_8B):
    return _params(kernels, SHAPES, MS_DECODE) + _params(kernels, prefill_shapes, MS_PREFILL)


def _record(benchmark, sec, n, k, m, t, wbytes, roofline):
    gbs = wbytes / sec / 1e9
    bw = roofline(t)
    info = {"n": n, "k": k, "m": m, "threads": t, "weight_bytes": wbytes, "GBps": round(gbs, 2),
            "GFLOPs": round(2 * m * n * k / sec / 1e9, 2), "roofline_GBps": round(bw, 2),
            "frac_roofline": round(gbs / bw, 3), "cold": m <= 16}
    anchor = _TORCH_INT4_S.get((n, k, m, t))
    if anchor:
        info["x_vs_torch_int4"] = round(anchor / sec, 2)
    benchmark.extra_info.update(info)


# ---------------------------------------------------------------- torch anchors (run first)
def _torch_weight(name, n, k):
    if name.startswith("torch-int4"):
        q = torch.randint(0, 16, (n, k), dtype=torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        return packed, packed.numel() + (k // 128) * n * 2 * 2
    if name.startswith("torch-int8"):
        w8 = torch.randint(-128, 128, (n, k), dtype=torch.int8)
        return w8, w8.numel() + 2 * n
    w = torch.randn(n, k)
    return w, w.numel() * 4


@pytest.mark.anchor
@pytest.mark.parametrize("name,n,k,m,t", _cases(["torch-int4-g128-bf16", "torch-int8-bf16", "torch-f32-linear"],
                                                       prefill_shapes=[QUICK_SHAPE]))  # bf16 GEMMs are slow here
def test_torch_anchor(benchmark, threads, roofline, name, n, k, m, t):
    if name == "torch-f32-linear" and (n, k) not in SHAPES_8B:
        pytest.skip("fp32 70B weights (0.9 GB per copy) are too large to rotate")
    threads(t)
    cold = m <= 16
    first = {}

    def build():
        first["w"], first["nbytes"] = _torch_weight(name, n, k)
        return first["w"]

    probe_bytes = {"torch-int4-g128-bf16": n * k // 2, "torch-int8-bf16": n * k, "torch-f32-linear": 4 * n * k}[name]
    pool = cached_pool((name, n, k), build, probe_bytes, cold)
    xb = torch.randn(m, k).to(torch.bfloat16)
    if name.startswith("torch-int4"):
        gs = 128
        sz = (torch.rand(k // gs, n, 2) * 0.01).to(torch.bfloat16)
        wbytes = n * k // 2 + sz.numel() * 2
        fn = lambda p: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, p, gs, sz)  # noqa: E731
    elif name.startswith("torch-int8"):
        s8 = (torch.rand(n) * 0.01).to(torch.bfloat16)
        wbytes = n * k + 2 * n
        fn = lambda w: torch.ops.aten._weight_int8pack_mm(xb, w, s8)  # noqa: E731
    else:
        x = xb.float()
        wbytes = 4 * n * k
        fn = lambda w: F.linear(x, w)  # noqa: E731
    sec = run_rotating(benchmark, fn, pool, {"kernel": name})
    if name.startswith("torch-int4"):
        _TORCH_INT4_S[(n, k, m, t)] = sec
    _record(benchmark, sec, n, k, m, t, wbytes, roofline)


# ---------------------------------------------------------------- pyquant
def _pyquant_weight(name, n, k):
    rng = np.random.default_rng(0)
    if name in EXL2:   # random payloads (any bytes are valid q), sane fp16 scales
        from pyquant.formats.exl2 import native

        bits = exl2_mixes.widths(name, k)
        off = native.block_offsets(bits).numpy()
        data = rng.integers(0, 256, (n, int(off[-1])), dtype=np.uint8)
        d = np.full((n, 1), 0.01, np.float16).view(np.uint8)
        for j in range(k // 32):
            data[:, off[j]:off[j] + 2] = d
        data = native.interleave(torch.from_numpy(data), bits).numpy()   # rows interleaved, as the runner packs them
        return data, bits.numpy(), rng.permutation(k).astype(np.int64)
    if name in GGUF:
        qtype, bs, ts, offs = GGUF[name]
        return random_blocks(rng, n, k // bs, ts, offs)
    if name in X8:
        from pyquant.kernels.cpu.interleave import interleave

        qtype, bs, ts, offs = GGUF[X8[name]]
        plain = random_blocks(rng, n, k // bs, ts, offs).reshape(n, -1)
        return interleave(torch.from_numpy(plain), qtype).numpy().reshape(-1)
    if name.startswith("int4"):
        gs = int(name.split("-g")[1].split("-")[0])
        q = rng.integers(0, 256, (n, k // 2), dtype=np.uint8)
        sc, mn = np.full((n, k // gs), 0.01, np.float32), np.full((n, k // gs), -0.08, np.float32)
        if name.endswith("-x8"):
            from pyquant.kernels.cpu import interleave as il
            from pyquant.qtypes import QType

            q = il.interleave(torch.from_numpy(q), QType.INT4).numpy()
            sc, mn = (il.interleave_side(torch.from_numpy(t)).numpy() for t in (sc, mn))
        return q, sc, mn
    return rng.integers(-128, 128, (n, k), dtype=np.int8), np.full(n, 0.01, np.float32)


def _nbytes(item):
    return sum(v.nbytes for v in item) if isinstance(item, tuple) else item.nbytes


@pytest.mark.parametrize("name,n,k,m,t", _cases(KERNELS))
def test_pyquant(benchmark, threads, roofline, name, n, k, m, t):
    threads(t)
    cold = m <= 16
    approx = {"Q4_0": 0.5625, "Q8_0": 1.0625, "Q4_K": 0.5625, "Q6_K": 0.8203, "int4-g128": 0.5625,
              "int4-g64": 0.625, "int4-g32": 0.75, "int8": 1.0, "exl2-2.5": 0.35, "exl2-4.0": 0.5625,
              "exl2-6.0": 0.8125}
    bpw = approx[X8.get(name, name.removesuffix("-x8"))]   # bytes per weight (the layout keeps the size)
    pool = cached_pool((name, n, k), lambda: _pyquant_weight(name, n, k), int(bpw * n * k), cold)
    wbytes = _nbytes(pool[0])
    x = torch.randn(m, k)
    y = torch.empty(m, n)
    xa = (x.data_ptr(), x.numel() * 4, "float32", m, y.data_ptr(), y.numel() * 4, 0, 0, 0)
    if name in EXL2:
        from pyquant.kernels.cpu.matmul import linear_into
        from pyquant.qtensor import QTensor

        wide = max(b for b, _ in EXL2[name]) > 5
        path = _C.matmul_path("exl2", 1003 if wide else 1002, m) + " + gather (rows interleaved by 8)"
        qts = {}   # one QTensor per pool copy (building one validates the permutation: not timed)

        def fn(p):
            qt = qts.get(id(p))
            if qt is None:
                qt = qts[id(p)] = QTensor(torch.from_numpy(p[0]), "EXL2", (n, k), in_perm=torch.from_numpy(p[2]),
                                          block_bits=torch.from_numpy(p[1]), interleave=8)
            return linear_into(x, qt, y)

        for p in pool:
            fn(p)
    else:   # one _C.Weight per pool copy, made (and validated) once, outside the timing
        if name in GGUF:
            qtype = GGUF[name][0]
            path = _C.matmul_path("gguf", qtype, m)
            make = lambda w: _C.Weight(qtype, w, n, k)  # noqa: E731
        elif name in X8:
            qtype = GGUF[X8[name]][0]
            path = _C.matmul_path("gguf", qtype, m) + " (rows interleaved by 8)"
            make = lambda w: _C.Weight(qtype, w, n, k, interleave=8)  # noqa: E731
        elif name.startswith("int4"):
            path = _C.matmul_path("int4", 0, m) + (" (rows interleaved by 8)" if name.endswith("-x8") else "")
            gs, il8 = int(name.split("-g")[1].split("-")[0]), 8 if name.endswith("-x8") else 0
            make = lambda p: _C.Weight(1000, p[0], n, k, p[1], p[2], gs, il8)  # noqa: E731
        else:
            path = _C.matmul_path("int8", 0, m)
            make = lambda p: _C.Weight(1001, p[0].view(np.uint8), n, k, p[1])  # noqa: E731
        weights = {id(p): make(p) for p in pool}
        fn = lambda p: _C.linear(weights[id(p)], *xa)  # noqa: E731
    sec = run_rotating(benchmark, fn, pool, {"kernel": name, "path": path})
    _record(benchmark, sec, n, k, m, t, wbytes, roofline)
