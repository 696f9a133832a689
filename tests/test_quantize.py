"""pyquant.quantize: bytes identical to llama.cpp's ggml_quantize_chunk (no imatrix).

Oracles: (1) llama.cpp's own ggml-quants.c, compiled at test time from PyPI's llama-cpp-python
sdist (tests/oracle/ggml_oracle.py); (2) gguf-py's numpy quantizers for the legacy types;
(3) sha256 digests of the llama.cpp bytes for seeded inputs (tests/data/quantize_golden.json,
written by tools/gen_quantize_golden.py with oracle (1)), which need neither network nor compiler.

FP contraction: llama.cpp builds ggml-quants.c into ggml-base for the baseline x86-64 ISA (GGML_NATIVE's
-march only reaches ggml-cpu), so no FMA instruction exists to fuse into, and our kernels are built
with -ffp-contract=off: same bytes. Building the oracle with `-march=haswell -ffp-contract=fast`
(PYQUANT_ORACLE_CFLAGS; gcc's default contraction in gnu mode) changes 10/32, 3/32 and 11/32
super-blocks of Q2_K, Q4_K, Q5_K on N(0,1) rows of 4096 -- the make_qkx2_quants search they share
(`sum_x += w*x`, `best_error += w*diff`, `scale*L + min`) -- while the legacy types, Q3_K, Q6_K and
IQ4 were unchanged on that data. An ARM64 llama.cpp build (FMA in the base ISA) would therefore
write different Q2_K/Q4_K/Q5_K bytes than its x86 builds; we match x86.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest
import torch

import pyquant
from pyquant.errors import KernelError, UnsupportedQTypeError
from pyquant.qtypes import QType, info, row_bytes
from pyquant.quantization import QUANTIZABLE

DATA = pathlib.Path(__file__).parent / "data"
LEGACY = [QType.Q4_0, QType.Q4_1, QType.Q5_0, QType.Q5_1, QType.Q8_0]


def make_case(name: str, cols: int, seed: int = 0) -> np.ndarray:
    """Deterministic test matrices (numpy's PCG64 streams are identical on every platform)."""
    rng = np.random.default_rng([seed, cols, sum(map(ord, name))])
    rows = max(2, 8192 // cols)
    if name == "normal":
        return rng.standard_normal((rows, cols)).astype(np.float32)
    if name == "heavy_tailed":  # Student-t, df=2: outliers dominate most blocks
        return rng.standard_t(2, (rows, cols)).astype(np.float32)
    if name == "row_scales":  # one magnitude per row from 1e-6 to 1e6
        scale = np.logspace(-6, 6, rows, dtype=np.float64)[:, None]
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    if name == "all_equal":
        return np.repeat(rng.standard_normal((rows, 1)), cols, axis=1).astype(np.float32)
    if name == "zeros":
        return np.zeros((rows, cols), np.float32)
    if name == "sparse":  # mostly exact zeros, some blocks all-zero, signs mixed
        x = rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < 0.05)
        return x.astype(np.float32)
    if name == "signed_zeros":  # +0/-0 mixes: upstream keeps the first extreme, so zero signs matter
        x = rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < 0.02)
        x = np.where(rng.random((rows, cols)) < 0.5, x, -x)  # -0.0 where x was +0.0
        x[:, :64] = np.where(rng.random((rows, 64)) < 0.5, 0.0, -0.0)  # whole zero blocks
        return x.astype(np.float32)
    if name == "tiny":  # scales underflow fp16 (d stored as 0 or subnormal)
        return (rng.standard_normal((rows, cols)) * 1e-30).astype(np.float32)
    if name == "subnormal":  # float32 subnormals: 1/d overflows to inf
        return (rng.standard_normal((rows, cols)) * 1e-40).astype(np.float32)
    if name == "huge":  # scales overflow fp16 to inf
        return (rng.standard_normal((rows, cols)) * 1e30).astype(np.float32)
    if name == "fp16_edge":  # block maxima around the fp16 limit 65504
        return (rng.standard_normal((rows, cols)) * 3e4 * 127 / 4).astype(np.float32)
    if name == "uniform_int":  # small integers: many exact ties in every rounding step
        return rng.integers(-8, 8, (rows, cols)).astype(np.float32)
    if name == "nonfinite":  # NaN / inf sprinkled in: ggml has no error path, bytes must still match
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        x[0, 3] = np.nan
        x[1, 7] = np.inf
        x[1 % rows, cols // 2] = -np.inf
        x[-1, :] = np.nan
        return x
    raise KeyError(name)


CASES = ["normal", "heavy_tailed", "row_scales", "all_equal", "zeros", "sparse", "signed_zeros", "tiny", "subnormal", "huge",
         "fp16_edge", "uniform_int", "nonfinite"]


def quantize_np(x: np.ndarray, qt) -> np.ndarray:
    return pyquant.quantize(torch.from_numpy(x), qt).numpy()


@pytest.fixture(scope="session")
def oracle():
    from tests.oracle.ggml_oracle import OracleUnavailable, load

    try:
        return load()
    except OracleUnavailable as e:  # offline / no compiler: the golden digests still run
        if os.environ.get("PYQUANT_REQUIRE_ORACLE"):
            raise
        pytest.skip(f"llama.cpp oracle unavailable: {e}")


@pytest.mark.parametrize("qt", QUANTIZABLE, ids=lambda q: q.name)
@pytest.mark.parametrize("case", CASES)
def test_bytes_match_llama_cpp(oracle, qt, case, isa):
    for cols in (256, 512, 4096):
        x = make_case(case, cols)
        ours = quantize_np(x, qt)
        ref = oracle.quantize(int(qt), x, row_bytes(qt, cols))
        if not np.array_equal(ours, ref):
            bad = np.argwhere(ours != ref)
            r, c = bad[0]
            pytest.fail(f"{qt.name}/{case}/{cols} ({isa}): {len(bad)} bytes differ, first at row {r} byte {c} "
                        f"(block {c // info(qt).type_size}): ours {ours[r, c]} llama.cpp {ref[r, c]}")


@pytest.mark.parametrize("qt", QUANTIZABLE, ids=lambda q: q.name)
def test_random_blocks_match_llama_cpp(oracle, qt, isa):
    """Many independent blocks with random per-block scale and shape: hits rare search branches."""
    rng = np.random.default_rng(int(qt))
    bs = 256
    n = 96
    base = rng.standard_normal((n, bs)) * rng.choice([1.0, 3.0], (n, bs), p=[0.9, 0.1])
    skew = rng.random((n, 1)) * 2 - 0.5  # shifts some blocks to all-positive / mostly-negative
    scale = 10.0 ** rng.uniform(-8, 4, (n, 1))
    x = ((base + skew * np.abs(base).max(1, keepdims=True)) * scale).astype(np.float32)
    assert np.array_equal(quantize_np(x, qt), oracle.quantize(int(qt), x, row_bytes(qt, bs)))
    # block counts that are not a multiple of the 8-lane groups / thread chunks (tails)
    for rows, nblk in ((1, 1), (3, 3), (5, 7), (41, 13)):
        cols = nblk * info(qt).block_size
        x = (rng.standard_normal((rows, cols)) * scale[:rows]).astype(np.float32)
        assert np.array_equal(quantize_np(x, qt), oracle.quantize(int(qt), x, row_bytes(qt, cols))), (rows, nblk)


def test_golden_digests(isa):
    """llama.cpp's bytes for seeded inputs, as sha256 (runs without network or compiler)."""
    golden = json.loads((DATA / "quantize_golden.json").read_text())
    assert golden["source"].startswith("llama-cpp-python==")
    checked = 0
    for key, digest in golden["digests"].items():
        qname, case, cols = key.split("/")
        x = make_case(case, int(cols))
        assert hashlib.sha256(quantize_np(x, qname).tobytes()).hexdigest() == digest, key
        checked += 1
    assert checked == len(QUANTIZABLE) * len(golden["cases"]) * len(golden["cols"])


@pytest.mark.parametrize("qt", LEGACY, ids=lambda q: q.name)
@pytest.mark.parametrize("case", ["normal", "heavy_tailed", "row_scales", "all_equal", "zeros", "tiny", "huge"])
def test_legacy_match_gguf_py(qt, case):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    x = make_case(case, 512)
    ref = gq.quantize(x, GGMLQuantizationType(int(qt)))
    assert np.array_equal(quantize_np(x, qt), ref)


# Signal-to-quantization-noise floors (dB) for N(0,1) weights, 1.5 dB under the values measured on
# this seeded data (Q4_0 21.5, Q4_1 22.2, Q5_0 27.4, Q5_1 28.4, Q8_0 45.5, Q2_K 10.6, Q3_K 16.4,
# Q4_K 22.9, Q5_K 28.8, Q6_K 35.2, IQ4_NL 22.5, IQ4_XS 22.4): catches a scale or packing bug that
# an oracle match alone would not explain (e.g. a decoder and encoder wrong the same way).
SQNR_FLOOR = {
    QType.Q4_0: 20.0, QType.Q4_1: 20.7, QType.Q5_0: 25.9, QType.Q5_1: 26.9, QType.Q8_0: 44.0, QType.Q2_K: 9.1,
    QType.Q3_K: 14.9, QType.Q4_K: 21.4, QType.Q5_K: 27.3, QType.Q6_K: 33.7, QType.IQ4_NL: 21.0, QType.IQ4_XS: 20.9,
}


@pytest.mark.parametrize("qt", QUANTIZABLE, ids=lambda q: q.name)
def test_roundtrip_sqnr(qt):
    gq = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    x = make_case("normal", 4096)[:16]
    q = quantize_np(x, qt)
    y = gq.dequantize(q, GGMLQuantizationType(int(qt))).reshape(x.shape)
    sqnr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x - y).astype(np.float64) ** 2))
    assert sqnr > SQNR_FLOOR[qt], f"{qt.name}: SQNR {sqnr:.1f} dB"
    assert sqnr < SQNR_FLOOR[qt] + 4, f"{qt.name}: SQNR {sqnr:.1f} dB is suspiciously high (floor stale?)"


