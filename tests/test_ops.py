"""pyquant ops: accuracy of qmatmul on every path against float64 x @ dequantize(W).T (dequantize by the
external gguf package), and torch.library.opcheck on every op."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from random_weights import ENGINE_TYPES, OTHER_TYPES, oracle_dequantize, random_gguf_weight
from random_weights import assert_within_bound as _check
from random_weights import cpu_path as _cpu_path

import pyquant
from pyquant import dispatch, ops, qtypes
from pyquant._ext import _C
from pyquant.qtensor import QTensor
from pyquant.qtypes import QType

HAS_REF_DECODE = importlib.util.find_spec("pyquant.kernels.reference.dequant") is not None
FLOATS = (QType.F32, QType.F16, QType.BF16)
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _needs(qt: QType, backend: str):
    """Skip only while a piece this path needs has not landed yet (decoders from the decode work)."""
    if qt in FLOATS:
        return
    if backend == "reference" and not HAS_REF_DECODE:
        pytest.skip("pyquant.kernels.reference.dequant (torch decoders) not merged yet")
    if backend == "cpu" and not _C.has_dequantizer(int(QType.Q4_0)) and not hasattr(_C, "gguf_matmul"):
        pytest.skip("_C decoders / fused matmul not merged yet")


# the CPU engine once per code path (the scalar one is the portable fallback), then the torch reference
BACKENDS = ["cpu-avx2", "cpu-scalar", "reference"]


def _use_backend(backend: str, monkeypatch) -> str:
    name, _, isa = backend.partition("-")
    monkeypatch.setenv("PYQUANT_BACKEND", name)
    if isa:
        if isa == "avx2" and not _C.cpu_has_avx2():
            pytest.skip("CPU has no AVX2+FMA+F16C")
        _C.set_isa(isa)  # restored by _restore_isa
    return name


@pytest.fixture(autouse=True)
def _restore_isa():
    before = _C.active_isa()
    yield
    _C.set_isa(before)


def _shapes(qt: QType):
    """(lead dims, N, K): odd M, N not a multiple of 8, K of exactly one block, batched leading dims."""
    bs = qtypes.info(qt).block_size
    k1 = max(bs, 32) if qt not in FLOATS else 32
    # M = 111 passes the GEMV/GEMM switch of the CPU engine (per type, 32..96: _C.matmul_path says)
    return [((1,), 8, k1), ((3,), 13, 2 * max(bs, 32)), ((2, 3), 17, 256), ((5,), 24, 512), ((3, 37), 9, 256)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("qt", ENGINE_TYPES, ids=lambda t: t.name)
def test_gguf_qmatmul_accuracy(qt, backend, monkeypatch):
    backend = _use_backend(backend, monkeypatch)
    _needs(qt, backend)
    for i, (lead, n, k) in enumerate(_shapes(qt)):
        data = random_gguf_weight(qt, n, k, seed=i)
        w64 = oracle_dequantize(data, qt, n, k)
        qtensor = QTensor(data, qt, (n, k))
        for dtype in DTYPES:
            x = torch.randn(*lead, k, generator=torch.Generator().manual_seed(i)).to(dtype)
            bias = torch.randn(n) if i % 2 else None
            y = pyquant.qmatmul(x, qtensor, bias)
            assert y.shape == (*lead, n) and y.dtype == dtype
            path = _cpu_path(qt, x.numel() // k) if backend == "cpu" else ""
            _check(y, x, w64, f"{backend} {qt.name} {lead}x{n}x{k} {dtype}", bias, path)


@pytest.mark.skipif(not hasattr(_C, "set_matmul_act"), reason="fused CPU matmul not merged yet")
@pytest.mark.parametrize("qt", [QType.Q4_0, QType.Q5_1, QType.Q4_K, QType.Q6_K, QType.IQ4_XS, QType.INT4],
                         ids=lambda t: t.name)
def test_float_activation_gemv(qt):
    """The small-M path with float activations (set_matmul_act('float')) within the fp32 bound."""
    n, k = 21, 512
    qtensor = (QTensor.quantize(torch.randn(n, k), qt, group_size=64) if qt is QType.INT4
               else QTensor(random_gguf_weight(qt, n, k), qt, (n, k)))
    x = torch.randn(3, k)
    before = _C.get_matmul_act()
    _C.set_matmul_act("float")
    try:
        path = _cpu_path(qt, 3)
        assert "gemv-float" in path
        _check(pyquant.qmatmul(x, qtensor), x, qtensor.dequantize().double(), f"float act {qt.name}", path=path)
    finally:
        _C.set_matmul_act(before)


@pytest.mark.parametrize("qt", OTHER_TYPES, ids=lambda t: t.name)
def test_other_types_dequantize_then_matmul(qt):
    """The rest of the ggml weight types: the CPU backend decodes, then one fp32 torch matmul."""
    _needs(qt, "cpu")
    n, k = 11, 512
    data = random_gguf_weight(qt, n, k, seed=int(qt))
    w64 = oracle_dequantize(data, qt, n, k)
    assert torch.isfinite(w64).all() and w64.abs().max() < 10
    x = torch.randn(3, k)
    _check(pyquant.qmatmul(x, QTensor(data, qt, (n, k))), x, w64, f"cpu {qt.name}", path=_cpu_path(qt, 3))
    verdict = dispatch.explain("gguf_matmul", qt, "cpu", 3)[0]
    if not hasattr(_C, "gguf_matmul"):
        assert verdict[:2] == ("cpu", True) and "then torch matmul" in verdict[2]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", ["int4-32", "int4-64", "int4-128", "int8"])
def test_generic_qmatmul_accuracy(fmt, backend, monkeypatch):
    backend = _use_backend(backend, monkeypatch)
    name, _, g = fmt.partition("-")
    for i, (lead, n, k) in enumerate([((1,), 8, 128), ((3,), 13, 256), ((2, 3), 17, 384), ((111,), 24, 128)]):
        w = torch.randn(n, k, generator=torch.Generator().manual_seed(i)) * 0.1
        qtensor = QTensor.quantize(w, name, group_size=int(g or 128))
        w64 = qtensor.dequantize().to(torch.float64)
        for dtype in DTYPES:
            x = torch.randn(*lead, k, generator=torch.Generator().manual_seed(100 + i)).to(dtype)
            bias = torch.randn(n) if i % 2 else None
            y = pyquant.qmatmul(x, qtensor, bias)
            assert y.shape == (*lead, n) and y.dtype == dtype
            path = _cpu_path(qtensor.qtype, x.numel() // k) if backend == "cpu" else ""
            _check(y, x, w64, f"{backend} {fmt} {lead}x{n}x{k} {dtype}", bias, path)


def test_bias_is_added():
    w = torch.randn(16, 64)
    qt = QTensor.quantize(w, "int8")
    x, b = torch.randn(3, 64), torch.randn(16)
    torch.testing.assert_close(pyquant.qmatmul(x, qt, b), pyquant.qmatmul(x, qt) + b, rtol=0, atol=1e-5)


def test_noncontiguous_x_and_bad_shapes():
    qt = QTensor.quantize(torch.randn(16, 64), "f16")
    x = torch.randn(64, 6).T  # [6, 64], not contiguous
    torch.testing.assert_close(pyquant.qmatmul(x, qt), pyquant.qmatmul(x.contiguous(), qt))
    with pytest.raises(pyquant.KernelError, match="64"):
        pyquant.qmatmul(torch.randn(2, 63), qt)
    with pytest.raises(pyquant.KernelError, match="dtype"):
        pyquant.qmatmul(torch.randn(2, 64, dtype=torch.float64), qt)
    with pytest.raises(pyquant.KernelError, match="meta"):
        pyquant.qmatmul(torch.randn(2, 64, device="meta"), qt)


def test_empty_m():
    qt = QTensor.quantize(torch.randn(16, 64), "int4", group_size=32)
    assert pyquant.qmatmul(torch.randn(0, 64), qt).shape == (0, 16)


# ---- torch.library.opcheck ------------------------------------------------------------------------
def _opcheck_cases():
    cases = []
    for dtype in DTYPES:
        for lead in [(1,), (3,), (2, 2)]:
            x = torch.randn(*lead, 64).to(dtype)
            w = torch.randn(24, 64)
            q4 = QTensor.quantize(w, "int4", group_size=32)
            q8 = QTensor.quantize(w, "int8")
            f16 = QTensor.quantize(w, "f16")
            b = torch.randn(24)
            cases += [
                (ops.int4_matmul, (x, q4.data, q4.scales, q4.mins, 32, b)),
                (ops.int4_matmul, (x, q4.data, q4.scales, q4.mins, 32, None)),
                (ops.int8_matmul, (x, q8.data, q8.scales, b)),
                (ops.gguf_matmul, (x, f16.data, int(QType.F16), 24, 64, None)),
                (ops.gguf_matmul, (x, f16.data, int(QType.F16), 24, 64, b)),
            ]
        cases.append((ops.dequantize_op, (QTensor.quantize(torch.randn(8, 32), "bf16").data,
                                          int(QType.BF16), 8, 32, dtype)))
    return cases


@pytest.mark.parametrize("case", range(len(_opcheck_cases())))
def test_opcheck(case):
    op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


def test_opcheck_gguf_quant_type():
    _needs(QType.Q4_0, "cpu")
    data = random_gguf_weight(QType.Q4_K, 16, 256)
    for dtype in DTYPES:
        torch.library.opcheck(ops.gguf_matmul, (torch.randn(3, 256).to(dtype), data, int(QType.Q4_K), 16, 256, None))
    torch.library.opcheck(ops.dequantize_op, (data, int(QType.Q4_K), 16, 256, torch.float32))


def test_opcheck_interleaved_weights():
    """The row-interleaved layout (interleave=8) through the ops: opcheck (schema, fake, autograd)."""
    _needs(QType.Q4_0, "cpu")
    w = torch.randn(24, 64)
    q4 = QTensor.quantize(w, "int4", group_size=32).interleaved()
    q8 = QTensor.quantize(w, "Q8_0").interleaved()
    x, b = torch.randn(3, 64), torch.randn(24)
    torch.library.opcheck(ops.int4_matmul, (x, q4.data, q4.scales, q4.mins, 32, b, 8))
    torch.library.opcheck(ops.gguf_matmul, (x, q8.data, int(QType.Q8_0), 24, 64, None, 8))
    with pytest.raises(pyquant.KernelError, match="interleave=4"):
        ops.gguf_matmul(x, q8.data, int(QType.Q8_0), 24, 64, None, 4)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("fmt", ["Q4_0", "Q4_K", "Q8_0", "int4"])
def test_interleaved_weight_on_every_backend(monkeypatch, backend, fmt):
    """qmatmul of an interleaved QTensor: the CPU kernels read the layout, any other backend (here
    the torch reference, as a GPU backend would) gets plain rows back; both equal the plain weight's
    result on that backend."""
    _needs(QType.Q4_0, "cpu")
    monkeypatch.setenv("PYQUANT_BACKEND", backend)
    qt = QTensor.quantize(torch.randn(16, 256), fmt, group_size=64)
    x = torch.randn(5, 256)
    want = ops.qmatmul(x, qt)
    got = ops.qmatmul(x, qt.interleaved())
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5


@pytest.mark.parametrize("fmt", ["Q4_K", "Q8_0", "int4", "int8", "f16"])
def test_eager_qmatmul_is_the_op_bit_for_bit(fmt):
    """Eager CPU inference (ops.eager_cpu) calls the kernels directly, a grad-tracking x the op: the
    same kernel, the same bits, for plain and interleaved weights, 2-D and batched x, float dtypes."""
    _needs(QType.Q4_0, "cpu")
    qt = QTensor.quantize(torch.randn(24, 256), fmt, group_size=64)
    weights = [qt] + ([qt.interleaved()] if fmt in ("Q4_K", "Q8_0", "int4") else [])
    b = torch.randn(24)
    for w in weights:
        for x in (torch.randn(3, 256), torch.randn(2, 4, 256), torch.randn(5, 256).bfloat16(),
                  torch.randn(8, 512)[:, ::2]):
            direct = ops.qmatmul(x, w, b)
            via_op = ops.qmatmul(x.clone().requires_grad_(), w, b).detach()
            assert ops.eager_cpu(x, b) and direct.dtype == x.dtype and torch.equal(direct, via_op)


def test_autograd_x_and_bias():
    w = torch.randn(12, 64)
    qt = QTensor.quantize(w, "int4", group_size=32)
    wd = qt.dequantize()
    x = torch.randn(5, 64, requires_grad=True)
    b = torch.randn(12, requires_grad=True)
    g = torch.randn(5, 12)
    pyquant.qmatmul(x, qt, b).backward(g)
    torch.testing.assert_close(x.grad, g @ wd, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad, g.sum(0))


# ---- linear_into: the runner's direct path ------------------------------------------------------
@pytest.mark.parametrize("fmt", ["int4", "int8", "f16", "bf16", "f32", "Q8_0", "Q4_K"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_into_matches_qmatmul(fmt, dtype):
    from pyquant.kernels.cpu.matmul import linear_into

    qt_ = qtypes.qtype(fmt)
    n, k = 40, 256
    if qt_ in (QType.INT4, QType.INT8) or qt_ in FLOATS:
        qt = QTensor.quantize(torch.randn(n, k) * 0.1, qt_, group_size=64)
    else:
        _needs(qt_, "cpu")
        qt = QTensor(random_gguf_weight(qt_, n, k), qt_, (n, k))
    x = torch.randn(2, 3, k).to(dtype)
    bias = torch.randn(n)
    out = torch.empty(2, 3, n, dtype=dtype)
    assert linear_into(x, qt, out, bias) is out
    w64 = qt.dequantize().double()
    _check(out, x, w64, f"linear_into {fmt} {dtype}", bias, _cpu_path(qt.qtype, 6))
    torch.testing.assert_close(out, pyquant.qmatmul(x, qt, bias), rtol=0, atol=0)


def test_linear_into_rejects_what_cpp_cannot_check():
    from pyquant.kernels.cpu.matmul import linear_into

    qt = QTensor.quantize(torch.randn(8, 64), "int8")
    with pytest.raises(pyquant.KernelError, match="contiguous"):
        linear_into(torch.randn(64, 2).T, qt, torch.empty(2, 8))
    with pytest.raises(pyquant.KernelError, match="one dtype"):
        linear_into(torch.randn(2, 64), qt, torch.empty(2, 8, dtype=torch.bfloat16))


def test_linear_into_cache_follows_reassigned_tensors():
    """QTensor caches its _C.Weight for linear_into; reassigning a tensor must drop it."""
    from pyquant.kernels.cpu.matmul import linear_into

    qt = QTensor.quantize(torch.randn(8, 64), "int8")
    x, out = torch.randn(2, 64), torch.empty(2, 8)
    linear_into(x, qt, out)
    before = qt.cpu_call
    qt.scales = qt.scales * 2
    assert qt.cpu_call is not before or before is None
    torch.testing.assert_close(linear_into(x, qt, torch.empty(2, 8)), out * 2, rtol=1e-5, atol=1e-5)
    # a non-contiguous weight view: its _C.Weight holds a contiguous copy (made once), not the view
    wide = QTensor.quantize(torch.randn(8, 128), "int8")
    view = QTensor(wide.data[:, :64], "int8", (8, 64), wide.scales)
    assert view.cpu_call is not None and view.cpu_call.nbytes == 8 * 64
    same = QTensor(wide.data[:, :64].contiguous(), "int8", (8, 64), wide.scales)
    assert torch.equal(linear_into(x, view, torch.empty(2, 8)), linear_into(x, same, torch.empty(2, 8)))
