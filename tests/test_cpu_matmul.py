"""CPU fused dequant-matmul kernels (_C.linear over a _C.Weight: GGUF types, int4, int8).

Oracle: float64 x @ dequantize(W).T, with gguf.quants.dequantize for GGUF types and numpy for
int4/int8. Bounds per path (relative Frobenius error of y):
  * float paths (float-activation GEMV, GEMM, F32/F16/BF16 weights): 1e-5 (fp32 accumulation
    over k <= 1024 terms of unit-variance products: ~sqrt(k) * 2^-24 ~ 1e-6, with margin);
  * int8-activation GEMV: activations rounded to d*q with |error| <= d/2, d = amax/127 per block
    of 32 (X32 types) or 256 (K-quants, IQ4_XS): rms error amax/(127*sqrt(12)), 0.6-0.8% of the
    rms for Gaussian x; bound 1.5e-2 (X32) and 2e-2 (X256). On top, the int8 path is checked
    against float64 x_q @ W.T with x_q from a numpy emulation of the quantizer (bit-identical by
    construction: same float32 ops, round half to even): bound 1e-5, so a kernel bug cannot hide
    inside the quantization error.
  * int8x2 GEMV (the default): x = d1*q1 + r, r on the fixed grid d2 = d1/256 (|r| <= d1/2, so
    |q2| <= 128, clipped to 127), both rows dotted: the error is the second rounding's, at most
    1/256 of the one-pass error: bound 1.5e-2 / 256 -> 1e-4 (X32) and 2e-2 / 256 -> 1e-4 (X256),
    and again 1e-5 against the numpy emulation of both passes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

gq = pytest.importorskip("gguf.quants")
from gguf import GGMLQuantizationType as T  # noqa: E402

from pyquant._ext import _C  # noqa: E402
from pyquant.errors import KernelError  # noqa: E402

# Offsets of the fp16 scale fields inside each block: random bytes elsewhere, sane scales here.
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.IQ4_NL: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_XS: [0],
}
X256 = {T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS}
FLOAT_TYPES = [T.F32, T.F16, T.BF16]
QUANT_TYPES = list(FP16_FIELDS)


@pytest.fixture
def threads():
    before = _C.get_num_threads()
    yield
    _C.set_num_threads(before)


@pytest.fixture
def act_mode():
    before = _C.get_matmul_act()
    yield _C.set_matmul_act
    _C.set_matmul_act(before)


def rand_gguf(t, n, k, rng):
    """Random valid weight bytes [n, row_bytes] of type t (all bit patterns, sane fp16 scales)."""
    if t == T.F32:
        return rng.standard_normal((n, k)).astype(np.float32).view(np.uint8)
    if t == T.F16:
        return rng.standard_normal((n, k)).astype(np.float16).view(np.uint8)
    if t == T.BF16:
        return torch.randn(n, k, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30)))).to(
            torch.bfloat16).view(torch.uint8).numpy()
    bs, ts = gq.GGML_QUANT_SIZES[t]
    b = rng.integers(0, 256, (n * (k // bs), ts), dtype=np.uint8)
    for off in FP16_FIELDS[t]:
        b[:, off:off + 2] = rng.uniform(0.002, 0.02, (len(b), 1)).astype(np.float16).view(np.uint8)
    return b.reshape(n, -1)


def dequant_gguf(t, w, n, k):
    return gq.dequantize(w, t).reshape(n, k).astype(np.float64)


def rand_int4(n, k, gs, rng):
    q = rng.integers(0, 16, (n, k), dtype=np.uint8)
    qr = q.reshape(n, k // 32, 2, 16)  # within each 32: byte j = element j | element j+16 << 4
    packed = (qr[:, :, 0, :] | (qr[:, :, 1, :] << 4)).reshape(n, k // 2).astype(np.uint8)
    scales = rng.uniform(0.01, 0.1, (n, k // gs)).astype(np.float32)
    mins = (-8 * scales * rng.uniform(0.5, 1.5, (n, k // gs))).astype(np.float32)
    W = q.astype(np.float64) * np.repeat(scales, gs, 1) + np.repeat(mins, gs, 1)
    return packed, scales, mins, W


def rand_int8(n, k, rng):
    q = rng.integers(-128, 128, (n, k), dtype=np.int8)
    scales = rng.uniform(0.001, 0.01, n).astype(np.float32)
    return q, scales, q.astype(np.float64) * scales[:, None].astype(np.float64)


def ptr(a):
    if isinstance(a, np.ndarray):
        return a.ctypes.data, a.nbytes
    return a.data_ptr(), a.numel() * a.element_size()


def call(weight, x, bias=None, nthreads=0):
    """_C.linear(weight, x) -> y [m, n] in x's dtype."""
    m = x.shape[0]
    y = torch.empty(m, weight.n, dtype=x.dtype)
    bp, bn = ptr(bias) if bias is not None else (0, 0)
    _C.linear(weight, *ptr(x), str(x.dtype).split(".")[1], m, *ptr(y), bp, bn, nthreads)
    return y


