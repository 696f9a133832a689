"""The forward's CPU row ops (pyquant/kernels/cpu/rowops.py, csrc/cpu/prefill_ops.cpp) against
torch's float ops, on both ISAs and thread counts, and their refusals."""
import math

import pytest
import torch
import torch.nn.functional as F

import pyquant
from pyquant.errors import KernelError
from pyquant.kernels.cpu import rowops


def ref_attention(q, k, v, start, window, scale):
    """q [S, H, hd], k/v [Hkv, T, hd]: causal (and windowed) GQA in float64."""
    S, H, hd = q.shape
    Hkv, T, _ = k.shape
    g = H // Hkv
    out = torch.empty(S, H, hd, dtype=torch.float64)
    for s in range(S):
        p = start + s
        t0 = max(0, p - window + 1) if window else 0
        for h in range(H):
            kk, vv = k[h // g, t0:p + 1].double(), v[h // g, t0:p + 1].double()
            w = torch.softmax(kk @ q[s, h].double() * scale, -1)
            out[s, h] = w @ vv
    return out.reshape(S, H * hd)


@pytest.fixture(params=[1, 2])
def threads(request):
    before = pyquant.get_num_threads()
    pyquant.set_num_threads(request.param)
    yield request.param
    pyquant.set_num_threads(before)


@pytest.mark.parametrize("S", [1, 7, 64])
def test_rms_norm(S, isa, threads):
    g = torch.Generator().manual_seed(S)
    big = torch.randn(S, 600, generator=g) * 3
    x = big[:, :576]   # a strided view: rows of 576 floats, 600 apart
    w = torch.randn(576, generator=g)
    y = rowops.rms_norm(x, w, 1e-5)
    ref = (x.double() * w.double() / torch.sqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5))
    assert torch.allclose(y.double(), ref, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("act", ["silu", "gelu_tanh"])
def test_act_mul(act, isa, threads):
    g = torch.Generator().manual_seed(1)
    gu = torch.randn(33, 2 * 1536, generator=g) * 4
    gate, up = gu.double().chunk(2, -1)
    ref = (F.silu(gate) if act == "silu" else F.gelu(gate, approximate="tanh")) * up
    assert torch.allclose(rowops.act_mul(gu, act).double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("start,S,window", [(0, 1, 0), (0, 64, 0), (5, 17, 0), (0, 40, 8), (30, 9, 16)])
@pytest.mark.parametrize("H,Hkv,hd", [(9, 3, 64), (4, 4, 24), (2, 1, 20)])   # hd 20: no 8-wide AVX2 body
def test_attention(start, S, window, H, Hkv, hd, isa, threads):
    g = torch.Generator().manual_seed(start * 100 + S)
    T, cap = start + S, start + S + 5
    cache = torch.randn(2, Hkv, cap, hd, generator=g)           # a KV cache with room to spare
    k, v = cache[0, :, :T], cache[1, :, :T]
    qkv = torch.randn(S, (H + 2 * Hkv) * hd, generator=g)
    q = qkv[:, :H * hd].view(S, H, hd)                          # a view into the fused QKV output
    scale = 1 / math.sqrt(hd)
    y = rowops.attention(q, k, v, start, window, scale)
    assert torch.allclose(y.double(), ref_attention(q, k, v, start, window, scale), rtol=1e-5, atol=2e-6)


def test_threads_agree():
    g = torch.Generator().manual_seed(7)
    cache = torch.randn(2, 3, 80, 64, generator=g)
    q = torch.randn(70, 9, 64, generator=g)
    before = pyquant.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            pyquant.set_num_threads(n)
            outs.append(rowops.attention(q, cache[0, :, :70], cache[1, :, :70], 0, 0, 0.125))
    finally:
        pyquant.set_num_threads(before)
    assert torch.equal(outs[0], outs[1])   # each (query, head) is one thread's work, whatever the split


def test_refusals():
    x = torch.randn(4, 64)
    with pytest.raises(KernelError, match="weight"):
        rowops.rms_norm(x, torch.randn(63), 1e-5)
    with pytest.raises(KernelError, match="float32"):
        rowops.rms_norm(x.double(), torch.randn(64), 1e-5)
    with pytest.raises(KernelError, match="gate_up"):
        rowops.act_mul(torch.randn(4, 7), "silu")
    from pyquant._ext import _C
    gu = torch.randn(4, 8)
    with pytest.raises(KernelError, match="activation"):
        rowops.act_mul(gu, "relu")
    cache = torch.randn(2, 1, 8, 16)
    q = torch.randn(4, 2, 16)
    with pytest.raises(KernelError, match="positions"):   # k holds 8 positions, the call needs 10
        rowops.attention(q, cache[0], cache[1], 6, 0, 0.25)
    # C++ checks every extent against the byte sizes it is given (a caller's forged sizes)
    out = torch.empty(4, 32)
    with pytest.raises(KernelError, match="floats"):
        _C.attention_rows(q.data_ptr(), 16, 32, cache.data_ptr(), cache.nbytes, cache.data_ptr(), cache.nbytes, 128,
                          out.data_ptr(), out.nbytes, 4, 2, 1, 16, 0, 0, 0.25)
    with pytest.raises(KernelError, match="cache holds"):
        _C.attention_rows(q.data_ptr(), q.nbytes, 32, cache.data_ptr(), cache.nbytes, cache.data_ptr(), cache.nbytes,
                          16, out.data_ptr(), out.nbytes, 4, 2, 1, 16, 0, 0, 0.25)
    with pytest.raises(KernelError, match="floats"):
        _C.act_mul_rows(gu.data_ptr(), gu.nbytes, out.data_ptr(), 8, 4, 4, "silu")
    with pytest.raises(KernelError):
        _C.rms_norm_rows(x.data_ptr(), x.nbytes, 64, x.data_ptr(), 4, out.data_ptr(), out.nbytes, 64, 4, 64, 1e-5)
