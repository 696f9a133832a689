"""QTensor: construction from every source, validation, size accounting, dequantize, .to(), repr."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from random_weights import assert_within_bound, cpu_path, oracle_dequantize, random_gguf_weight

import pyquant
from pyquant import qtypes
from pyquant.errors import UnsupportedQTypeError
from pyquant.formats import generic
from pyquant.qtensor import QTensor
from pyquant.qtypes import QType



def test_int4_quantize_and_accounting():
    w = torch.randn(24, 256)
    qt = QTensor.quantize(w, "int4", group_size=128)
    assert qt.qtype is QType.INT4 and qt.shape == (24, 256) and qt.group_size == 128
    # 4 bits of code + 2 float32 (scale, min) per 128 weights
    assert qt.nbytes == 24 * 128 + 2 * 24 * 2 * 4
    assert qt.bits_per_weight == pytest.approx(4.5)
    assert qt.dequantize().shape == (24, 256)
    assert qt.dequantize(torch.bfloat16).dtype == torch.bfloat16
    assert "INT4" in repr(qt) and "group_size=128" in repr(qt) and "4.50 bpw" in repr(qt)


def test_int8_and_float_formats():
    w = torch.randn(16, 64)
    q8 = QTensor.quantize(w, "int8")
    assert q8.bits_per_weight == pytest.approx(8 + 32 / 64)
    for name, dt in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
        qt = QTensor.quantize(w, name)
        assert qt.data.dtype == torch.uint8 and qt.data.shape == (16, 64 * dt.itemsize)
        assert torch.equal(qt.dequantize(), w.to(dt).float())


def test_from_int4_as_stored_repacks():
    stored = generic.quantize_int4(torch.randn(8, 64), 32)
    a = QTensor.from_int4(stored)
    b = QTensor.quantize(torch.randn(8, 64), "int4", group_size=32)
    assert a.data.shape == b.data.shape and a.scales.shape == b.scales.shape


def test_raw_gguf_bytes_and_dequantize_against_oracle():
    data = random_gguf_weight(QType.F16, 8, 64)
    qt = QTensor(data, "F16", (8, 64))
    assert torch.equal(qt.dequantize().double(), oracle_dequantize(data, QType.F16, 8, 64))
    assert qt.bits_per_weight == 16


def test_quant_type_dequantize_against_oracle():
    data = random_gguf_weight(QType.Q4_K, 4, 512)
    qt = QTensor(data, QType.Q4_K, (4, 512))
    assert qt.bits_per_weight == 4.5
    assert torch.equal(qt.dequantize().double(), oracle_dequantize(data, QType.Q4_K, 4, 512))


@pytest.mark.parametrize("bad", [
    lambda: QTensor(torch.zeros(4, 17, dtype=torch.uint8), "Q4_0", (4, 32)),        # wrong row bytes
    lambda: QTensor(torch.zeros(4, 18, dtype=torch.int8), "Q4_0", (4, 32)),         # wrong dtype
    lambda: QTensor(torch.zeros(4, 18, dtype=torch.uint8), "Q4_0", (4, 33)),        # not whole blocks
    lambda: QTensor(torch.zeros(4, 16, dtype=torch.uint8), "INT4", (4, 32), torch.ones(4, 1),
                    torch.ones(4, 1), 48),                                          # bad group size
    lambda: QTensor(torch.zeros(4, 16, dtype=torch.uint8), "INT4", (4, 32), torch.ones(4, 1), None, 32),
    lambda: QTensor(torch.zeros(4, 32, dtype=torch.int8), "INT8", (4, 32), torch.ones(5)),
    lambda: QTensor(torch.zeros(4, 4, dtype=torch.uint8), "Q8_K", (4, 256)),        # activation type
    lambda: QTensor.quantize(torch.randn(3, 4, 5), "int8"),
])
def test_validation_errors(bad):
    with pytest.raises(UnsupportedQTypeError):
        bad()


def test_to_same_device_is_identity_and_meta_moves():
    qt = QTensor.quantize(torch.randn(8, 64), "int4", group_size=32)
    assert qt.to("cpu") is qt
    m = qt.to("meta")
    assert m.device.type == "meta" and m.scales.device.type == "meta" and m.shape == qt.shape


def test_from_gguf_tensor_like_shares_memory():
    """from_gguf only needs the contract's GGUFTensor fields; the bytes must not be copied."""
    raw = random_gguf_weight(QType.F16, 6, 32).reshape(-1)
    t = types.SimpleNamespace(qtype=QType.F16, shape=(6, 32), bytes=lambda: raw)
    qt = QTensor.from_gguf(t)
    assert qt.data.data_ptr() == raw.data_ptr() and qt.data.shape == (6, 64)


def test_from_real_gguf_file(tmp_path):
    import gguf

    from pyquant.formats.gguf import GGUFReader

    w = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    writer = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    writer.add_tensor("w8", gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with GGUFReader(tmp_path / "t.gguf") as r:
        qt = QTensor.from_gguf(r.tensors["w8"])
        assert qt.qtype is QType.Q8_0 and qt.shape == (16, 64)
        assert qt.data.data_ptr() == r.tensors["w8"].bytes().data_ptr()  # a view of the mmap
        assert qt.data.shape == (16, qtypes.row_bytes(QType.Q8_0, 64))
        expect = gguf.quants.dequantize(gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                                        gguf.GGMLQuantizationType.Q8_0)
        assert np.array_equal(qt.dequantize().numpy(), expect)
        x = torch.randn(2, 64)
        w64 = torch.from_numpy(expect).double()
        assert_within_bound(pyquant.qmatmul(x, qt), x, w64, "Q8_0 from file", path=cpu_path(QType.Q8_0, 2))


@pytest.mark.parametrize("name", ["Q4_0", "Q8_0", "Q4_K", "Q6_K"])
def test_quantize_ggml_types(name):
    w = torch.randn(8, 256)
    qt = QTensor.quantize(w, name)
    assert qt.qtype is QType[name] and qt.data.shape == (8, qtypes.row_bytes(name, 256))
    err = (qt.dequantize() - w).abs().mean() / w.abs().mean()
    assert err < 0.2


def test_copy_and_pickle_after_a_kernel_call():
    """A QTensor whose _C.Weight is bound (any eager CPU qmatmul binds it) deep-copies and pickles:
    the binding is a cache the copy rebuilds over its own buffers."""
    import copy
    import io

    q = QTensor.quantize(torch.randn(16, 64), "Q8_0")
    x = torch.randn(3, 64)
    y = pyquant.qmatmul(x, q)
    assert q.cpu_call is not None
    buf = io.BytesIO()
    torch.save(q, buf)
    buf.seek(0)
    for other in (copy.deepcopy(q), torch.load(buf, weights_only=False)):
        assert other.data.data_ptr() != q.data.data_ptr() and torch.equal(pyquant.qmatmul(x, other), y)
        assert other.cpu_call is not None and other.cpu_call is not q.cpu_call
