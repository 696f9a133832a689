"""Triton kernels on the CPU through the interpreter, tiny shapes. Run by test_triton_kernels.py in
a child process with TRITON_INTERPRET=1 (the variable must be set before triton is imported: triton
decorates its own library functions at import), so nothing of it leaks into other tests.

Dequantize: bit-exact (every bit, NaN payloads included) with gguf.quants.dequantize on random block
bytes, and with pyquant's torch reference. Matmul: within a rounding-error bound of float64
(tests/_gguf_random.bound), tight enough to catch a single flipped quant bit.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run through test_triton_kernels.py (needs TRITON_INTERPRET=1 before triton import)",
                allow_module_level=True)

pytest.importorskip("triton")
gguf = pytest.importorskip("gguf")

from _gguf_random import TYPES, bound, raw_blocks, sane_blocks  # noqa: E402

from pyquant.errors import KernelError  # noqa: E402


@pytest.fixture(scope="module")
def tops():
    from pyquant.kernels.triton import ops

    return ops


def _gt(name):
    return gguf.GGMLQuantizationType[name]


def _qk(name):
    return gguf.GGML_QUANT_SIZES[_gt(name)][0]


@pytest.mark.parametrize("name", TYPES)
def test_dequantize_bit_exact_with_gguf(tops, name):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    qk = _qk(name)
    rows, cols = 3, 2 * qk if qk == 256 else 8 * qk
    raw = raw_blocks(rng, name, rows, cols)  # every bit pattern: NaN / inf / subnormal scales too
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(raw, _gt(name)).astype(np.float32)
    out = tops.dequantize(torch.from_numpy(raw), name, rows, cols, torch.float32).numpy()
    assert out.shape == (rows, cols)
    np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("name", ["Q4_K", "Q6_K", "IQ4_NL"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dequantize_half_outputs_round_like_torch(tops, name, dtype):
    rng = np.random.default_rng(7)
    qk = _qk(name)
    raw = raw_blocks(rng, name, 2, 2 * qk)
    with np.errstate(all="ignore"):
        ref = torch.from_numpy(gguf.quants.dequantize(raw, _gt(name)).astype(np.float32)).to(dtype)
    out = tops.dequantize(torch.from_numpy(raw), name, 2, 2 * qk, dtype)
    fin = torch.isfinite(ref)  # NaN payloads differ between torch's and ggml's conversions
    assert torch.equal(out[fin].view(torch.int16), ref[fin].view(torch.int16))
    assert torch.equal(torch.isnan(out), torch.isnan(ref))


def test_dequantize_matches_pyquant_reference(tops):
    ref_mod = pytest.importorskip("pyquant.kernels.reference.dequant")
    from pyquant.qtypes import QType

    rng = np.random.default_rng(3)
    checked = 0
    for name in TYPES:
        fn = ref_mod.DEQUANTIZERS.get(QType[name])
        if fn is None:
            continue
        qk = _qk(name)
        raw = raw_blocks(rng, name, 2, 2 * qk)
        nb = raw.size // gguf.GGML_QUANT_SIZES[_gt(name)][1]
        ref = fn(torch.from_numpy(raw).reshape(nb, -1)).reshape(2, 2 * qk)
        out = tops.dequantize(torch.from_numpy(raw), name, 2, 2 * qk)
        assert torch.equal(out.view(torch.int32), ref.view(torch.int32)), name  # NaN payloads too
        checked += 1
    assert checked > 0


def _check_matmul(y, x, w64, bias, dtype):
    x64 = x.double().numpy()
    ref = x64 @ w64.T + (bias.double().numpy() if bias is not None else 0)
    tol = bound(x64, w64, {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype])
    err = np.abs(y.double().numpy() - ref)
    assert y.dtype == dtype and y.shape == ref.shape
    assert (err <= tol).all(), f"max err {err.max():.3g}, worst ratio {(err / tol).max():.3g}"


@pytest.mark.parametrize("name", TYPES)
def test_gguf_matmul_within_bound(tops, name):
    rng = np.random.default_rng(11)
    qk = _qk(name)
    n, k, m = 24, max(2 * qk, 128), 3
    raw = sane_blocks(rng, name, n, k)
    w64 = gguf.quants.dequantize(raw, _gt(name)).astype(np.float64)
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(m, k, generator=g).to(dtype)
        bias = torch.randn(n, generator=g) if dtype == torch.float32 else None
        y = tops.gguf_matmul(x, torch.from_numpy(raw), name, n, k, bias)
        _check_matmul(y, x, w64, bias, dtype)


def test_gguf_matmul_m1_float16_and_ragged_n(tops):
    rng = np.random.default_rng(12)
    n, k = 37, 96  # N not a multiple of the tile, K not a multiple of BLOCK_K... (96 = 3 x 32)
    raw = sane_blocks(rng, "Q5_1", n, k)
    w64 = gguf.quants.dequantize(raw, _gt("Q5_1")).astype(np.float64)
    x = torch.randn(1, k, generator=torch.Generator().manual_seed(2)).half()
    _check_matmul(tops.gguf_matmul(x, torch.from_numpy(raw), "Q5_1", n, k), x, w64, None, torch.float16)


def _int4_case(n, k, g, seed):
    gen = torch.Generator().manual_seed(seed)
    qw = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    scales = torch.rand(n, k // g, generator=gen) * 0.02 + 0.001
    mins = -(torch.rand(n, k // g, generator=gen) * 0.1)
    # independent float64 decode of the layout: per 32-run, byte j = elem j (lo) | elem j+16 (hi)
    b = qw.reshape(n, k // 32, 16).to(torch.int64)
    q = torch.cat([b & 15, b >> 4], dim=2).reshape(n, k).double()
    w64 = q * scales.double().repeat_interleave(g, 1) + mins.double().repeat_interleave(g, 1)
    return qw, scales, mins, w64.numpy()


@pytest.mark.parametrize("g", [32, 64, 128])
def test_int4_matmul_within_bound(tops, g):
    n, k = 20, 256
    qw, scales, mins, w64 = _int4_case(n, k, g, seed=g)
    for dtype, m in ((torch.float32, 2), (torch.bfloat16, 5)):
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m)).to(dtype)
        bias = torch.randn(n) if dtype == torch.float32 else None
        _check_matmul(tops.int4_matmul(x, qw, scales, mins, g, bias), x, w64, bias, dtype)


def test_int8_matmul_within_bound(tops):
    n, k = 33, 160
    gen = torch.Generator().manual_seed(5)
    qw = torch.randint(-128, 128, (n, k), dtype=torch.int8, generator=gen)
    scales = torch.rand(n, generator=gen) * 0.01 + 1e-4
    w64 = (qw.double() * scales.double()[:, None]).numpy()
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(4, k, generator=gen).to(dtype)
        bias = torch.randn(n, generator=gen)
        _check_matmul(tops.int8_matmul(x, qw, scales, bias), x, w64, bias, dtype)


@pytest.mark.parametrize("wi", range(6), ids=lambda i: f"widths{i}")
def test_exl2_matmul_in_its_own_widths_within_bound(tops, wi):
    """EXL2's mixed-width 32-blocks (every width, runs off the 8-block grid; packed by
    formats/exl2/native.py) against the exact weights, fp32 with bias and bf16; rows as the CPU
    kernels interleave them are read too (the op hands Triton plain rows)."""
    from test_exl2_native import WIDTHS, exact, make

    from pyquant.formats.exl2 import native

    values, scales, groups = make(WIDTHS[wi], 24, seed=wi)
    data, bits = native.pack(values, scales, groups)
    w64 = exact(values, scales, groups).double().numpy()
    k = values.shape[0]
    g = torch.Generator().manual_seed(wi)
    for dtype, m in ((torch.float32, 3), (torch.bfloat16, 17)):
        x = torch.randn(m, k, generator=g).to(dtype)
        bias = torch.randn(24, generator=g) if dtype == torch.float32 else None
        _check_matmul(tops.exl2_matmul(x, data, bits, bias), x, w64, bias, dtype)
    x = torch.randn(2, k, generator=g)
    _check_matmul(tops.exl2_matmul(x, native.interleave(data, bits), bits, None, 8), x, w64, None, torch.float32)


def test_exl2_matmul_detects_a_flipped_bit_and_refuses_forged_widths(tops):
    """The bound catches one flipped bit of a 3-bit block's bit part (a test that can fail); a
    width EXL2 does not have, or widths that do not make the rows' bytes, raise KernelError."""
    from test_exl2_native import exact, make

    from pyquant.formats.exl2 import native

    values, scales, groups = make([(5, 64), (3, 96)], 16)
    data, bits = native.pack(values, scales, groups)
    x = torch.randn(2, values.shape[0], generator=torch.Generator().manual_seed(0))
    y = tops.exl2_matmul(x, data, bits)
    _check_matmul(y, x, exact(values, scales, groups).double().numpy(), None, torch.float32)
    bad = data.clone()
    bad[0, 2 * native.block_bytes(5) + 2 + 8] ^= 0x01   # first 3-bit block's bit part: value 0's bit 2
    with pytest.raises(AssertionError):
        _check_matmul(tops.exl2_matmul(x, bad, bits), x, native.dequantize(data, bits).double().numpy(),
                      None, torch.float32)
    _check_matmul(tops.exl2_matmul(x, bad, bits), x, native.dequantize(bad, bits).double().numpy(), None,
                  torch.float32)
    forged = bits.clone()
    forged[1] = 7
    with pytest.raises(KernelError, match="block 1 has width 7"):
        tops.exl2_matmul(x, data, forged)
    with pytest.raises(KernelError, match="-byte rows"):
        tops.exl2_matmul(x, data[:, :-1], bits)


