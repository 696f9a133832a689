"""Dequantize: the torch reference and the C++ kernels (scalar and AVX2) against gguf-py, bit for bit.

Outputs are compared as int32 bit patterns, so NaN payloads, infinities and signed zeros count.
Block bytes are random; the fp16 scale fields are then overwritten with normal scales or with
extreme ones (inf, NaN payloads, subnormals, max, +-0), chosen independently per field and block
so that e.g. a NaN d meets a NaN m.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

import pyquant
from pyquant import KernelError, QType, UnsupportedQTypeError
from pyquant.kernels.cpu.dequant import dequantize_into
from pyquant.kernels.reference.dequant import DEQUANTIZERS, dequantize_reference
from pyquant.qtypes import info

gguf_quants = pytest.importorskip("gguf.quants")
from gguf.constants import GGMLQuantizationType  # noqa: E402

# Byte offsets of each type's fp16 scale fields (d, m / dmin) inside a block.
F16_FIELDS = {
    QType.Q4_0: [0], QType.Q4_1: [0, 2], QType.Q5_0: [0], QType.Q5_1: [0, 2], QType.Q8_0: [0],
    QType.Q2_K: [80, 82], QType.Q3_K: [108], QType.Q4_K: [0, 2], QType.Q5_K: [0, 2], QType.Q6_K: [208],
    QType.TQ1_0: [52], QType.TQ2_0: [64],
}
# Types gguf-py 0.19 dequantizes (the oracle); the plain float types are handled there too.
ORACLE_TYPES = [QType.F32, QType.F16, QType.BF16, *F16_FIELDS, QType.MXFP4, QType.NVFP4]
# fp16 bit patterns: inf, -inf, quiet NaN, negative NaN, signalling NaN with payload, NaN with a
# wide payload, smallest / largest subnormal, negative subnormal, max, -max, +0, -0.
EXTREME_F16 = np.array([0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D55, 0x0001, 0x03FF, 0x83FF,
                        0x7BFF, 0xFBFF, 0x0000, 0x8000], dtype=np.uint16)
MODES = ["random", "normal", "extreme"]


def make_blocks(qt: QType, nblocks: int, mode: str, seed: int = 0) -> np.ndarray:
    """nblocks random blocks of `qt` as flat uint8, with scale fields per `mode`."""
    rng = np.random.default_rng([int(qt), MODES.index(mode), seed])
    i = info(qt)
    raw = rng.integers(0, 256, size=(nblocks, i.type_size), dtype=np.uint8)
    if mode == "random":
        return raw.reshape(-1)
    if qt in (QType.F16, QType.BF16):
        vals = (rng.standard_normal(raw.size // 2).astype(np.float32) if mode == "normal"
                else None)
        if qt == QType.F16:
            bits = vals.astype(np.float16).view(np.uint16) if vals is not None else rng.choice(EXTREME_F16, raw.size // 2)
        else:
            bits = ((vals.view(np.uint32) >> 16).astype(np.uint16) if vals is not None
                    else rng.choice(EXTREME_F16, raw.size // 2))  # as bf16 these are other extremes
        return bits.astype("<u2").view(np.uint8).copy()
    if qt == QType.F32:
        vals = rng.standard_normal(raw.size // 4).astype(np.float32)
        if mode == "extreme":
            vals = np.array([np.inf, -np.inf, np.nan, -0.0, 1e-45, 3.4e38], np.float32)[rng.integers(0, 6, vals.size)]
        return vals.view(np.uint8).copy()
    if qt == QType.MXFP4:  # e8m0 scale byte: make sure both ends of the range occur
        raw[:, 0] = rng.choice([0, 1, 2, 127, 253, 254, 255], nblocks) if mode == "extreme" else rng.integers(100, 140, nblocks)
    if qt == QType.NVFP4:  # ue4m3 scales: zero, the NaN code 0x7F, 0xFF, subnormals
        if mode == "extreme":
            raw[:, 0:4] = rng.choice([0x00, 0x01, 0x07, 0x08, 0x7E, 0x7F, 0x80, 0xFF], (nblocks, 4))
        else:
            raw[:, 0:4] = rng.integers(0x20, 0x50, (nblocks, 4))
    for off in F16_FIELDS.get(qt, []):
        if mode == "normal":
            bits = (rng.standard_normal(nblocks).astype(np.float32) * 0.01).astype(np.float16).view(np.uint16)
        else:
            bits = rng.choice(EXTREME_F16, nblocks)
        raw[:, off:off + 2] = bits.astype("<u2").view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(-1)


def gguf_oracle(raw: np.ndarray, qt: QType) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf * 0 and friends
        return gguf_quants.dequantize(raw.reshape(1, -1), GGMLQuantizationType(int(qt))).reshape(-1)


def assert_same_bits(got, want, what=""):
    """Bit-identical, except that any NaN equals any NaN: which operand's payload a NaN result
    carries is the compiler's choice (it may commute a * b + c), not the format's; the ASan build
    (tools/sanitize.sh) picks another than the release build for random blocks with NaN scales."""
    got = got.numpy() if isinstance(got, torch.Tensor) else got
    g, w = got.reshape(-1).view(np.int32), want.reshape(-1).view(np.int32)
    both_nan = np.isnan(got.reshape(-1).view(np.float32)) & np.isnan(want.reshape(-1).view(np.float32))
    bad = np.flatnonzero((g != w) & ~both_nan)
    assert bad.size == 0, (f"{what}: {bad.size} of {w.size} differ; first at {bad[0]}: "
                           f"got {int(g[bad[0]]) & 0xFFFFFFFF:#010x} want {int(w[bad[0]]) & 0xFFFFFFFF:#010x}")


def n_elems(qt, nblocks):
    return nblocks * info(qt).block_size


# ----------------------------------------------------------------------------- vs gguf-py

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("qt", ORACLE_TYPES, ids=lambda t: t.name)
def test_reference_matches_gguf(qt, mode):
    raw = make_blocks(qt, 96, mode)
    got = dequantize_reference(torch.from_numpy(raw), qt, (n_elems(qt, 96),))
    assert_same_bits(got, gguf_oracle(raw, qt), f"reference {qt.name} {mode}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("qt", ORACLE_TYPES, ids=lambda t: t.name)
def test_cpu_matches_gguf(qt, mode, isa):
    nb = 2053  # odd count: vector loops with tails
    raw = make_blocks(qt, nb, mode)
    got = pyquant.dequantize(raw, qt, (n_elems(qt, nb),), backend="cpu")
    assert_same_bits(got, gguf_oracle(raw, qt), f"C++ {isa} {qt.name} {mode}")


@pytest.mark.parametrize("qt", [QType.Q4_0, QType.Q4_K, QType.Q6_K, QType.TQ1_0, QType.MXFP4, QType.F16, QType.BF16],
                         ids=lambda t: t.name)
def test_cpu_large_output(qt, isa):
    """More than 2 MiB of output per thread: the AVX2 kernels' streaming-store path."""
    bs = info(qt).block_size
    rows, cols = 37, bs * (16384 // bs) * 2
    raw = make_blocks(qt, rows * cols // bs, "random", seed=1)
    got = pyquant.dequantize(raw, qt, (rows, cols), backend="cpu")
    assert_same_bits(got, gguf_oracle(raw, qt), f"C++ {isa} {qt.name} large")


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("qt", [t for t in ORACLE_TYPES if t not in (QType.F32,)], ids=lambda t: t.name)
def test_threads_odd_rows(qt, nthreads, isa):
    bs = info(qt).block_size
    rows, cols = 7, bs * 160  # 1120 blocks: several work chunks split over threads
    raw = make_blocks(qt, rows * cols // bs, "extreme", seed=2)
    out = torch.empty(rows, cols)
    dequantize_into(raw.ctypes.data, raw.nbytes, int(qt), rows, cols, out, nthreads=nthreads)
    assert_same_bits(out, gguf_oracle(raw, qt), f"{qt.name} nthreads={nthreads}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("qt", ORACLE_TYPES, ids=lambda t: t.name)
def test_half_outputs_match_torch_rounding(qt, dtype, isa):
    """float16/bfloat16 outputs equal torch's .to() of the float32 result. NaN payloads are compared
    only as NaN: torch's own conversions canonicalise them differently on its scalar and vector paths."""
    nb = 515
    raw = make_blocks(qt, nb, "extreme" if qt not in (QType.F32,) else "normal", seed=3)
    f32 = pyquant.dequantize(raw, qt, (n_elems(qt, nb),), backend="cpu")
    got = pyquant.dequantize(raw, qt, (n_elems(qt, nb),), dtype=dtype, backend="cpu")
    want = f32.to(dtype)
    assert got.dtype == dtype
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(got.view(torch.int16)[~nan], want.view(torch.int16)[~nan])


def test_reference_half_output_path():
    raw = make_blocks(QType.Q4_K, 8, "normal")
    f32 = pyquant.dequantize(raw, "Q4_K", (2, 1024), backend="reference")
    bf = pyquant.dequantize(raw, "q4_k", (2, 1024), dtype=torch.bfloat16, backend="reference")
    assert torch.equal(bf, f32.to(torch.bfloat16))


# ----------------------------------------------------------------------------- types without a gguf-py dequantizer

@pytest.mark.parametrize("qt", [QType.Q8_1, QType.Q8_K], ids=lambda t: t.name)
def test_activation_types_by_formula(qt, isa):
    """Q8_1 (40-byte registry geometry: d:f32, s:f32, qs[32]) and Q8_K (d:f32, qs[256], bsums):
    y = d * q with d a float32 field."""
    i = info(qt)
    nb = 33
    raw = make_blocks(qt, nb, "random")
    blocks = raw.reshape(nb, i.type_size)
    rng = np.random.default_rng(5)
    d = rng.standard_normal(nb).astype(np.float32)
    d[:3] = [np.inf, np.nan, 0.0]
    blocks[:, 0:4] = d.view(np.uint8).reshape(nb, 4)
    qoff = 8 if qt == QType.Q8_1 else 4
    with np.errstate(invalid="ignore"):
        want = d[:, None] * blocks[:, qoff:qoff + i.block_size].view(np.int8).astype(np.float32)
    assert_same_bits(dequantize_reference(torch.from_numpy(raw), qt, (nb * i.block_size,)), want, "reference")
    assert_same_bits(pyquant.dequantize(raw, qt, (nb * i.block_size,), backend="cpu"), want, "C++")


@pytest.mark.parametrize("qt,np_dtype", [(QType.F64, np.float64), (QType.I8, np.int8), (QType.I16, np.int16),
                                         (QType.I32, np.int32), (QType.I64, np.int64)], ids=str)
def test_plain_element_types(qt, np_dtype):
    vals = np.arange(-50, 50, dtype=np_dtype) * 3
    got = pyquant.dequantize(vals.view(np.uint8), qt, (10, 10))
    assert torch.equal(got, torch.from_numpy(vals.astype(np.float32)).reshape(10, 10))


# ----------------------------------------------------------------------------- the real model

@pytest.fixture(scope="module")
def smollm2_file(request):
    override = os.environ.get("PYQUANT_TEST_SMOLLM2")
    if override:
        return override
    try:
        return request.getfixturevalue("smollm2_path")
    except ImportError:
        pytest.skip("pyquant.hub not available in this checkout")


def test_every_smollm2_tensor_bit_exact(smollm2_file):
    """Every tensor through the C++ path on each ISA (the gguf-py oracle, the slow part, runs once)."""
    from gguf import GGUFReader

    from pyquant._ext import _C

    isas = ["scalar"] + (["avx2"] if _C.cpu_has_avx2() else [])
    before = _C.active_isa()
    reader = GGUFReader(smollm2_file)
    types = set()
    try:
        for t in reader.tensors:
            want = gguf_oracle(np.ascontiguousarray(t.data).view(np.uint8), QType(int(t.tensor_type)))
            for isa in isas:
                _C.set_isa(isa)
                got = pyquant.dequantize(t)  # gguf-py's ReaderTensor: qtype and shape taken from it
                assert tuple(got.shape) == tuple(int(s) for s in reversed(list(t.shape)))
                assert_same_bits(got, want, f"{t.name} ({isa})")
            types.add(QType(int(t.tensor_type)))
    finally:
        _C.set_isa(before)
    assert QType.Q4_1 in types and QType.F32 in types


def test_smollm2_reference_path(smollm2_file):
    from gguf import GGUFReader

    reader = GGUFReader(smollm2_file)
    picked = [t for t in reader.tensors if t.name.startswith("blk.0.")][:4]
    assert picked
    for t in picked:
        want = gguf_oracle(np.ascontiguousarray(t.data).view(np.uint8), QType(int(t.tensor_type)))
        assert_same_bits(pyquant.dequantize(t, backend="reference"), want, t.name)


def test_smollm2_through_pyquant_reader(smollm2_file):
    """pyquant's own GGUFTensor (zero-copy mmap bytes, torch-order shape) goes straight in."""
    from gguf import GGUFReader

    oracle = {t.name: t for t in GGUFReader(smollm2_file).tensors}
    with pyquant.GGUFReader(smollm2_file) as reader:
        for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"):
            t = reader.tensors[name]
            want = gguf_oracle(np.ascontiguousarray(oracle[name].data).view(np.uint8), QType(int(t.qtype)))
            got = pyquant.dequantize(t)
            assert tuple(got.shape) == tuple(t.shape)
            assert_same_bits(got, want, name)


# ----------------------------------------------------------------------------- errors and API

def test_every_ggml_type_has_a_reference_dequantizer():
    from pyquant.qtypes import GGML_TYPES

    assert set(GGML_TYPES) - set(DEQUANTIZERS) <= {t for t in GGML_TYPES if info(t).kind.value == "i-quant"}


def test_errors():
    raw = make_blocks(QType.Q4_0, 4, "normal")
    with pytest.raises(KernelError, match="needs 72 bytes, data has 71"):
        pyquant.dequantize(raw[:-1], "Q4_0", (128,))
    with pytest.raises(KernelError, match="not a multiple of its block size 32"):
        pyquant.dequantize(raw, "Q4_0", (3, 48))
    with pytest.raises(UnsupportedQTypeError, match="unknown quant type name"):
        pyquant.dequantize(raw, "Q4_9", (128,))
    with pytest.raises(UnsupportedQTypeError):
        pyquant.dequantize(raw, 4, (128,))  # id 4 was Q4_2, removed from ggml
    with pytest.raises(UnsupportedQTypeError, match="INT4"):
        pyquant.dequantize(raw, QType.INT4, (144,))
    with pytest.raises(UnsupportedQTypeError, match="output dtype"):
        pyquant.dequantize(raw, "Q4_0", (128,), dtype=torch.int32)
    with pytest.raises(ValueError, match="backend"):
        pyquant.dequantize(raw, "Q4_0", (128,), backend="gpu")
    with pytest.raises(TypeError):
        pyquant.dequantize(raw, "Q4_0")
    with pytest.raises(KernelError, match="out must be"):
        pyquant.dequantize(raw, "Q4_0", (128,), out=torch.empty(127))


def test_cpp_entry_validates_sizes():
    from pyquant._ext import _C

    raw = make_blocks(QType.Q4_K, 2, "normal")
    out = torch.empty(512)
    ptr, optr = raw.ctypes.data, out.data_ptr()
    with pytest.raises(KernelError, match="source has"):
        _C.dequantize(int(QType.Q4_K), ptr, raw.nbytes - 1, optr, 2048, "float32", 2, 256)
    with pytest.raises(KernelError, match="destination has"):
        _C.dequantize(int(QType.Q4_K), ptr, raw.nbytes, optr, 2047, "float32", 2, 256)
    with pytest.raises(KernelError, match="overflows"):
        _C.dequantize(int(QType.Q4_K), ptr, raw.nbytes, optr, 2048, "float32", 2**62, 256)
    with pytest.raises(KernelError, match="negative"):
        _C.dequantize(int(QType.Q4_K), ptr, raw.nbytes, optr, 2048, "float32", -1, 256)
    with pytest.raises(KernelError, match="unknown ggml type"):
        _C.dequantize(4, ptr, raw.nbytes, optr, 2048, "float32", 2, 256)


def test_input_forms():
    raw = make_blocks(QType.Q8_0, 6, "normal")
    want = pyquant.dequantize(raw, QType.Q8_0, (2, 96))
    assert torch.equal(pyquant.dequantize(raw.tobytes(), 8, [2, 96]), want)
    assert torch.equal(pyquant.dequantize(torch.from_numpy(raw).reshape(2, -1), "Q8_0", (2, 96)), want)
    assert torch.equal(pyquant.dequantize(raw, "Q8_0", (2, 96), backend="reference"), want)
    out = torch.empty(2, 96)
    assert pyquant.dequantize(raw, "Q8_0", (2, 96), out=out) is out and torch.equal(out, want)
    f16 = torch.randn(3, 5).half()
    assert torch.equal(pyquant.dequantize(f16, "F16", (3, 5)), f16.float())  # non-uint8 tensors: their bytes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_outputs_identical_on_both_isas(dtype):
    """The driver's float32 -> half conversion, NaN payloads included, is the same on both paths;
    F32 data with random bits reaches every rounding case (subnormals, overflow, ties, NaNs)."""
    from pyquant._ext import _C

    if not _C.cpu_has_avx2():
        pytest.skip("CPU has no AVX2")
    raw = np.random.default_rng(9).integers(0, 256, 4 * 20011, dtype=np.uint8)
    raw[:8] = np.array([0x7F800001, 0x477FF000], dtype="<u4").view(np.uint8)  # sNaN; rounds to f16 inf
    before = _C.active_isa()
    try:
        results = []
        for isa in ("scalar", "avx2"):
            _C.set_isa(isa)
            results.append(pyquant.dequantize(raw, "F32", (20011,), dtype=dtype).view(torch.int16))
    finally:
        _C.set_isa(before)
    assert torch.equal(results[0], results[1])
