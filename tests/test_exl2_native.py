"""EXL2's mixed-width 32-blocks (pyquant/formats/exl2/native.py, csrc/cpu/exl2_blocks.h): the packer
against its inverse for every value of every width, the CPU kernels (scalar and AVX2; every GEMV and
GEMM path; plain and row-interleaved rows) against the exact weights, with runs that end off the
8-block grid, the op's fake / autograd / torch.compile, and forged block widths."""
from __future__ import annotations

import pytest
import torch

import pyquant
from pyquant._ext import _C
from pyquant.errors import UnsupportedQTypeError
from pyquant.formats.exl2 import native
from pyquant.formats.exl2.layouts import Group
from pyquant.qtensor import QTensor


@pytest.mark.parametrize("bits", native.BITS)
def test_payload_round_trip_every_value(bits):
    """Every value 0..2^b-1 at every one of the 32 positions survives pack -> unpack."""
    levels = 1 << bits
    u = (torch.arange(32)[None, :] + torch.arange(levels)[:, None]) % levels          # [levels, 32]
    p = native.pack_payload(u, bits)
    assert p.dtype == torch.uint8 and p.shape == (levels, 4 * bits)
    assert torch.equal(native.unpack_payload(p, bits), u)


def make(widths, n, seed=0):
    """A random canonical EXL2 linear: groups of (bits, rows) in K order -> (values, scales, groups)."""
    g = torch.Generator().manual_seed(seed)
    groups, row = [], 0
    for bits, rows in widths:
        groups.append(Group(bits, row, rows, 0))
        row += rows
    values = torch.cat([torch.randint(-(1 << (b - 1)), 1 << (b - 1), (r, n), generator=g, dtype=torch.int16)
                        for b, r in widths])
    scales = (torch.rand(len(groups), n, generator=g) * 0.02 + 1e-3).to(torch.float16)
    return values, scales, groups


def exact(values, scales, groups):
    row_scale = torch.cat([scales[i].float().expand(gr.rows, -1) for i, gr in enumerate(groups)])
    return (values.float() * row_scale).t().contiguous()                                # [N, K]


# Runs of 1, 3, 7, 9, 13 ... blocks start and end off the 8-block grid (the fused kernels copy a
# run's last scales), and K = 1312 is not a multiple of 256 (the activation rows' padding).
WIDTHS = [
    [(4, 128)],
    [(8, 32), (6, 96), (5, 224), (4, 288), (3, 416), (2, 256)],
    [(5, 32), (4, 224), (3, 416), (2, 640)],
    [(6, 288), (3, 32)],
    [(8, 1312)],
    [(2, 32 * 13)],
]


@pytest.mark.parametrize("widths", WIDTHS, ids=lambda w: "-".join(f"{b}x{r // 32}" for b, r in w))
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 13, 17, 40])
@pytest.mark.parametrize("interleave", [False, True], ids=["plain", "x8"])
def test_kernels_match_the_exact_weights(widths, m, interleave, isa, act):
    """_C's matmul on the mixed widths, every path by m (pair, 1..4-row, XQ8, int8 GEMM, float GEMM;
    rows interleaved by 8: the 8-row kernel up to m = 16, the gathered rows past it and on the scalar
    ISA), within float rounding of the exact weights with float activations and within int8x2's and
    one int8 pass's bounds."""
    n = 40
    values, scales, groups = make(widths, n)
    data, bits = native.pack(values, scales, groups)
    qt = QTensor(data, "EXL2", (n, values.shape[0]), block_bits=bits)
    if interleave:
        qt = qt.interleaved()
        assert qt.interleave == 8 and not torch.equal(qt.data, data) and torch.equal(qt.plain().data, data)
    w = exact(values, scales, groups).double()
    assert torch.equal(qt.dequantize(torch.float32), w.float())
    x = torch.randn(m, values.shape[0], generator=torch.Generator().manual_seed(m))
    ref = x.double() @ w.t()
    # float: fp32 sums of K products, rounding as a random walk (4 sigma of sqrt(K) * 2^-24 relative);
    # int8x2 rounds each activation to ~15 bits of its 32-block's max (2^-15 = 3e-5 relative); one
    # int8 pass to 8 bits (test_cpu_matmul's bound; with 6 / 8-bit blocks, m > 12: AVX2's signed
    # int8 GEMM, |q| against sign(x, q))
    k = values.shape[0]
    for mode, bound in (("float", 4 * k ** 0.5 * 2.0 ** -24), ("int8x2", 1e-4), ("int8", 1.5e-2)):
        act(mode)
        y = pyquant.qmatmul(x, qt)
        assert float((y.double() - ref).norm() / ref.norm()) < bound, (mode, _C.matmul_path("exl2", 0, m))


def test_vnni_and_avx2_8_row_kernels_agree_bit_for_bit():
    """The 8-row kernel built twice (AVX2 vpmaddubsw, AVX-512 VNNI vpdpbusd) forms the same integer
    sums, so y is bit-identical (where this CPU has VNNI)."""
    if not _C.get_vnni():
        pytest.skip("no AVX-512 VNNI on this CPU")
    values, scales, groups = make(WIDTHS[1], 16)
    data, bits = native.pack(values, scales, groups)
    qt = QTensor(data, "EXL2", (16, values.shape[0]), block_bits=bits).interleaved()
    x = torch.randn(4, values.shape[0])
    try:
        _C.set_vnni(False)
        y_avx2 = pyquant.qmatmul(x, qt)
    finally:
        _C.set_vnni(True)
    assert torch.equal(pyquant.qmatmul(x, qt), y_avx2)