def call_gguf(t, w, n, k, x, bias=None, nthreads=0):
    return call(_C.Weight(int(t), w, n, k), x, bias, nthreads)


def call_int4(packed, scales, mins, gs, n, k, x, bias=None, nthreads=0):
    return call(_C.Weight(1000, packed, n, k, scales, mins, gs), x, bias, nthreads)


def call_int8(q, scales, n, k, x, bias=None, nthreads=0):
    return call(_C.Weight(1001, q.view(np.uint8), n, k, scales), x, bias, nthreads)


def quantize_acts(x, block, comp=False):
    """numpy emulation of act_quant.h: float64 values d*q the int8 path really multiplies; comp:
    the int8x2 path's d1*q1 + d2*q2, q2 = rint((x - d1*q1) * 256/d1) clipped to +-127 (float32 ops),
    d2 = d1/256 (quant_residual)."""
    q, d = _quant_blocks(x, block)
    m, k = x.shape
    kp = q.shape[1]
    dx = np.repeat(d, block, 1)                                     # [m, kp] float32
    one = q.astype(np.float64) * dx.astype(np.float64)
    if not comp:
        return one[:, :k]
    xp = np.zeros((m, kp), np.float32)
    xp[:, :k] = x
    r = (xp - dx * q).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        idv = np.where(dx != 0, np.float32(256) / dx, np.float32(0)).astype(np.float32)
    q2 = np.clip(np.rint((r * idv).astype(np.float32)), -127, 127)
    q2[:, k:] = 0
    d2 = (dx * np.float32(1 / 256)).astype(np.float32)
    return (one + q2.astype(np.float64) * d2.astype(np.float64))[:, :k]