def test_matmul_detects_a_wrong_kernel(tops):
    """The bound is tight enough to catch a one-nibble slip (a test that can fail)."""
    rng = np.random.default_rng(21)
    n, k = 16, 256
    raw = sane_blocks(rng, "Q4_K", n, k)
    w64 = gguf.quants.dequantize(raw, _gt("Q4_K")).astype(np.float64)
    x = torch.randn(2, k, generator=torch.Generator().manual_seed(0))
    y = tops.gguf_matmul(x, torch.from_numpy(raw), "Q4_K", n, k)
    bad = raw.copy()
    bad[0, 16] ^= 0x01  # flip one quant bit of row 0
    w_bad = gguf.quants.dequantize(bad, _gt("Q4_K")).astype(np.float64)
    _check_matmul(y, x, w64, None, torch.float32)
    with pytest.raises(AssertionError):
        _check_matmul(y, x, w_bad, None, torch.float32)


def test_bad_arguments_raise_kernel_error(tops):
    data = torch.zeros(18 * 4, dtype=torch.uint8)
    with pytest.raises(KernelError, match="no Triton kernel"):
        tops.dequantize(data, "IQ2_XXS", 1, 256)
    with pytest.raises(KernelError, match="multiple of the block size"):
        tops.dequantize(data, "Q4_0", 1, 48)
    with pytest.raises(KernelError, match="bytes"):
        tops.dequantize(data, "Q4_0", 3, 64)  # 3 rows x 36 bytes > the 72 there are
    with pytest.raises(KernelError, match="x must be"):
        tops.gguf_matmul(torch.zeros(2, 64), data, "Q4_0", 2, 32)
    with pytest.raises(KernelError, match="group_size"):
        tops.int4_matmul(torch.zeros(1, 64), torch.zeros(2, 32, dtype=torch.uint8), torch.ones(2, 1),
                         torch.zeros(2, 1), 48)