@pytest.mark.parametrize("qt", [QType.Q8_0, QType.Q4_K, QType.IQ4_XS], ids=lambda q: q.name)
def test_thread_count_does_not_change_bytes(qt):
    x = torch.from_numpy(make_case("heavy_tailed", 512))
    one = pyquant.quantize(x, qt, nthreads=1)
    assert torch.equal(one, pyquant.quantize(x, qt, nthreads=2))
    assert torch.equal(one, pyquant.quantize(x, qt, nthreads=7))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_quantized_as_their_float32_values(dtype):
    x = torch.from_numpy(make_case("normal", 256)).to(dtype)
    assert torch.equal(pyquant.quantize(x, "Q4_K"), pyquant.quantize(x.float(), "Q4_K"))


def test_1d_and_names_and_ids():
    x = torch.from_numpy(make_case("normal", 256)[0])
    a = pyquant.quantize(x, "q6_k")
    assert a.shape == (1, 210) and a.dtype == torch.uint8
    assert torch.equal(a, pyquant.quantize(x[None], QType.Q6_K))
    assert torch.equal(a, pyquant.quantize(x, 14))
    empty = pyquant.quantize(torch.zeros(0, 64), "Q8_0")
    assert empty.shape == (0, 68)


def test_non_contiguous_input():
    x = torch.from_numpy(make_case("normal", 512))
    t = x.t().contiguous().t()  # same values, column-major storage
    assert not t.is_contiguous()
    assert torch.equal(pyquant.quantize(t, "Q5_K"), pyquant.quantize(x, "Q5_K"))


