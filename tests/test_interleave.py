"""Row-interleaved Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q6_K / Q8_0 / int4 weights (csrc/cpu/interleave.h, pyquant/kernels/cpu/interleave.py).

Every path but one reads the interleaved bytes in place with the plain kernels' arithmetic, so its
y must be bit-identical to the plain layout's. The exception is the AVX2 8-row kernel at M <= 16:
the same integer block sums, scaled and accumulated in another order (per row, 2 chains of float
FMAs over the blocks instead of 8 lanes + a horizontal sum). Each of the nb block terms and
partial sums carries one float32 rounding (2^-24 relative) of at most sum_j |w_j x_j|, so
|y_il - y_plain| <= 2 * nb * 2^-24 * sum_j |w_j| |x_j| (tested with 2x margin on the bound).
"""
from __future__ import annotations

import pytest
import torch

import pyquant
from pyquant._ext import _C
from pyquant.errors import KernelError, UnsupportedQTypeError
from pyquant.kernels.cpu import interleave as il
from pyquant.qtensor import QTensor

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K", "Q8_0", "INT4"]
SUPER = ("Q4_K", "Q6_K")   # 256-weight blocks


def _weight(qt, n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return QTensor.quantize(torch.randn(n, k, generator=g), qt, group_size=next(g for g in (128, 64, 32) if k % g == 0))


@pytest.fixture
def act_mode():
    before = _C.get_matmul_act()
    yield _C.set_matmul_act
    _C.set_matmul_act(before)


@pytest.mark.parametrize("qt", TYPES)
def test_layout_is_the_documented_permutation(qt):
    q = _weight(qt, 16, 512 if qt in SUPER else 96)
    h, nq = il.SPECS[q.qtype]
    last = q.qtype in il.HEADER_LAST   # Q6_K: the plain block's scales and d follow its quants
    i = q.interleaved()
    assert i.interleave == 8 and i.data.shape == q.data.shape and not torch.equal(i.data, q.data)
    g = i.data.reshape(2, -1)   # two groups of 8 rows; group-block b at 8 * (h + nq) * b
    ts = h + nq
    for grp, row, b in [(0, 3, 0), (1, 7, 2), (0, 0, 1)]:
        blk = q.data[8 * grp + row, ts * b:ts * (b + 1)]
        base = 8 * ts * b
        hdr, qs = (blk[nq:], blk[:nq]) if last else (blk[:h], blk[h:])
        assert torch.equal(g[grp, base + h * row:base + h * (row + 1)], hdr)
        for c in range(nq // 8):
            at = base + 8 * h + 64 * c + 8 * row
            assert torch.equal(g[grp, at:at + 8], qs[8 * c:8 * c + 8])
    assert torch.equal(il.deinterleave(i.data, q.qtype), q.data)
    if qt == "INT4":   # scales / mins: [n/8][ng][8]
        ng = q.scales.shape[1]
        assert torch.equal(i.scales.reshape(2, ng, 8)[1, ng - 1], q.scales[8:16, ng - 1])
        assert torch.equal(i.mins.reshape(2, ng, 8)[0, 0], q.mins[0:8, 0])


@pytest.mark.parametrize("qt", TYPES)
def test_qtensor_reads_go_through_plain_rows(qt):
    k = 768 if qt in SUPER else 288
    q = _weight(qt, 32, k)
    i = q.interleaved()
    assert i.plain().interleave == 0 and torch.equal(i.plain().data, q.data)
    assert torch.equal(i.dequantize(), q.dequantize())
    assert torch.equal(i.take_rows(range(5, 21)).data, q.take_rows(range(5, 21)).data)
    assert torch.equal(i.take_columns(k // 3, k // 3 * 2).data, q.take_columns(k // 3, k // 3 * 2).data)
    assert i.interleaved() is i and "interleaved" in repr(i)
    x = torch.randn(17, k)   # > 16 rows: the plain kernels' arithmetic, bit for bit
    assert torch.equal(pyquant.ops.qmatmul(x, i), pyquant.ops.qmatmul(x, q))


def test_bad_interleave_is_refused():
    with pytest.raises(UnsupportedQTypeError, match="interleave"):
        QTensor(_weight("Q5_K", 16, 256).data, "Q5_K", (16, 256), interleave=8)
    with pytest.raises(UnsupportedQTypeError, match="row-interleaved"):
        _weight("Q4_0", 12, 64).interleaved()
    d = _weight("Q4_0", 16, 64).data.numpy()
    with pytest.raises(KernelError, match="interleave must be 0 or 8"):
        _C.Weight(2, d, 16, 64, interleave=4)
    with pytest.raises(KernelError, match="n % 8 == 0"):
        _C.Weight(2, d[:12], 12, 64, interleave=8)
    with pytest.raises(KernelError, match="no row-interleaved layout"):
        _C.Weight(13, _weight("Q5_K", 16, 256).data.numpy(), 16, 256, interleave=8)


def _linear(w, x, y):
    _C.linear(w, x.data_ptr(), x.nbytes, "float32", x.shape[0], y.data_ptr(), y.nbytes, 0, 0, 2)
    return y


@pytest.mark.parametrize("k", [256, 288, 320, 1280])
@pytest.mark.parametrize("act", ["int8x2", "int8", "float"])
@pytest.mark.parametrize("qt", TYPES)
@pytest.mark.parametrize("isa", ["scalar", "avx2"], indirect=True)
def test_every_path_matches_the_plain_layout(qt, act, k, isa, act_mode):
    n = 64
    if k % 256 and qt in SUPER:
        k += 256 - k % 256
    q = _weight(qt, n, k, seed=k)
    wp, wi = q.cpu_call, q.interleaved().cpu_call
    assert wi.interleave == 8
    act_mode(act)
    wabs = q.dequantize().double().abs()
    for m in ([1, 2, 3, 5, 8, 16, 40, 140] if isa == "avx2" else [1, 3, 16]):
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
        yp, yi = _linear(wp, x, torch.empty(m, n)), _linear(wi, x, torch.empty(m, n))
        if m <= 16 and isa == "avx2" and act != "float":   # the 8-row kernel: another summation order
            bound = 2 * 2 * (k // 32) * 2.0 ** -24 * (x.double().abs() @ wabs.T)
            plain_path = _C.matmul_path("int4" if qt == "INT4" else "gguf", int(q.qtype) if qt != "INT4" else 0, m)
            if plain_path.startswith("avx2/gemm:"):
                # plain rows took the float GEMM (exact activations), the 8-row kernel keeps int8x2:
                # the int8x2 bound of tests/test_cpu_matmul.py (relative Frobenius, 1e-4)
                assert float((yi - yp).norm() / yp.norm()) <= 1e-4, (m, act, plain_path)
            else:
                assert bool(((yi.double() - yp.double()).abs() <= bound).all()), (m, act)
        else:
            assert torch.equal(yi, yp), (m, act)


@pytest.mark.parametrize("act", ["int8x2", "int8"])
@pytest.mark.parametrize("qt", TYPES + ["Q2_K", "Q3_K", "Q5_K"])   # the other K-quants: the int8 GEMM
@pytest.mark.parametrize("interleaved", [True, False])
def test_vnni_builds_are_bit_identical_to_avx2(qt, act, interleaved, act_mode):
    """The AVX-512 VNNI builds (csrc/cpu/vnni/: the 8-row GEMV, m <= 16 on interleaved rows, and the
    int8 GEMM, m = 40 / 140) against their AVX2 builds: the same integer sums and float steps, so
    the same bits, for every unit count and pairing."""
    if not _C.cpu_has_vnni():
        pytest.skip("CPU (or build) without AVX-512 VNNI + VL + BW")
    if _C.active_isa() != "avx2":
        pytest.skip("AVX2 not active")
    if interleaved and qt not in TYPES:
        pytest.skip(f"{qt} has no interleaved layout")
    n, k = 40, 512
    q = _weight(qt, n, k, seed=3)
    w = (q.interleaved() if interleaved else q).cpu_call
    act_mode(act)
    before = _C.get_vnni()
    try:
        for m in (1, 2, 3, 4, 5, 8, 13, 16, 40, 140):
            x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
            kernels, ys = [], []
            for on in (False, True):
                _C.set_vnni(on)
                kernels.append("8-row" if interleaved and m <= 16 else
                               _C.matmul_path("int4" if qt == "INT4" else "gguf", 0 if qt == "INT4" else int(q.qtype),
                                              m).split(":")[0])
                ys.append(_linear(w, x, torch.empty(m, n)))
            ya, yv = ys
            if kernels[0] != kernels[1]:
                # where the builds' paths differ by design: the VNNI build has an int8 GEMM for Q8_0 (q + 128
                # is no vpmaddubsw operand), and keeps the K-quants' int8x2 GEMM past 128 rows where AVX2
                # hands over to the float GEMM: the int8x2 / int8 bounds of test_cpu_matmul.py
                assert qt == "Q8_0" or (act == "int8x2" and 2 * m > 128 and qt.endswith("_K")), kernels
                assert float((yv - ya).norm() / ya.norm()) <= (1e-4 if act == "int8x2" else 1.5e-2), (m, act)
            else:
                assert torch.equal(ya, yv), (m, act, kernels)
    finally:
        _C.set_vnni(before)


def test_set_vnni_refused_without_it():
    if _C.cpu_has_vnni():
        _C.set_vnni(_C.get_vnni())   # accepted either way where present
        return
    with pytest.raises(Exception, match="VNNI"):
        _C.set_vnni(True)


def test_runner_packs_weights_interleaved(smollm2_path):
    """The default model (Q4_1, its tied head / embedding Q8_0) runs every linear on the interleaved
    layout; the embedding reads the head's interleaved bytes back row by row, exactly."""
    model = pyquant.load(smollm2_path, max_seq_len=16)
    lins = [lin for L in model.layers for lin in (*L.qkv, L.wo, *L.gate_up, L.down)] + [model.output]
    assert all(lin.qt.interleave == 8 and lin.qt.cpu_call.interleave == 8 for lin in lins)
    emb = model.embed
    assert emb.qt.interleave == 8 and emb.qt.data.data_ptr() == model.output.qt.data.data_ptr()
    ids = torch.tensor([0, 7, 8, 12345, 49151, 7])
    want = emb.qt.plain().dequantize()[ids]
    assert torch.equal(emb(ids), want)


def test_act_order_weight_interleaves_rows_not_columns():
    """EXL2's act-order: columns stored permuted (in_perm), x gathered first; the interleave
    permutes rows only, so both compose."""
    q = _weight("Q4_0", 16, 128)
    perm = torch.randperm(128, generator=torch.Generator().manual_seed(1))
    qp = QTensor(q.data, q.qtype, q.shape, in_perm=perm)
    x = torch.randn(1, 128)
    ref = x.index_select(-1, perm) @ q.dequantize().T
    for w in (qp, qp.interleaved()):
        assert torch.allclose(pyquant.ops.qmatmul(x, w), ref, rtol=1e-2, atol=1e-2 * float(ref.abs().max()))
    assert torch.equal(qp.interleaved().dequantize(), qp.dequantize())


@pytest.mark.parametrize("interleaved", [False, True])
def test_weight_dequantize_row(interleaved):
    q = _weight("Q8_0", 16, 96)
    w = (q.interleaved() if interleaved else q).cpu_call
    out = torch.empty(96)
    for r in (0, 5, 15):
        w.dequantize_row(r, out.data_ptr(), out.nbytes)
        assert torch.equal(out, q.dequantize()[r])
    with pytest.raises(KernelError, match="out of"):
        w.dequantize_row(16, out.data_ptr(), out.nbytes)
    with pytest.raises(KernelError, match="bytes"):
        w.dequantize_row(0, out.data_ptr(), out.nbytes - 4)
    with pytest.raises(KernelError, match="no dequantizer"):
        _weight("INT4", 16, 128).cpu_call.dequantize_row(0, out.data_ptr(), out.nbytes)


def test_quant_linear_checkpoints_plain_rows():
    """A QuantLinear on the CPU holds the interleaved layout (built from plain rows or from an
    interleaved weight alike) but its state_dict saves plain rows, so its checkpoint loads anywhere
    (tests/test_nn.py has the round trips)."""
    from pyquant.nn import QuantLinear

    q = _weight("Q4_0", 16, 64)
    lin = QuantLinear(q.interleaved())
    assert lin.interleave == 8 and torch.equal(lin.qweight, q.interleaved().data)
    assert torch.equal(lin.state_dict()["qweight"], q.data)
    x = torch.randn(2, 64)
    assert torch.equal(lin(x), QuantLinear(q)(x))
    assert torch.equal(lin(x), pyquant.qmatmul(x, q.interleaved()))