def test_dispatch_uses_triton_only_when_forced_on_cpu(tops, monkeypatch):
    dispatch = pytest.importorskip("pyquant.dispatch")
    import pyquant.ops as pops
    from pyquant.qtypes import QType

    monkeypatch.delenv("PYQUANT_BACKEND", raising=False)
    monkeypatch.delenv("PYQUANT_DISABLE", raising=False)
    verdicts = dispatch.explain("gguf_matmul", QType.Q4_0, "cpu", 2)
    assert "triton" in [v[0] for v in verdicts]  # registered under the interpreter...
    assert next(v[0] for v in verdicts if v[1]) != "triton"  # ...but never preferred on CPU

    monkeypatch.setenv("PYQUANT_BACKEND", "triton")
    assert dispatch.choose("gguf_matmul", QType.Q4_0, "cpu", 2).name == "triton"
    rng = np.random.default_rng(31)
    n, k = 20, 64
    raw = sane_blocks(rng, "Q4_0", n, k)
    w64 = gguf.quants.dequantize(raw, _gt("Q4_0")).astype(np.float64)
    x = torch.randn(2, 3, k, generator=torch.Generator().manual_seed(4))
    y = pops.gguf_matmul(x, torch.from_numpy(raw), int(QType.Q4_0), n, k)
    _check_matmul(y.reshape(6, n), x.reshape(6, k), w64, None, torch.float32)
    d = pops.dequantize_op(torch.from_numpy(raw), int(QType.Q4_0), n, k, torch.float32)
    assert torch.equal(d, torch.from_numpy(w64.astype(np.float32)))


