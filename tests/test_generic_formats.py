"""int4 / int8 generic formats: quantization error bounds, the exact kernel nibble layout, repack from
"as stored", and clear errors."""
from __future__ import annotations

import pytest
import torch

from pyquant.errors import UnsupportedQTypeError
from pyquant.formats import generic
from pyquant.kernels.reference.matmul import dequantize_int4, dequantize_int8


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_int4_error_within_half_step(group_size):
    w = torch.randn(37, 256, generator=torch.Generator().manual_seed(group_size))
    stored = generic.quantize_int4(w, group_size)
    assert stored.q.dtype == torch.uint8 and int(stored.q.max()) <= 15
    assert stored.zeros.dtype == torch.uint8 and int(stored.zeros.max()) <= 15
    p = generic.repack_int4(stored)
    assert p.qweight.shape == (37, 128) and p.scales.shape == p.mins.shape == (37, 256 // group_size)
    deq = dequantize_int4(p.qweight, p.scales, p.mins, group_size)
    # AWQ semantics: (q - z) * s; the kernel's q * s + min differs only by fp32 rounding
    awq = ((stored.q.float().reshape(37, -1, group_size) - stored.zeros.float()[..., None])
           * stored.scales[..., None]).reshape(37, 256)
    torch.testing.assert_close(deq, awq, rtol=0, atol=1e-6)
    step = stored.scales.repeat_interleave(group_size, dim=1)
    assert ((deq - w).abs() <= step * 0.5 * (1 + 1e-5) + 1e-7).all()


def test_int4_nibble_layout_is_ggml_q4_order():
    q = torch.randint(0, 16, (3, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    stored = generic.Int4Stored(q, torch.ones(3, 2), torch.zeros(3, 2, dtype=torch.uint8), 32)
    packed = generic.repack_int4(stored).qweight
    for r in range(2):  # run of 32: byte j = element j (low nibble) | element j + 16 (high nibble)
        for j in range(16):
            expect = int(q[1, 32 * r + j]) | (int(q[1, 32 * r + j + 16]) << 4)
            assert int(packed[1, 16 * r + j]) == expect
    assert torch.equal(generic.unpack_int4_codes(packed), q)


def test_int4_zero_is_exact_and_constant_groups_are_finite():
    w = torch.zeros(4, 64)
    w[1] = 3.0           # constant positive group
    w[2, :32] = -1.0     # constant negative group
    w[3, 5] = 0.5        # one nonzero value
    p = generic.pack_int4(w, 32)
    deq = dequantize_int4(p.qweight, p.scales, p.mins, 32)
    assert torch.isfinite(deq).all()
    assert (deq[0] == 0).all() and (deq[3][deq[3] != deq[3, 5]] == 0).all()
    torch.testing.assert_close(deq, w, rtol=0, atol=1e-6)  # 0 and the group extreme are exact codes


def test_int8_error_and_symmetry():
    w = torch.randn(19, 96, generator=torch.Generator().manual_seed(3))
    p = generic.pack_int8(w)
    assert p.qweight.dtype == torch.int8 and p.scales.shape == (19,)
    assert int(p.qweight.min()) >= -127
    deq = dequantize_int8(p.qweight, p.scales)
    assert ((deq - w).abs() <= p.scales[:, None] * 0.5 * (1 + 1e-5)).all()
    neg = generic.pack_int8(-w)
    assert torch.equal(neg.qweight, -p.qweight)
    r = generic.repack_int8(p.qweight.to(torch.int32), p.scales.half())
    assert r.qweight.dtype == torch.int8 and r.scales.dtype == torch.float32


def test_half_precision_input():
    w = torch.randn(8, 128).to(torch.bfloat16)
    p = generic.pack_int4(w, 128)
    assert p.scales.dtype == torch.float32


@pytest.mark.parametrize("bad", [
    lambda: generic.quantize_int4(torch.randn(4, 96), 64),        # K not a multiple of the group
    lambda: generic.quantize_int4(torch.randn(4, 96), 48),        # unsupported group size
    lambda: generic.quantize_int4(torch.randn(96), 32),           # 1-D
    lambda: generic.quantize_int8(torch.randint(0, 3, (4, 8))),   # integer weight
    lambda: generic.repack_int4(generic.Int4Stored(torch.zeros(2, 64, dtype=torch.uint8), torch.ones(2, 3),
                                                   torch.zeros(2, 3, dtype=torch.uint8), 32)),
    lambda: generic.repack_int8(torch.zeros(2, 8, dtype=torch.int8), torch.ones(3)),
])
def test_errors(bad):
    with pytest.raises(UnsupportedQTypeError):
        bad()