def test_bad_arguments():
    with pytest.raises(UnsupportedQTypeError, match="multiple of 256"):
        pyquant.quantize(torch.zeros(2, 288), "Q4_K")
    with pytest.raises(UnsupportedQTypeError, match="no quantizer for IQ2_XXS"):
        pyquant.quantize(torch.zeros(2, 256), "IQ2_XXS")
    with pytest.raises(UnsupportedQTypeError, match="float32, float16 or bfloat16"):
        pyquant.quantize(torch.zeros(2, 256, dtype=torch.int32), "Q8_0")
    with pytest.raises(ValueError, match="1-D or 2-D"):
        pyquant.quantize(torch.zeros(2, 2, 256), "Q8_0")


def test_kernel_validates_sizes():
    from pyquant._ext import _C

    x = torch.zeros(4, 256)
    out = torch.empty(4, 144, dtype=torch.uint8)
    args = (x.data_ptr(), x.numel() * 4, 4, 256, out.data_ptr())
    _C.quantize(12, *args, out.numel())
    with pytest.raises(KernelError, match="destination has 575 bytes, needs 576"):
        _C.quantize(12, *args, out.numel() - 1)
    with pytest.raises(KernelError, match="source has 4095 bytes"):
        _C.quantize(12, x.data_ptr(), 4095, 4, 256, out.data_ptr(), out.numel())
    with pytest.raises(KernelError, match="not a multiple of the block size"):
        _C.quantize(12, x.data_ptr(), 4096, 4, 255, out.data_ptr(), out.numel())
    with pytest.raises(KernelError, match="no quantizer"):
        _C.quantize(16, *args, out.numel())
    with pytest.raises(KernelError, match="overflows"):
        _C.quantize(8, x.data_ptr(), 4096, 1 << 40, 1 << 30, out.data_ptr(), out.numel())
    with pytest.raises(KernelError, match="negative"):
        _C.quantize(8, x.data_ptr(), 4096, -1, 32, out.data_ptr(), out.numel())