def _quant_blocks(x, block):
    """(q [m, kp] float32 integers, d [m, kp/block] float32) as act_quant.h computes them."""
    m, k = x.shape
    kp = -(-k // 256) * 256
    xp = np.zeros((m, kp), np.float32)
    xp[:, :k] = x
    b = xp.reshape(m, kp // block, block)
    amax = np.abs(b).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        idv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint(b * idv).astype(np.float32)
    d = (amax / np.float32(127)).astype(np.float32)
    return q.reshape(m, kp), d.reshape(m, kp // block)


def rel(y, ref):
    y = y.double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, np.float64)
    return np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30)


def check(y, x, W, kind, block=32, float_bound=1e-5):
    """kind: 'float', 'int8' or 'int8x2' (then block is the activation block: 32 or 256)."""
    x64 = x.double().numpy()
    ref = x64 @ W.T
    y = y.double().numpy()
    if kind == "float":
        assert rel(y, ref) <= float_bound, rel(y, ref)
    else:
        emul = quantize_acts(x.float().numpy(), block, comp=kind == "int8x2") @ W.T
        assert rel(y, emul) <= 1e-5, ("vs emulated activation quantization", rel(y, emul))
        bound = 1e-4 if kind == "int8x2" else 2e-2 if block == 256 else 1.5e-2
        assert rel(y, ref) <= bound, rel(y, ref)


def expected_kind(m, kind="gguf", qtype=0):
    path = _C.matmul_path(kind, int(qtype), m)
    return "int8x2" if "-int8x2:" in path else "int8" if "-int8:" in path else "float"   # gemv- or gemm-


INT8_MODES = ["int8", "int8x2"]


MS = [1, 2, 3, 5, 8, 16, 17, 64, 130, 520]  # crosses every type's GEMV/GEMM switch (16..512)


@pytest.mark.parametrize("mode", INT8_MODES)
@pytest.mark.parametrize("t", QUANT_TYPES + FLOAT_TYPES, ids=lambda t: t.name)
def test_gguf_types_all_m(t, isa, mode, act_mode):
    act_mode(mode)
    rng = np.random.default_rng(int(t) * 7 + (isa == "avx2"))
    bs = gq.GGML_QUANT_SIZES[t][0]
    k = 512 if bs == 256 else 320  # 320: a partial last 256-chunk for the 32-block types
    n = 37  # not a multiple of 8, 16 or the thread count
    w = rand_gguf(t, n, k, rng)
    W = dequant_gguf(t, w, n, k)
    for m in MS:
        x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
        y = call_gguf(t, w, n, k, x)
        check(y, x, W, expected_kind(m, "gguf", t), 256 if t in X256 else 32)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_float_activation_path(t, isa, act_mode):
    act_mode("float")
    rng = np.random.default_rng(100 + int(t))
    bs = gq.GGML_QUANT_SIZES[t][0]
    n, k = 19, bs  # K of exactly one block
    w = rand_gguf(t, n, k, rng)
    W = dequant_gguf(t, w, n, k)
    for m in (1, 4, 7):
        x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
        check(call_gguf(t, w, n, k, x), x, W, "float")


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_one_block_int8_path(t, isa, act_mode):
    act_mode("int8")
    rng = np.random.default_rng(200 + int(t))
    bs = gq.GGML_QUANT_SIZES[t][0]
    n, k = 9, bs
    w = rand_gguf(t, n, k, rng)
    W = dequant_gguf(t, w, n, k)
    x = torch.from_numpy(rng.standard_normal((3, k)).astype(np.float32))
    check(call_gguf(t, w, n, k, x), x, W, "int8", 256 if t in X256 else 32)


@pytest.mark.parametrize("mode", INT8_MODES)
@pytest.mark.parametrize("gs", [32, 64, 128])
def test_int4(gs, isa, mode, act_mode):
    act_mode(mode)
    rng = np.random.default_rng(gs)
    n, k = 29, 384
    packed, scales, mins, W = rand_int4(n, k, gs, rng)
    for m in (1, 3, 8, 17, 64, 130):   # 130: the int8 GEMM in both modes
        x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
        check(call_int4(packed, scales, mins, gs, n, k, x), x, W, expected_kind(m, "int4"))


@pytest.mark.parametrize("mode", INT8_MODES)
@pytest.mark.parametrize("k", [32, 200, 512])
def test_int8(k, isa, mode, act_mode):
    act_mode(mode)
    rng = np.random.default_rng(k)
    n = 23
    q, scales, W = rand_int8(n, k, rng)
    for m in (1, 2, 5, 16, 17, 40):
        x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
        check(call_int8(q, scales, n, k, x), x, W, expected_kind(m, "int8"))


@pytest.mark.parametrize("t", [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS, T.F16],
                         ids=lambda t: t.name)
def test_isas_agree(t):
    """The AVX2 path against the scalar one on the same inputs (same activation quantization)."""
    if not _C.cpu_has_avx2():
        pytest.skip("no AVX2")
    rng = np.random.default_rng(300 + int(t))
    n, k = 45, 768
    w = rand_gguf(t, n, k, rng)
    before = _C.active_isa()
    try:
        for m in (1, 6, 33):
            x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
            _C.set_isa("scalar")
            ys = call_gguf(t, w, n, k, x).double().numpy()
            _C.set_isa("avx2")
            ya = call_gguf(t, w, n, k, x).double().numpy()
            # Q8_0 past 16 rows where the VNNI build runs: its int8 GEMM (int8x2 activations) against
            # the scalar ISA's float GEMM (exact ones): int8x2's bound, as in check()
            vnni_q8 = t == T.Q8_0 and m > 16 and _C.get_vnni()
            assert rel(ya, ys) <= (1e-4 if vnni_q8 else 1e-5)
    finally:
        _C.set_isa(before)


@pytest.mark.parametrize("k", [64, 300])
def test_int8x2_activations_are_the_emulated_ones_on_every_isa(k, isa, act_mode):
    """int8x2's two rows (act_quant.h: q1, then the residual q2 on the grid d1/256, its AVX2 loop
    written with the scalar one's IEEE ops) read back through an identity int8 weight: y_j = x's
    reconstruction d1*q1 + d2*q2 at j, which must equal the numpy emulation to well under one step
    of q2 (d2 = d1/256) on each ISA -- a single q2 off by one fails. k = 300: a partial block."""
    act_mode("int8x2")
    rng = np.random.default_rng(k)
    eye = np.eye(k, dtype=np.int8)
    ones = np.ones(k, np.float32)
    for m in (1, 5):
        x = rng.standard_normal((m, k)).astype(np.float32)
        x[0, : k // 3] *= 40   # blocks of very different scales
        want = quantize_acts(x, 32, comp=True)
        q, d = _quant_blocks(x, 32)
        d2 = np.repeat(d, 32, 1)[:, :k].astype(np.float64) / 256
        y = call_int8(eye, ones, k, k, torch.from_numpy(x)).double().numpy()
        assert np.all(np.abs(y - want) <= d2 / 8 + 1e-6 * np.abs(want)), (m, isa)


@pytest.mark.parametrize("m", [1, 5, 40])
def test_threads_bias_and_half_dtypes(m, isa, threads):
    rng = np.random.default_rng(m)
    t, n, k = T.Q4_K, 21, 512
    w = rand_gguf(t, n, k, rng)
    W = dequant_gguf(t, w, n, k)
    bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
    y1 = call_gguf(t, w, n, k, x, bias, nthreads=1)
    y2 = call_gguf(t, w, n, k, x, bias, nthreads=2)
    assert torch.equal(y1, y2)  # every output is computed by one thread the same way
    _C.set_num_threads(3)
    assert torch.equal(call_gguf(t, w, n, k, x, bias), y1)  # nthreads=0: the global setting
    y_nobias = call_gguf(t, w, n, k, x).double().numpy()
    np.testing.assert_allclose(y1.double().numpy() - y_nobias, np.broadcast_to(bias.double().numpy(), (m, n)),
                               rtol=0, atol=1e-4)
    for dt in (torch.float16, torch.bfloat16):
        xh = x.to(dt)
        yh = call_gguf(t, w, n, k, xh, bias)
        assert yh.dtype == dt
        ref = xh.double().numpy() @ W.T + bias.double().numpy()
        # Output rounding to 8 (bf16) / 11 (fp16) bits on top of the path's own bound.
        assert rel(yh, ref) <= (2e-2 if expected_kind(m, "gguf", t) == "int8" else 0) + (4e-3 if dt == torch.bfloat16 else 1e-3)


def test_m_zero_and_nonfinite(isa):
    rng = np.random.default_rng(5)
    t, n, k = T.Q8_0, 8, 64
    w = rand_gguf(t, n, k, rng)
    assert call_gguf(t, w, n, k, torch.empty(0, k)).shape == (0, n)
    x = torch.from_numpy(rng.standard_normal((2, k)).astype(np.float32))
    x[1, 3] = float("nan")
    y = call_gguf(t, w, n, k, x)
    assert torch.isfinite(y[0]).all() and torch.isnan(y[1]).all()


def test_validation_errors():
    """The weight is checked once, when its _C.Weight is made (sizes from the buffers themselves);
    each call checks the activation side. Every inconsistency is a KernelError naming it."""
    rng = np.random.default_rng(1)
    n, k, m = 8, 64, 2
    w = rand_gguf(T.Q4_0, n, k, rng)
    x = torch.zeros(m, k)
    y = torch.zeros(m, n)
    xp, xn = ptr(x)
    yp, yn = ptr(y)
    weight = _C.Weight(int(T.Q4_0), w, n, k)
    assert (weight.n, weight.k, weight.qtype, weight.nbytes) == (n, k, int(T.Q4_0), w.nbytes)
    good = dict(weight=weight, x_ptr=xp, x_nbytes=xn, x_dtype="float32", m=m, y_ptr=yp, y_nbytes=yn, bias_ptr=0,
                bias_nbytes=0)
    _C.linear(**good)
    for change, msg in [(dict(x_nbytes=xn - 4), "x has"), (dict(y_nbytes=yn - 4), "y has"),
                        (dict(bias_ptr=yp, bias_nbytes=4 * n - 4), "bias has"), (dict(m=-1), "m (rows of x)"),
                        (dict(m=1 << 30, x_nbytes=1 << 62), "y has"), (dict(x_dtype="float64"), "x_dtype"),
                        (dict(x_ptr=0), "null x"), (dict(weight=w), "incompatible function arguments")]:
        with pytest.raises((KernelError, TypeError), match=msg.replace("(", r"\(").replace(")", r"\)")):
            _C.linear(**{**good, **change})

    for args, msg in [((int(T.Q4_0), w[:-1], n, k), "data has"),
                      ((int(T.Q4_0), w, n, 48), "not a multiple"),
                      ((int(T.Q4_0), w, n, 0), "k (input features)"),
                      ((int(T.Q4_0), w, 1 << 40, k), "n (output features)"),
                      ((int(T.IQ2_XXS), w, n, 256), "no CPU kernel for type id 16"),
                      ((12345, w, n, k), "no CPU kernel"),
                      ((int(T.Q4_0), w.reshape(8, -1)[:, ::2], n, 32), "C-contiguous"),
                      ((int(T.Q4_0), 12345, n, k), "must be a C-contiguous buffer")]:
        with pytest.raises(KernelError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            _C.Weight(*args)

    packed, scales, mins, _ = rand_int4(n, 128, 64, rng)
    _C.Weight(1000, packed, n, 128, scales, mins, 64)
    for args, msg in [((packed, n, 128, scales, mins, 16), "group_size must be"),
                      ((packed, n, 128, scales, mins, 256), "group_size must be"),
                      ((packed, n, 128, scales[:, :-1].copy(), mins, 64), "scales/mins have"),
                      ((packed, n, 128, scales, None, 64), "needs scales and mins"),
                      ((packed[:-1], n, 128, scales, mins, 64), "data has"),
                      ((packed, n, 96, scales, mins, 64), "not a multiple of group_size")]:
        with pytest.raises(KernelError, match=msg):
            _C.Weight(1000, *args)

    q8, s8, _ = rand_int8(n, k, rng)
    _C.Weight(1001, q8.view(np.uint8), n, k, s8)
    for args, msg in [((q8.view(np.uint8), n, k, s8[:-1]), "scales have"), ((q8.view(np.uint8)[:-1], n, k, s8), "data has"),
                      ((q8.view(np.uint8), n, k), "needs scales")]:
        with pytest.raises(KernelError, match=msg):
            _C.Weight(1001, *args)

    with pytest.raises(KernelError, match="mode must be"):
        _C.set_matmul_act("fp8")
    with pytest.raises(KernelError, match="kind must be"):
        _C.matmul_path("awq", 2, 1)


def test_matmul_path_explains(act_mode):
    act_mode("auto")  # also when PYQUANT_MATMUL_ACT=float is set: auto = int8x2
    assert "gemv-int8x2" in _C.matmul_path("gguf", int(T.Q4_K), 1)
    g = _C.gemm_min_m("int8")      # int8x2 streams 2m rows: it hands over to the GEMM at half the m
    assert "gemv-int8x2" in _C.matmul_path("int8", 0, g // 2)
    assert "gemm" in _C.matmul_path("int8", 0, g // 2 + 1)
    act_mode("int8")
    assert "gemv-int8:" in _C.matmul_path("gguf", int(T.Q4_K), 1)
    assert "per 256" in _C.matmul_path("gguf", int(T.Q4_K), 1)
    assert "per 32" in _C.matmul_path("int4", 0, 8)
    assert "gemm" in _C.matmul_path("int8", 0, _C.gemm_min_m("int8") + 1)
    assert "gemv" in _C.matmul_path("int8", 0, _C.gemm_min_m("int8"))
    assert "gemv-float" in _C.matmul_path("gguf", int(T.F16), 1)
    assert _C.matmul_path("gguf", int(T.IQ2_XXS), 1).startswith("unsupported")
    act_mode("float")
    assert "gemv-float" in _C.matmul_path("gguf", int(T.Q4_0), 1)


def test_bandwidth_probe():
    if not _C.cpu_has_avx2():
        pytest.skip("no AVX2")
    gbs = _C.bandwidth_probe(8 << 20, 1, 1)
    assert 0.1 < gbs < 10000
    with pytest.raises(KernelError, match="nbytes"):
        _C.bandwidth_probe(1 << 50, 1, 1)


@pytest.mark.parametrize("t", FLOAT_TYPES, ids=lambda t: t.name)
def test_float_weights_odd_k(t, isa):
    """k not a multiple of 8/16/256: the vector loops' scalar tails and the padded GEMM panels."""
    rng = np.random.default_rng(400 + int(t))
    n, k = 13, 301
    w = rand_gguf(t, n, k, rng)
    W = dequant_gguf(t, w, n, k)
    for m in (1, 3, 4, 9, 40):
        x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
        check(call_gguf(t, w, n, k, x), x, W, "float")


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_fused_matches_generic_unpack_dot(t, act_mode):
    """AVX2 fused GEMV kernels against the generic AVX2 unpack + dot path (same quantized x)."""
    if not _C.cpu_has_avx2():
        pytest.skip("no AVX2")
    act_mode("int8")
    rng = np.random.default_rng(500 + int(t))
    bs = gq.GGML_QUANT_SIZES[t][0]
    n, k = 11, 768 if bs == 256 else 352  # 352: an 8-block group plus a 3-block tail
    w = rand_gguf(t, n, k, rng)
    before = _C.active_isa()
    _C.set_isa("avx2")
    try:
        for m in (1, 3, 4, 6, 8, 13):
            x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
            yf = call_gguf(t, w, n, k, x).double().numpy()
            _C.set_matmul_fused(False)
            try:
                yg = call_gguf(t, w, n, k, x).double().numpy()
            finally:
                _C.set_matmul_fused(True)
            assert rel(yf, yg) <= 1e-5
    finally:
        _C.set_isa(before)


def test_fused_matches_generic_int4_int8(act_mode):
    if not _C.cpu_has_avx2():
        pytest.skip("no AVX2")
    act_mode("int8")
    rng = np.random.default_rng(600)
    n, k = 7, 640
    before = _C.active_isa()
    _C.set_isa("avx2")
    try:
        for gs in (32, 64, 128):
            packed, scales, mins, _ = rand_int4(n, k, gs, rng)
            q8, s8, _ = rand_int8(n, k - 3, rng)
            for m in (1, 4, 5, 8, 13):
                x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
                x8 = x[:, : k - 3].contiguous()
                outs = []
                for fused in (True, False):
                    _C.set_matmul_fused(fused)
                    outs.append((call_int4(packed, scales, mins, gs, n, k, x).double().numpy(),
                                 call_int8(q8, s8, n, k - 3, x8).double().numpy()))
                _C.set_matmul_fused(True)
                assert rel(outs[0][0], outs[1][0]) <= 1e-5 and rel(outs[0][1], outs[1][1]) <= 1e-5
    finally:
        _C.set_matmul_fused(True)
        _C.set_isa(before)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_prefetch_changes_no_bit(t, act_mode):
    """The weight-stream prefetch (set_prefetch) is a hint only: every small-m kernel gives the same
    bits with it off, at the default and far ahead (past the row's end on its last blocks)."""
    act_mode("auto")
    rng = np.random.default_rng(700 + int(t))
    n, k = 9, 768 if gq.GGML_QUANT_SIZES[t][0] == 256 else 352
    w = rand_gguf(t, n, k, rng)
    before = _C.get_prefetch()
    try:
        for m in (1, 2, 5):
            x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32))
            outs = []
            for pf in (0, 2048, 65536):
                _C.set_prefetch(pf)
                outs.append(call_gguf(t, w, n, k, x).numpy())
            assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    finally:
        _C.set_prefetch(before)
    with pytest.raises(KernelError, match="set_prefetch: bytes must be in"):
        _C.set_prefetch(-1)


def test_weight_holds_its_buffers_alive():
    """A _C.Weight owns references to the buffers it points into: with every other reference gone
    (and the allocator free to reuse the memory), its matmul still reads the original weights."""
    import gc

    rng = np.random.default_rng(7)
    n, k = 16, 128
    packed, scales, mins, W = rand_int4(n, k, 32, rng)
    x = torch.from_numpy(rng.standard_normal((1, k)).astype(np.float32))
    weight = _C.Weight(1000, packed.copy(), n, k, scales.copy(), mins.copy(), 32)
    want = call(weight, x)
    sizes = (packed.nbytes, scales.nbytes, mins.nbytes)
    del packed, scales, mins
    gc.collect()
    # same-size allocations: numpy's and malloc's caches would hand freed buffers straight back
    junk = [np.full(size, 0x77, np.uint8) for size in sizes for _ in range(32)]
    assert torch.equal(call(weight, x), want)
    del junk
    step = _C.LlmStep(1, 128, 4, 2, 32, 32, 128, 16, 8, 1e-5, 0.25)
    step.add_linear("output", -1, _C.Weight(int(T.Q8_0), rand_gguf(T.Q8_0, 16, 128, rng), 16, 128))
    gc.collect()   # the step holds the Weight, the Weight its array: nothing dangles


def test_int8_gemm_panel_sets_change_no_bit():
    """The int8 GEMM unpacks as many 8-row panels side by side as half the L2 holds
    (PYQUANT_L2_BYTES, read once per process). The set size only reorders which panel a group of
    activation rows meets first: results must be bit-identical for 1 panel (64 KiB: 32 KiB / a
    5 KiB panel at k = 512 is 6, at k = 4096 it is 0 -> 1), several, and 8, with n leaving a
    partial last set, under both ISAs' builds, int8 and int8x2."""
    import subprocess

    from child_process import child_env, child_python

    code = ("import sys, numpy as np, torch, pyquant\n"
            "from pyquant import _C\n"
            "torch.manual_seed(0)\n"
            "out = []\n"
            "for t in ('Q4_0', 'Q5_1', 'int4'):\n"
            "    for n, k in ((40, 512), (72, 4096)):\n"
            "        qt = pyquant.QTensor.quantize(torch.randn(n, k) * 0.05, t)\n"
            "        x = torch.randn(37, k) * 2\n"
            "        for mode in ('int8', 'int8x2'):\n"
            "            _C.set_matmul_act(mode)\n"
            "            out.append(pyquant.qmatmul(x, qt).numpy())\n"
            "np.save(sys.argv[1], np.concatenate([o.ravel() for o in out]))\n"
            "print(_C.l2_cache_bytes())\n")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = {}
        for vnni in ("0", "1"):
            for l2 in ("65536", "262144", str(64 << 20)):
                f = f"{d}/{vnni}-{l2}.npy"
                r = subprocess.run(child_python("-c", code, f), capture_output=True, text=True, timeout=300,
                                   env=child_env(PYQUANT_L2_BYTES=l2, PYQUANT_VNNI=vnni))
                assert r.returncode == 0, r.stderr
                assert int(r.stdout.split()[-1]) == int(l2)
                res[(vnni, l2)] = np.load(f)
        for vnni in ("0", "1"):
            base = res[(vnni, "65536")]
            for l2 in ("262144", str(64 << 20)):
                assert np.array_equal(base, res[(vnni, l2)]), (vnni, l2)