def _forward_through_triton(model, ids, monkeypatch):
    """model.forward(ids) with PYQUANT_BACKEND=triton and float activations; returns the logits
    (float64) and every dispatch decision made on the way, as (op, quant type name, backend)."""
    import pyquant
    from pyquant import dispatch
    from pyquant._ext import _C

    before = _C.get_matmul_act()
    _C.set_matmul_act("float")
    calls = []
    real = dispatch.choose

    def spy(op, qtype, device_type, m=1):
        b = real(op, qtype, device_type, m)
        calls.append((op, pyquant.qtype(qtype).name, b.name))
        return b

    try:
        with monkeypatch.context() as mp:
            mp.setenv("PYQUANT_BACKEND", "triton")
            mp.setattr(dispatch, "choose", spy)
            logits = model.forward(ids, 0, all_logits=True).double()
    finally:
        _C.set_matmul_act(before)
    return logits, calls


def test_tiny_model_end_to_end_through_triton(tmp_path, monkeypatch):
    """The runner is device-agnostic: with PYQUANT_BACKEND=triton every quantized linear of a tiny
    llama (Q8_0 weights) runs through the Triton kernels via pyquant.dispatch.linear (not the direct
    CPU path), and its logits match the independent float reference as the CPU kernels do."""
    import pyquant
    from pyquant import dispatch
    from pyquant._ext import _C
    from reference_llama import ReferenceLlama
    from test_model import _write_tiny_model

    path = _write_tiny_model(tmp_path / "llama.gguf", "llama", biases=False, tied=True)
    before = _C.get_matmul_act()
    _C.set_matmul_act("float")
    try:
        m = pyquant.load(path, max_seq_len=16)
        ids = list(range(40, 48))
        ref = ReferenceLlama(path).forward(ids)
        cpu = m.forward(ids, 0, all_logits=True).double()
        monkeypatch.setenv("PYQUANT_BACKEND", "triton")
        assert dispatch.linear_backend(pyquant.QType.Q8_0, "cpu", len(ids)) == "triton"
        calls = []
        real = dispatch.choose

        def spy(op, qtype, device_type, m=1):
            b = real(op, qtype, device_type, m)
            calls.append(b.name)
            return b

        monkeypatch.setattr(dispatch, "choose", spy)
        tri = m.forward(ids, 0, all_logits=True).double()
    finally:
        _C.set_matmul_act(before)
    assert calls and set(calls) == {"triton"}, calls
    scale = float(ref.abs().max())
    assert float((cpu - ref).abs().max()) < 1e-3 * scale
    assert float((tri - ref).abs().max()) < 1e-3 * scale


