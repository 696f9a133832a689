"""The CUDA side without and with a GPU.

Always (CPU-only CI included):
- the GEMV's chunk dequantizers (csrc/cuda/chunk_dequant.cuh, host+device code) compiled for the host and
  compared bit for bit with gguf.quants.dequantize on random blocks (NaN / inf scales included);
- pyquant._C_cuda, when this build has it: its kernel list and its argument validation (bad shapes,
  sizes, host pointers -> KernelError, never a crash) work without a GPU;
- when nvcc exists but the module was not built (tools/dev_build.sh builds CPU-only by default):
  the CUDA sources compile (front end + NVVM to PTX for sm_80, no ptxas: seconds, not minutes).
With a GPU (torch.cuda.is_available()): the full correctness suite on CUDA tensors — every CUDA
dequantizer bit-exact with gguf, the GEMV and the dequant+cuBLAS path for every GEMV type and int4 /
int8 within a rounding-error bound of float64 (odd K, M from 1 to 33, every x dtype, bias), the
Triton kernels on CUDA tensors, and dispatch through pyquant.ops.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from _gguf_random import TYPES, bound, raw_blocks, sane_blocks  # noqa: E402

from pyquant.errors import KernelError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HAS_GPU = torch.cuda.is_available()
try:
    from pyquant._ext import _C_cuda
except Exception:  # pragma: no cover
    _C_cuda = None

needs_module = pytest.mark.skipif(_C_cuda is None, reason="pyquant._C_cuda not built (no nvcc at build time)")
needs_gpu = pytest.mark.skipif(not (HAS_GPU and _C_cuda is not None), reason="no CUDA GPU (or _C_cuda not built)")


def _gt(name):
    return gguf.GGMLQuantizationType[name]


def _nvcc():
    return shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)


# ------------------------------------------------------------------------------------ host-side
@pytest.fixture(scope="module")
def chunk_dump(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path_factory.mktemp("chunk") / "chunk_dump"
    subprocess.run([cxx, "-std=c++17", "-O1", "-ffp-contract=off", f"-I{ROOT / 'csrc'}",
                    str(ROOT / "tests" / "cuda_host" / "chunk_dump.cpp"), "-o", str(exe)], check=True)
    return exe


@pytest.mark.parametrize("name", TYPES)
def test_gemv_chunk_dequantizers_match_gguf(chunk_dump, tmp_path, name):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    qk = gguf.GGML_QUANT_SIZES[_gt(name)][0]
    raw = raw_blocks(rng, name, 64, qk)  # 64 blocks, every bit pattern
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    raw.tofile(src)
    subprocess.run([str(chunk_dump), name, str(src), str(dst)], check=True)
    out = np.fromfile(dst, dtype=np.float32).reshape(64, qk)
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(raw, _gt(name)).astype(np.float32)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(out), nan)
    # equal as values (q*s + 0 turns a -0 into +0: the sign of a zero weight is irrelevant to a dot)
    np.testing.assert_array_equal(out[~nan], ref[~nan])


def test_gemv_exl2_block_decoder_matches_the_packer(chunk_dump, tmp_path):
    """The CUDA kernels' EXL2 block decoder (chunk::Exl2, host build) against pyquant's own
    dequantize, bit for bit: every width, random payloads and scales, blocks of mixed widths."""
    from pyquant.formats.exl2 import native

    gen = torch.Generator().manual_seed(5)
    bits = torch.tensor([b for b in native.BITS for _ in range(7)], dtype=torch.uint8)
    bits = bits[torch.randperm(bits.numel(), generator=gen)]
    off = native.block_offsets(bits)
    row = torch.randint(0, 256, (1, int(off[-1])), dtype=torch.uint8, generator=gen)
    d = (torch.randn(bits.numel(), generator=gen) * 0.01).to(torch.float16).view(torch.uint8).reshape(-1, 2)
    for j in range(bits.numel()):
        row[0, off[j]:off[j] + 2] = d[j]
    records = b"".join(bytes([int(bits[j])]) + row[0, off[j]:off[j + 1]].numpy().tobytes() for j in range(bits.numel()))
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(records)
    subprocess.run([str(chunk_dump), "EXL2", str(src), str(dst)], check=True)
    out = torch.from_numpy(np.fromfile(dst, dtype=np.float32))
    assert torch.equal(out, native.dequantize(row, bits).reshape(-1))


@needs_module
def test_module_lists_kernels():
    dequantizers = set(_C_cuda.dequant_types())
    from pyquant.qtypes import QType

    from pyquant.qtypes import REGISTRY, Kind

    # every quantized ggml type of the registry has a CUDA dequantizer, with the registry's geometry
    want = {int(t) for t, i in REGISTRY.items() if int(t) < 1000 and i.kind not in (Kind.FLOAT, Kind.INTEGER)}
    assert want <= dequantizers, sorted(want - dequantizers)
    for tid, qk, ts in _C_cuda.dequant_geometry():
        info = REGISTRY[QType(tid)]
        assert (qk, ts) == (info.block_size, info.type_size), QType(tid).name
    for name in TYPES:
        assert _C_cuda.gemv_supports(int(QType[name])), name
    assert not _C_cuda.gemv_supports(int(QType.F32))


@needs_module
def test_module_validates_before_touching_memory():
    """Wrong sizes / shapes / dtypes and host pointers are refused on the host, without a GPU."""
    with pytest.raises(KernelError, match="multiple of the block size"):
        _C_cuda.dequantize(8, 1 << 20, 34, 1 << 21, 128, "float32", 1, 48)
    with pytest.raises(KernelError, match="needs"):
        _C_cuda.dequantize(8, 1 << 20, 33, 1 << 21, 128, "float32", 1, 32)
    with pytest.raises(KernelError, match="overflows"):
        _C_cuda.dequantize(8, 1 << 20, 1 << 40, 1 << 21, 1 << 40, "float32", 1 << 62, 1 << 40)
    with pytest.raises(KernelError, match="dtype"):
        _C_cuda.dequantize(8, 1 << 20, 34, 1 << 21, 128, "int8", 1, 32)
    with pytest.raises(KernelError, match="no CUDA GEMV"):
        _C_cuda.gguf_gemv(16, 1, 66, 1, 256, 16, 1024, "float32", 1, 16, 4, 0, 0)
    with pytest.raises(KernelError, match="K=40"):
        _C_cuda.int8_gemv(16, 40, 16, 4, 1, 40, 16, 160, "float32", 1, 16, 4, 0, 0)
    with pytest.raises(KernelError, match="group_size"):
        _C_cuda.int4_gemv(16, 32, 16, 32, 4, 48, 1, 64, 16, 256, "float32", 1, 16, 4, 0, 0)
    with pytest.raises(KernelError, match="16-byte aligned"):
        _C_cuda.int8_gemv(16, 64, 16, 4, 1, 64, 17, 256, "float32", 1, 16, 4, 0, 0)
    # EXL2 (w, w bytes, row bytes, bits, bits bytes, offsets, offsets bytes, n, k, x, ...): 2 blocks
    exl2 = dict(w=16, wb=36, rb=36, bits=16, bb=2, off=16, ob=12)

    def exl2_gemv(**kw):
        a = {**exl2, **kw}
        _C_cuda.exl2_gemv(a["w"], a["wb"], a["rb"], a["bits"], a["bb"], a["off"], a["ob"], 1, 64, 16, 256,
                          "float32", 1, 16, 4, 0, 0)

    with pytest.raises(KernelError, match="row_bytes 70 is not 2 blocks"):
        exl2_gemv(rb=70, wb=70)
    with pytest.raises(KernelError, match="4-byte aligned"):
        exl2_gemv(w=18)
    with pytest.raises(KernelError, match="block_bits has 1 bytes"):
        exl2_gemv(bb=1)
    with pytest.raises(KernelError, match="block offsets have 8 bytes"):
        exl2_gemv(ob=8)
    with pytest.raises(KernelError, match="weights have 30 bytes"):
        exl2_gemv(wb=30)
    with pytest.raises(KernelError, match="destination"):
        _C_cuda.exl2_dequant(16, 36, 36, 16, 2, 16, 12, 1, 64, 16, 100, "float32")
    # valid sizes, but a host address: rejected by the pointer check, not a crash
    buf = np.zeros(1024, dtype=np.uint8)
    with pytest.raises(KernelError, match="pointer|CUDA"):
        _C_cuda.dequantize(8, buf.ctypes.data, 34, buf.ctypes.data + 64, 128, "float32", 1, 32)


@pytest.mark.skipif(_C_cuda is not None or _nvcc() is None, reason="module built, or no nvcc")
def test_cuda_sources_compile(tmp_path):
    """Every .cu except the two big GEMV instantiation units (their template is compiled through
    gemv_int.cu, their chunk dequantizers by the host test above): ~30 s instead of minutes."""
    nvcc = _nvcc()
    heavy = {"gemv_legacy.cu", "gemv_kquant.cu"}
    for src in sorted(glob.glob(str(ROOT / "csrc" / "cuda" / "*.cu"))):
        if Path(src).name in heavy:
            continue
        out = tmp_path / (Path(src).stem + ".ptx")
        r = subprocess.run([nvcc, "-std=c++17", "--fmad=false", "--expt-relaxed-constexpr", f"-I{ROOT / 'csrc'}",
                            "-arch=compute_80", "-ptx", src, "-o", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, f"{src}:\n{r.stderr[-4000:]}"
        assert out.stat().st_size > 0


# ------------------------------------------------------------------------------------ on a GPU
DEV = "cuda"
X_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DNAME = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _check(y, x, w64, bias, dtype):
    x64 = x.double().cpu().numpy()
    ref = x64 @ w64.T + (bias.double().cpu().numpy() if bias is not None else 0)
    tol = bound(x64, w64, _DNAME[dtype])
    err = np.abs(y.double().cpu().numpy() - ref)
    assert y.dtype == dtype and tuple(y.shape) == ref.shape
    assert (err <= tol).all(), f"max err {err.max():.3g}, worst err/bound {(err / tol).max():.3g}"


@needs_gpu
def test_gpu_dequantize_every_type_bit_exact():
    from pyquant.kernels.cuda import matmul as cm
    from pyquant.qtypes import QType

    rng = np.random.default_rng(0)
    checked = []
    for tid in _C_cuda.dequant_types():
        name = QType(tid).name
        try:
            gt = _gt(name)
            qk, ts = gguf.GGML_QUANT_SIZES[gt]
        except KeyError:
            continue
        rows, cols = 5, qk * 37  # 37 blocks per row: partial CTAs and odd byte counts
        raw = rng.integers(0, 256, size=(rows, cols // qk * ts), dtype=np.uint8)
        try:
            with np.errstate(all="ignore"):
                ref = gguf.quants.dequantize(raw, gt).astype(np.float32)
        except (NotImplementedError, ValueError):
            continue  # gguf-py has no dequantizer for this one (Q8_1)
        data = torch.from_numpy(raw).to(DEV)
        out = cm.dequantize(data, name, rows, cols, torch.float32).cpu().numpy()
        np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32), err_msg=name)
        for dt in (torch.float16, torch.bfloat16):
            o = cm.dequantize(data, name, rows, cols, dt).cpu()
            r = torch.from_numpy(ref).to(dt)
            fin = torch.isfinite(r)
            assert torch.equal(o[fin].view(torch.int16), r[fin].view(torch.int16)), (name, dt)
        # misaligned source (byte path of the staging loop)
        flat = torch.zeros(raw.size + 1, dtype=torch.uint8, device=DEV)
        flat[1:] = data.reshape(-1)
        out2 = cm.dequantize(flat[1:], name, rows, cols).cpu().numpy()
        np.testing.assert_array_equal(out2.view(np.uint32), ref.view(np.uint32), err_msg=name + " unaligned")
        checked.append(name)
    assert "Q8_0" in checked


@needs_gpu
@pytest.mark.parametrize("name", TYPES)
def test_gpu_gguf_matmul_paths(name):
    from pyquant.kernels.cuda import matmul as cm

    rng = np.random.default_rng(1)
    qk = gguf.GGML_QUANT_SIZES[_gt(name)][0]
    # K = 2304 / 576 (Q*_0 576 gives unaligned rows: the byte staging path) and a long K
    for n, k in ((67, 9 * qk if qk == 256 else 18 * qk), (130, 4096)):
        raw = sane_blocks(rng, name, n, k)
        w64 = gguf.quants.dequantize(raw, _gt(name)).astype(np.float64)
        w = torch.from_numpy(raw).to(DEV)
        for m in (1, 2, 5, 8, 16, 33):
            for dt in X_DTYPES:
                x = torch.randn(m, k, device=DEV).to(dt)
                bias = torch.randn(n, device=DEV) if m % 2 else None
                for path in ("gemv", "dequant"):
                    y = cm.gguf_matmul(x, w, name, n, k, bias, path=path)
                    _check(y, x, w64, bias, dt)


@needs_gpu
@pytest.mark.parametrize("g", [32, 64, 128])
def test_gpu_int4_int8(g):
    from pyquant.kernels.cuda import matmul as cm

    gen = torch.Generator().manual_seed(g)
    n, k = 72, 1024
    qw = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    scales = torch.rand(n, k // g, generator=gen) * 0.02 + 1e-3
    mins = -torch.rand(n, k // g, generator=gen) * 0.1
    b = qw.reshape(n, k // 32, 16).to(torch.int64)
    q = torch.cat([b & 15, b >> 4], dim=2).reshape(n, k).double()
    w64 = (q * scales.double().repeat_interleave(g, 1) + mins.double().repeat_interleave(g, 1)).numpy()
    q8 = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=gen)
    s8 = torch.rand(n, generator=gen) * 0.01 + 1e-4
    w8 = (q8.double() * s8.double()[:, None]).numpy()
    for m in (1, 3, 16, 40):
        for dt in X_DTYPES:
            x = torch.randn(m, k, device=DEV).to(dt)
            bias = torch.randn(n, device=DEV)
            for path in ("gemv", "dequant"):
                _check(cm.int4_matmul(x, qw.to(DEV), scales.to(DEV), mins.to(DEV), g, bias, path=path), x, w64, bias, dt)
                _check(cm.int8_matmul(x, q8.to(DEV), s8.to(DEV), bias, path=path), x, w8, bias, dt)


@needs_gpu
def test_gpu_rejects_host_tensors_and_other_devices():
    with pytest.raises(KernelError, match="device memory|not a CUDA pointer"):
        host = torch.zeros(34, dtype=torch.uint8).pin_memory()
        out = torch.empty(32, device=DEV)
        _C_cuda.dequantize(8, host.data_ptr(), 34, out.data_ptr(), 128, "float32", 1, 32, 0)


@needs_gpu
def test_gpu_triton_kernels():
    pytest.importorskip("triton")
    from pyquant.kernels.triton import ops

    rng = np.random.default_rng(2)
    for name in TYPES:
        qk = gguf.GGML_QUANT_SIZES[_gt(name)][0]
        raw = raw_blocks(rng, name, 6, 4 * qk)
        with np.errstate(all="ignore"):
            ref = gguf.quants.dequantize(raw, _gt(name)).astype(np.float32)
        out = ops.dequantize(torch.from_numpy(raw).to(DEV), name, 6, 4 * qk).cpu().numpy()
        np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32), err_msg=name)
        n, k = 96, 8 * qk if qk == 32 else 2 * qk
        w = sane_blocks(rng, name, n, k)
        w64 = gguf.quants.dequantize(w, _gt(name)).astype(np.float64)
        # one compile per (type, dtype, M bucket): every type in bf16, the other dtypes on Q4_K
        cases = ((5, torch.bfloat16), (1, torch.float16), (64, torch.float32)) if name == "Q4_K" else ((5, torch.bfloat16),)
        for m, dt in cases:
            x = torch.randn(m, k, device=DEV).to(dt)
            _check(ops.gguf_matmul(x, torch.from_numpy(w).to(DEV), name, n, k), x, w64, None, dt)
    gen = torch.Generator().manual_seed(9)
    qw = torch.randint(0, 256, (40, 128), dtype=torch.uint8, generator=gen)
    sc, mn = torch.rand(40, 2, generator=gen) * 0.02, -torch.rand(40, 2, generator=gen) * 0.1
    b = qw.reshape(40, 8, 16).to(torch.int64)
    q = torch.cat([b & 15, b >> 4], dim=2).reshape(40, 256).double()
    w64 = (q * sc.double().repeat_interleave(128, 1) + mn.double().repeat_interleave(128, 1)).numpy()
    x = torch.randn(3, 256, device=DEV, dtype=torch.bfloat16)
    _check(ops.int4_matmul(x, qw.to(DEV), sc.to(DEV), mn.to(DEV), 128), x, w64, None, torch.bfloat16)
    q8 = torch.randint(-128, 128, (40, 256), dtype=torch.int8, generator=gen)
    s8 = torch.rand(40, generator=gen) * 0.01
    _check(ops.int8_matmul(x, q8.to(DEV), s8.to(DEV)), x, (q8.double() * s8.double()[:, None]).numpy(), None,
           torch.bfloat16)


@needs_gpu
def test_gpu_triton_exl2_in_its_own_widths():
    """Triton's EXL2 kernel on CUDA tensors, every width and runs off the 8-block grid, against the
    exact weights; a QTensor moved to the GPU keeps its widths (Triton reads them)."""
    pytest.importorskip("triton")
    import pyquant
    from pyquant.formats.exl2 import native
    from pyquant.kernels.triton import ops
    from pyquant.qtensor import QTensor
    from test_exl2_native import WIDTHS, exact, make

    for wi in (1, 2):
        values, scales, groups = make(WIDTHS[wi], 96, seed=wi)
        data, bits = native.pack(values, scales, groups)
        w64 = exact(values, scales, groups).double().numpy()
        for m, dt in ((1, torch.bfloat16), (5, torch.float16), (64, torch.float32)):
            x = torch.randn(m, values.shape[0], device=DEV).to(dt)
            _check(ops.exl2_matmul(x, data.to(DEV), bits.to(DEV)), x, w64, None, dt)
    qt = QTensor(data, "EXL2", (96, values.shape[0]), block_bits=bits).to(DEV)
    assert qt.qtype is pyquant.QType.EXL2 and qt.device.type == "cuda" and qt.block_bits.is_cuda


@needs_gpu
def test_gpu_cuda_exl2_gemv_and_dequant():
    """The CUDA C++ EXL2 kernels, both paths, every width, runs off the 8-block grid, a row size
    that is not a multiple of 4 (rows start 2 bytes into a word), against the exact weights; the
    dense dequantize bit for bit with pyquant's own; a forged width table gives NaN, not a fault."""
    from pyquant.formats.exl2 import native
    from pyquant.kernels.cuda import matmul as cm
    from test_exl2_native import WIDTHS, exact, make

    for wi in (1, 2, 5):
        values, scales, groups = make(WIDTHS[wi], 40, seed=wi)
        data, bits = native.pack(values, scales, groups)
        w64 = exact(values, scales, groups).double().numpy()
        k = values.shape[0]
        dq = cm.dequantize_exl2(data.to(DEV), bits.to(DEV), torch.float32).cpu()
        assert torch.equal(dq, native.dequantize(data, bits))
        for path, m, dt in (("gemv", 1, torch.bfloat16), ("gemv", 5, torch.float16), ("gemv", 16, torch.float32),
                            ("dequant", 33, torch.bfloat16)):
            x = torch.randn(m, k, device=DEV).to(dt)
            bias = torch.randn(40, device=DEV) if dt == torch.float32 else None
            y = cm.exl2_matmul(x, data.to(DEV), bits.to(DEV), bias, path=path)
            _check(y, x, w64, bias, dt)
    bad = bits.clone()
    bad[0] = 7
    off = native.block_offsets(bits).to(torch.int32).to(DEV)
    qw, x = data.to(DEV), torch.randn(1, k, device=DEV)
    y = torch.empty(1, 40, device=DEV)
    _C_cuda.exl2_gemv(qw.data_ptr(), qw.numel(), qw.shape[1], bad.to(DEV).data_ptr(), bad.numel(), off.data_ptr(),
                      off.numel() * 4, 40, k, x.data_ptr(), x.numel() * 4, "float32", 1, y.data_ptr(), 160, 0, 0)
    torch.cuda.synchronize()
    assert torch.isnan(y).all()


