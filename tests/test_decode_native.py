"""The C++ decode step (_C.LlmDecoder, csrc/cpu/llm_ops.cpp) against the Python/torch step
(pyquant/models/decode.py DecodeState.python_step) on the same model and cache, on both ISAs,
plus its input validation.

Float activations: both steps compute the same float32 function up to summation order, so the
logits agree to ~1e-5 relative (bound 1e-4). int8 activations: the two steps' RMSNorm round
differently in the last bit ((x*s)*w vs (x*w)*s), which flips a few activation quantization
levels; measured 0.2% relative at position 0, a few % after 30 layers x several positions, the
same size as the int8 path's own error against float (tests/test_model.py): same top-1 tokens.
"""
from __future__ import annotations

import pytest
import torch

import pyquant
from pyquant.errors import PyquantError
from pyquant.models.decoder import torch_single_thread

IDS = [504, 3575, 282, 4649, 314, 1345, 28, 253]


@pytest.fixture(scope="module")
def model(smollm2_path):
    return pyquant.load(smollm2_path, max_seq_len=64)


@pytest.fixture
def float_activations():
    from pyquant._ext import _C

    before = _C.get_matmul_act()
    _C.set_matmul_act("float")
    yield
    _C.set_matmul_act(before)


def _run(step, ids):
    with torch_single_thread():
        return torch.stack([step(t, p).clone() for p, t in enumerate(ids)])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_native_step_is_used(model):
    assert model._decode.mode == "native"


@pytest.mark.parametrize("one_region", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("isa", ["scalar", "avx2"], indirect=True)
def test_native_equals_python_float_activations(model, isa, threads, one_region, float_activations):
    st = model._decode
    ids = IDS if isa == "avx2" else IDS[:3]   # the scalar float path is slow
    ref = _run(st.python_step, ids)
    from pyquant._ext import _C

    before = _C.get_num_threads() if hasattr(_C, "get_num_threads") else 0
    pyquant.set_num_threads(threads)
    st.native.set_one_region(one_region)
    try:
        ours = _run(st.step, ids)
    finally:
        st.native.set_one_region(True)
        pyquant.set_num_threads(before)
    for p in range(len(ids)):
        assert _rel(ours[p], ref[p]) < 1e-4, p


@pytest.mark.parametrize("isa", ["scalar", "avx2"], indirect=True)
def test_native_close_to_python_int8_activations(model, isa):
    st = model._decode
    ids = IDS if isa == "avx2" else IDS[:3]
    ref = _run(st.python_step, ids)
    ours = _run(st.step, ids)
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))
    assert _rel(ours[0], ref[0]) < 1e-2
    assert max(_rel(ours[p], ref[p]) for p in range(len(ids))) < 0.08


def test_native_greedy_generation_matches_python(model, monkeypatch):
    text = model.generate("The capital of France is", max_new_tokens=8)
    st = model._decode
    monkeypatch.setattr(st, "native", None)
    assert model.generate("The capital of France is", max_new_tokens=8) == text


def test_native_position_checked(model):
    from pyquant.errors import KernelError

    with pytest.raises(PyquantError):
        model.decode_step(1, model.max_seq_len)       # the cache check in Python
    with pytest.raises(KernelError):
        model._decode.native.step(model.max_seq_len)  # and in C++


def test_decoder_validates_inputs():
    from pyquant._ext import _C
    from pyquant.errors import KernelError

    def err(fn, *a):
        with pytest.raises(KernelError):
            fn(*a)

    err(_C.LlmDecoder, 2, 64, 3, 2, 16, 16, 128, 100, 16, 1e-5, 0.25)   # heads not a multiple of kv heads
    err(_C.LlmDecoder, 2, 64, 4, 2, 16, 18, 128, 100, 16, 1e-5, 0.25)   # rope_dim > head_dim
    dec = _C.LlmDecoder(1, 64, 4, 2, 16, 16, 128, 100, 16, 1e-5, 0.25)
    w = torch.zeros(128 * 64 * 20 // 32, dtype=torch.uint8)            # Q4_1 [128, 64] needs 5120 bytes
    err(dec.add_linear, "qkv", 0, 3, w.data_ptr(), w.nbytes - 1, 128, 64, 0, 0)   # short weight
    err(dec.add_linear, "qkv", 1, 3, w.data_ptr(), w.nbytes, 128, 64, 0, 0)       # layer out of range
    err(dec.add_linear, "nope", 0, 3, w.data_ptr(), w.nbytes, 128, 64, 0, 0)      # unknown slot
    err(dec.add_linear, "qkv", 0, 3, w.data_ptr(), w.nbytes, 128, 48, 0, 0)       # k not a block multiple
    err(dec.add_linear, "qkv", 0, 99, w.data_ptr(), w.nbytes, 128, 64, 0, 0)      # unknown type
    err(dec.add_linear, "qkv", 0, 3, w.data_ptr(), w.nbytes, 128, 64, w.data_ptr(), 4)  # short bias
    dec.add_linear("qkv", 0, 3, w.data_ptr(), w.nbytes, 64, 64, 0, 0)              # [64, 64]: qkv needs 128 rows
    err(dec.finalize)                                                              # shapes / pieces missing
    err(dec.step, 0)                                                               # not finalized