@pytest.mark.skipif(not os.environ.get("PYQUANT_SLOW"), reason="builds a second oracle (PYQUANT_SLOW=1)")
def test_fma_contracted_oracle_differs(monkeypatch):
    """Documents why the build flags matter: a FMA-contracting build of ggml-quants.c is not the
    reference. Our bytes equal the baseline build; with contraction some k-quant bytes move."""
    from tests.oracle import ggml_oracle

    monkeypatch.setenv("PYQUANT_ORACLE_CFLAGS", "-march=haswell -ffp-contract=fast")
    fused = ggml_oracle.load()
    x = make_case("normal", 4096)
    ours = quantize_np(x, QType.Q4_K)
    assert not np.array_equal(ours, fused.quantize(int(QType.Q4_K), x, row_bytes(QType.Q4_K, 4096)))


_SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, 65504.0, -65520.0,
            6e-8, float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize("qt", QUANTIZABLE, ids=lambda q: q.name)
def test_fuzz_special_values_match_llama_cpp(oracle, qt, isa):
    """Blocks mixing signed zeros, subnormals, fp16 limits, float32 extremes, inf and NaN with
    ordinary values at many magnitudes: every comparison / cast corner must take llama.cpp's branch."""
    rng = np.random.default_rng(1000 + int(qt))
    special = np.array(_SPECIAL, dtype=np.float32)
    n_blocks = 64  # 64 rows of 256 values, each with its own mix
    x = rng.standard_normal((n_blocks, 256)).astype(np.float32)
    with np.errstate(all="ignore"):
        _mix_specials(x, rng, special)
    with np.errstate(all="ignore"):
        ref = oracle.quantize(int(qt), x, row_bytes(qt, 256))
    ours = quantize_np(x, qt)
    bad = [r for r in range(n_blocks) if not np.array_equal(ours[r], ref[r])]
    assert not bad, f"{qt.name} ({isa}): rows {bad} differ; first: {x[bad[0]].tolist()}"


def _mix_specials(x, rng, special):
    for r in range(x.shape[0]):
        p_special = rng.choice([0.0, 0.01, 0.1, 0.5, 1.0])
        mask = rng.random(256) < p_special
        x[r, mask] = rng.choice(special, mask.sum())
        x[r] *= np.float32(10.0 ** rng.uniform(-40, 38))
        if r % 7 == 0:  # a single outlier
            x[r, rng.integers(256)] = rng.choice(special)