@needs_gpu
def test_gpu_dispatch_through_ops():
    dispatch = pytest.importorskip("pyquant.dispatch")
    import pyquant.ops as pops
    from pyquant.qtypes import QType

    verdicts = dispatch.explain("gguf_matmul", QType.Q4_K, "cuda", 1)
    assert verdicts[0][0] == "cuda" and verdicts[0][1], verdicts
    rng = np.random.default_rng(3)
    n, k = 64, 512
    raw = sane_blocks(rng, "Q4_K", n, k)
    w64 = gguf.quants.dequantize(raw, _gt("Q4_K")).astype(np.float64)
    x = torch.randn(2, 3, k, device=DEV, dtype=torch.bfloat16)
    y = pops.gguf_matmul(x, torch.from_numpy(raw).to(DEV), int(QType.Q4_K), n, k)
    _check(y.reshape(6, n), x.reshape(6, k), w64, None, torch.bfloat16)


def test_gpu_check_dry_run(capsys):
    """bench/gpu_check.py's measurement + table code, on the CPU with the reference backend."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("gpu_check", None)
    rows = mod.main(["--dry-run"])
    out = capsys.readouterr().out
    fmts = {r.fmt for r in rows}
    assert {"Q4_K", "Q4_0", "Q8_0", "int4-g128", "exl2-4.0"} <= fmts
    assert all(r.us > 0 for r in rows)
    table = out[out.index("pyquant GPU check"):]
    assert table.count("\n") >= len(rows) + 2 and "%copy" in table
    # the dry run checks its own numbers too: the reference matmul it timed is the real one
    x = torch.randn(2, 512)
    wd = mod.make_weights("Q4_0", 8, 512, "cpu", torch.Generator().manual_seed(0))
    from pyquant.kernels.reference import matmul as ref

    y = mod.call(mod.backends(True)[0][1], wd, x, 8, 512)
    assert torch.allclose(y, ref.gguf_matmul(x, wd["w"], wd["qtype"], 8, 512))
    from pyquant.formats.exl2 import native

    wd = mod.make_weights("exl2-4.0", 8, 512, "cpu", torch.Generator().manual_seed(0))
    w = native.dequantize(wd["qweight"], wd["block_bits"])
    assert wd["block_bits"].tolist() == [5] * 2 + [4] * 13 + [3]   # the 4.0 mix, 4.5 bits read
    assert torch.all(w.abs() <= 128 * 0.004) and float(w.abs().max()) > 0
    assert torch.allclose(mod.call(mod.backends(True)[0][1], wd, x, 8, 512), x @ w.t(), rtol=1e-5, atol=1e-5)


@needs_module
def test_cuda_backend_path_choice(monkeypatch):
    """Which kernel the cuda backend runs per (type, M), and the env override of the crossover."""
    from pyquant.kernels.cuda import matmul as cm
    from pyquant.qtypes import QType

    monkeypatch.delenv("PYQUANT_CUDA_GEMV_MAX_M", raising=False)
    assert cm.matmul_path("gguf_matmul", QType.Q4_K, 1)[0] == "gemv"
    assert cm.matmul_path("gguf_matmul", QType.Q4_K, 16)[0] == "gemv"
    assert cm.matmul_path("gguf_matmul", QType.Q4_K, 17)[0] == "dequant"
    assert cm.matmul_path("gguf_matmul", QType.IQ2_XXS, 1)[0] == "dequant"  # no fused GEMV for it
    assert cm.matmul_path("int4_matmul", QType.INT4, 4)[0] == "gemv"
    monkeypatch.setenv("PYQUANT_CUDA_GEMV_MAX_M", "4")
    assert cm.matmul_path("int8_matmul", QType.INT8, 5)[0] == "dequant"
    ok, why = cm.supports("gguf_matmul", QType.IQ1_M, 1)
    assert ok and "dequantize" in why
    assert cm.supports("dequantize", QType.F16, 0)[0]
    assert not cm.supports("gguf_matmul", QType.INT4, 1)[0]
    assert cm.matmul_path("exl2_matmul", QType.EXL2, 4)[0] == "gemv"
    assert cm.supports("exl2_matmul", QType.EXL2, 64) == (True, cm.matmul_path("exl2_matmul", QType.EXL2, 64)[1])