def test_tiny_model_generates_through_triton_when_forced_at_load(tmp_path, monkeypatch):
    """PYQUANT_BACKEND=triton set before load: the C++ step (which calls the CPU kernels) is not
    built, the load warns naming the backend, and every token of a generation runs the model's
    forward with its linears on Triton: the same 6 greedy tokens as the CPU kernels (float
    activations on both) and logits within the reference bound."""
    import pyquant
    from pyquant._ext import _C
    from test_model import _write_tiny_model

    path = _write_tiny_model(tmp_path / "qwen2.gguf", "qwen2", biases=True)
    before = _C.get_matmul_act()
    _C.set_matmul_act("float")
    try:
        cpu = pyquant.load(path, max_seq_len=32)
        want = cpu.generate([40, 41, 42, 43], max_new_tokens=6)
        monkeypatch.setenv("PYQUANT_BACKEND", "triton")
        with pytest.warns(RuntimeWarning, match="to the triton backend"):
            tri = pyquant.load(path, max_seq_len=32)
        assert tri._step.mode == "python"
        assert "triton" in tri.explain(4)
        got = tri.generate([40, 41, 42, 43], max_new_tokens=6)
        step_cpu = cpu.step(44, 4).double()
        step_tri = tri.step(44, 4).double()
    finally:
        _C.set_matmul_act(before)
    assert got == want
    assert float((step_tri - step_cpu).abs().max()) < 1e-3 * float(step_cpu.abs().max())


def test_awq_directory_end_to_end_through_triton(tmp_path, monkeypatch):
    """An AWQ checkpoint (AutoAWQ gemm layout) runs through the Triton kernels with no AWQ-specific
    code: its linears are int4 QTensors, which triton's int4_matmul serves; logits match
    transformers' float forward of the same dequantized weights."""
    pytest.importorskip("transformers")
    import pyquant
    from hf_models import awq_from_float, float_model

    model = float_model(tmp_path / "f", "llama")
    oracle = awq_from_float(model, tmp_path / "awq", tmp_path / "f", "gemm", 32)
    ids = list(range(40, 48))
    with torch.no_grad():
        ref = oracle(torch.tensor([ids])).logits[0].double()
    tri, calls = _forward_through_triton(pyquant.load(tmp_path / "awq", max_seq_len=16), ids, monkeypatch)
    int4 = [b for op, _, b in calls if op == "int4_matmul"]
    assert int4 and set(int4) == {"triton"}
    assert float(((tri - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-3


@pytest.mark.parametrize("dtype,qt", [(torch.float16, 1), (torch.bfloat16, 30), (torch.float32, 0)])
def test_float_weights_dequantize_exactly(tops, dtype, qt):
    """F16 / BF16 / F32 weights (AWQ checkpoints keep lm_head and embeddings in them) decode to
    exactly torch's float32 conversion, infinities and NaNs included."""
    w = torch.randn(6, 40).to(dtype)
    w[0, :3] = torch.tensor([float("inf"), float("-inf"), float("nan")])
    raw = w.contiguous().view(torch.uint8).reshape(6, -1)
    got = tops.dequantize(raw, qt, 6, 40, torch.float32)
    assert torch.equal(got.view(torch.int32), w.float().view(torch.int32))


@pytest.mark.parametrize("layout", ["native", "single"])
def test_exl2_directory_end_to_end_through_triton(tmp_path, monkeypatch, layout):
    """An EXL2 checkpoint (mixed 8/6/5/4/3/2-bit act-order layouts, a quantized head) runs through
    the Triton kernels, in its own widths (exl2_matmul) or as exact Q4_0 / Q5_0 / Q8_0 blocks (the
    single-type layout), its input permutation gathered by qmatmul; logits match transformers'
    float forward of the exact weights."""
    pytest.importorskip("transformers")
    import pyquant

    monkeypatch.setenv("PYQUANT_EXL2_LAYOUT", layout)
    from hf_models import exl2_from_float, float_model

    model = float_model(tmp_path / "f", "qwen2")
    oracle = exl2_from_float(model, tmp_path / "e", tmp_path / "f")
    ids = list(range(40, 48))
    with torch.no_grad():
        ref = oracle(torch.tensor([ids])).logits[0].double()
    tri, calls = _forward_through_triton(pyquant.load(tmp_path / "e", max_seq_len=16), ids, monkeypatch)
    want = {"EXL2"} if layout == "native" else {"Q4_0", "Q5_0", "Q8_0"}
    assert {q for _, q, _ in calls} >= want and {b for _, _, b in calls} == {"triton"}
    assert float(((tri - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-4