def test_reads_its_own_widths():
    """What the kernels read: b + 0.5 bits a weight per block (a 2/3-bit layout well under Q4_0's 4.5)."""
    values, scales, groups = make([(3, 256), (2, 768)], 64)
    data, bits = native.pack(values, scales, groups)
    assert data.shape == (64, (256 // 32) * 14 + (768 // 32) * 10)
    w = _C.Weight(int(pyquant.QType.EXL2), data.numpy(), 64, 1024, block_bits=bits.numpy())
    assert w.nbytes * 8 / (64 * 1024) == pytest.approx((256 * 3.5 + 768 * 2.5) / 1024)


def test_moved_to_a_device_it_keeps_its_widths_only_where_a_kernel_reads_them(monkeypatch):
    """QTensor.to: the widths stay where a backend of the device has exl2_matmul (the CPU's; CUDA's or
    Triton's on a GPU), and become the single type elsewhere (meta: only the reference, which dequantizes)."""
    from pyquant.qtensor import _reads_exl2_widths

    values, scales, groups = make([(6, 64), (3, 32)], 8)
    data, bits = native.pack(values, scales, groups)
    qt = QTensor(data, "EXL2", (8, 96), block_bits=bits)
    assert _reads_exl2_widths("cpu") and not _reads_exl2_widths("meta")
    moved = qt.to("meta")
    assert moved.qtype is pyquant.QType.Q8_0 and moved.device.type == "meta" and moved.shape == (8, 96)
    monkeypatch.setenv("PYQUANT_BACKEND", "reference")   # forced: no widths kernel on the CPU either
    assert not _reads_exl2_widths("cpu")


def test_op_fake_autograd_and_compile():
    values, scales, groups = make([(5, 64), (3, 64)], 16)
    data, bits = native.pack(values, scales, groups)
    w = exact(values, scales, groups)
    torch.library.opcheck(torch.ops.pyquant.exl2_matmul, (torch.randn(3, 128), data, bits, None))
    x = torch.randn(3, 128, requires_grad=True)
    y = pyquant.ops.exl2_matmul(x, data, bits)
    y.sum().backward()
    assert torch.allclose(x.grad, w.sum(0).expand(3, -1), atol=1e-5)
    f = torch.compile(lambda a: pyquant.ops.exl2_matmul(a, data, bits), fullgraph=True, backend="eager")
    assert torch.allclose(f(x.detach()), x.detach() @ w.t(), atol=1e-3)


def test_quantlinear_state_dict_round_trip():
    from pyquant.nn import QuantLinear

    values, scales, groups = make([(6, 64), (2, 64)], 24)
    data, bits = native.pack(values, scales, groups)
    perm = torch.randperm(128, generator=torch.Generator().manual_seed(0))
    mod = QuantLinear(QTensor(data, "EXL2", (24, 128), block_bits=bits, in_perm=perm))
    sd = mod.state_dict()
    assert {"qweight", "block_bits", "in_perm"} <= set(sd)
    again = QuantLinear(QTensor(data.clone(), "EXL2", (24, 128), block_bits=bits.clone(), in_perm=perm.clone()))
    again.load_state_dict(sd)
    x = torch.randn(2, 128)
    w = torch.empty(24, 128)
    w[:, perm] = exact(values, scales, groups)
    assert torch.allclose(again(x), x @ w.t(), atol=1e-3)


def test_forged_widths_raise():
    values, scales, groups = make([(4, 64)], 8)
    data, bits = native.pack(values, scales, groups)
    bad = bits.clone()
    bad[1] = 7
    with pytest.raises(UnsupportedQTypeError, match="widths"):
        QTensor(data, "EXL2", (8, 64), block_bits=bad)
    with pytest.raises(UnsupportedQTypeError, match="block_bits"):
        QTensor(data, "EXL2", (8, 64), block_bits=bits[:1])
    with pytest.raises(UnsupportedQTypeError, match="data must be torch.uint8 \\(8, 36\\)"):
        QTensor(data[:, :-1], "EXL2", (8, 64), block_bits=bits)
    with pytest.raises(UnsupportedQTypeError, match="block_bits is EXL2's"):
        QTensor(torch.zeros(8, 36, dtype=torch.uint8), "Q4_0", (8, 64), block_bits=bits)
    # the C++ side checks on its own: a width it has no decoder for, too few bytes, a short table
    with pytest.raises(Exception, match="block_bits\\[1\\] = 7"):
        _C.Weight(1002, data.numpy(), 8, 64, block_bits=bad.numpy())
    with pytest.raises(Exception, match="bytes"):
        _C.Weight(1002, data[:4].numpy(), 8, 64, block_bits=bits.numpy())
    with pytest.raises(Exception, match="block_bits has 1 bytes"):
        _C.Weight(1002, data.numpy(), 8, 64, block_bits=bits[:1].numpy())
