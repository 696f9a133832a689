"""GGUF reader: equality with the `gguf` package's reader on real and generated files, zero-copy
views, and a clear GGUFError for every kind of malformed input."""
from __future__ import annotations

import struct
import tracemalloc
import warnings

import numpy as np
import pytest
import torch

from gguf_helpers import (
    ARR, BOOL, DATA, F32, FIXTURES, I32, STR, U8, U32, U64, arr, assert_matches_gguf_py, kv, raw_gguf,
    s, tensor_info, write,
)
from pyquant import GGUFError, QType
from pyquant.formats.gguf import GGUFReader, GGUFValueType


# -- equality with gguf-py --------------------------------------------------------------------
@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_gguf_py(name):
    with GGUFReader(DATA / name) as r:
        assert_matches_gguf_py(r, DATA / name)


def test_smollm2_matches_gguf_py(smollm2_path):
    with GGUFReader(smollm2_path) as r:
        assert_matches_gguf_py(r, smollm2_path)
        assert r.version == 3 and r.architecture == "llama"
        assert len(r.tensors) == 272
        assert len(r.metadata["tokenizer.ggml.tokens"]) == 49152
        assert r.fields["tokenizer.ggml.token_type"].value.dtype == np.int32
        assert r.arch_get("block_count") == 30 and r.get("llama.embedding_length") == 576
        emb = r.tensors["token_embd.weight"]
        assert emb.qtype == QType.Q8_0 and emb.shape == (49152, 576) and emb.dims == (576, 49152)
        assert emb.data.shape == (49152, 576 // 32 * 34)


def test_all_value_types():
    with GGUFReader(DATA / "all_types.gguf") as r:
        f = r.fields
        assert (f["test.u8"].vtype, f["test.u8"].value) == (GGUFValueType.UINT8, 255)
        assert f["test.i8"].value == -128 and f["test.i16"].value == -32768
        assert f["test.u64"].value == 2**64 - 1 and f["test.i64"].value == -(2**63)
        assert f["test.f64"].value == -1e300 and f["test.f32"].value == 3.5
        assert f["test.bool_true"].value is True and f["test.bool_false"].value is False
        assert f["test.string"].value == "héllo wörld ✓ 🦙" and f["test.empty_string"].value == ""
        assert f["test.array.uint64"].value.dtype == np.uint64
        assert f["test.array.uint64"].value.tolist() == [2**64 - 1, 0]
        assert f["test.array.bool"].value.dtype == np.bool_
        assert f["test.array.float64"].elem_type == GGUFValueType.FLOAT64
        assert r.metadata["test.array.string"] == ["a", "", "ü✓", "<|endoftext|>", "Ġ t"]
        nested = f["test.array.nested_string"]
        assert nested.elem_type == GGUFValueType.ARRAY
        assert [item.elem_type for item in nested.value] == [GGUFValueType.STRING] * 2
        assert r.metadata["test.array.nested_string"] == [["x", "yz"], ["ü"]]
        deep = r.metadata["test.array.nested2"]
        assert [[a.tolist() for a in inner] for inner in deep] == [[[1, 2], [3]], [[4]]]


def test_tensor_shapes_and_dims():
    with GGUFReader(DATA / "all_types.gguf") as r:
        t = r.tensors
        assert t["norm.weight"].dims == (64,) and t["norm.weight"].data.shape == (1, 256)
        assert t["q8_0.3d"].shape == (2, 3, 32) and t["q8_0.3d"].dims == (32, 3, 2)
        assert t["q8_0.3d"].data.shape == (6, 34)
        assert t["q5_1.1d"].qtype == QType.Q5_1 and t["q5_1.1d"].data.shape == (1, 72)
        assert t["q4_k.weight"].shape == (4, 256) and t["q4_k.weight"].nbytes == 4 * 144
        assert t["bf16.weight"].qtype == QType.BF16
        assert t["f16.weight"].array().dtype == np.float16
        assert t["f16.weight"].array().shape == (5, 64)
        with pytest.raises(GGUFError, match="block-quantized"):
            t["q4_0.weight"].array()


def test_alignment_64():
    with GGUFReader(DATA / "align64.gguf") as r:
        assert r.alignment == 64 and r.data_offset % 64 == 0
        assert all((t.offset - r.data_offset) % 64 == 0 for t in r.tensors.values())
        assert r.tensors["t1"].array().shape == (17,)


def test_version_2():
    with GGUFReader(DATA / "v2.gguf") as r, GGUFReader(DATA / "all_types.gguf") as r3:
        assert r.version == 2 and r3.version == 3
        assert list(r.metadata) == list(r3.metadata)


def test_zero_copy_views(smollm2_path):
    r = GGUFReader(smollm2_path)
    t = r.tensors["blk.0.attn_q.weight"]
    view = t.data
    assert not view.flags.writeable and not view.flags.owndata
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # no "non-writable buffer" warning from torch
        b = t.bytes()
    assert b.dtype == torch.uint8 and tuple(b.shape) == view.shape
    assert np.shares_memory(view, t.data)
    assert torch.equal(b, torch.from_numpy(view.copy()))
    first = int(b[0, 0])
    b[0, 0] += 1                             # copy-on-write: private to this process
    r.close()
    assert int(b[0, 0]) == (first + 1) % 256  # still mapped after close()
    with GGUFReader(smollm2_path) as r2:
        assert int(r2.tensors["blk.0.attn_q.weight"].data[0, 0]) == first  # file untouched
    with pytest.raises(GGUFError, match="closed"):
        t.data


# -- malformed input --------------------------------------------------------------------------
def _expect(tmp_path, content: bytes, *patterns):
    p = write(tmp_path, content)
    with pytest.raises(GGUFError) as e:
        GGUFReader(p)
    msg = str(e.value)
    assert msg.startswith(str(p)), msg
    for pat in patterns:
        assert pat in msg, msg
    return msg


def _u32kv(key, v):
    return kv(key, U32, struct.pack("<I", v))


def test_bad_magic(tmp_path):
    _expect(tmp_path, raw_gguf(magic=b"GGUX") + bytes(8), "bad magic b'GGUX'")
    _expect(tmp_path, b"hello", "bad magic b'hell'")   # a short non-GGUF file: magic first


@pytest.mark.parametrize("version,pattern", [(1, "version 1"), (7, "unknown GGUF version 7"),
                                             (3 << 24, "big-endian")])
def test_bad_version(tmp_path, version, pattern):
    _expect(tmp_path, raw_gguf(version=version) + bytes(8), pattern)


def test_empty_and_short_files(tmp_path):
    _expect(tmp_path, b"", "truncated")
    _expect(tmp_path, b"GGUF\x03\x00\x00\x00", "truncated")
    with pytest.raises(GGUFError, match="cannot open"):
        GGUFReader(tmp_path / "missing.gguf")


def test_truncation_anywhere(tmp_path):
    full = (DATA / "all_types.gguf").read_bytes()
    with GGUFReader(DATA / "all_types.gguf") as r:
        data_end = max(t.offset + t.nbytes for t in r.tensors.values())
    for cut in range(data_end):
        p = write(tmp_path, full[:cut])
        with pytest.raises(GGUFError):
            GGUFReader(p)
    p = write(tmp_path, full[:data_end])  # only the padding after the last tensor is gone: still valid
    GGUFReader(p).close()


def test_forged_counts_never_allocate(tmp_path):
    huge = 1 << 62
    cases = [
        (raw_gguf(n_kv=huge) + bytes(64), "header claims"),
        (raw_gguf(n_tensors=huge) + bytes(64), "header claims"),
        (raw_gguf([struct.pack("<Q", huge) + b"key"]), "key #0: string length"),
        (raw_gguf([kv("k", STR, struct.pack("<Q", huge))]), "field 'k': string length"),
        (raw_gguf([kv("k", ARR, arr(U64, huge, b""))]), "array of 4611686018427387904 UINT64"),
        (raw_gguf([kv("k", ARR, arr(STR, huge, b""))]), "needs at least"),
        (raw_gguf([kv("k", ARR, arr(ARR, huge, b""))]), "needs at least"),
        (raw_gguf([kv("k", ARR, arr(STR, 2, s("a") + struct.pack("<Q", huge)))]),
         "field 'k'[1]: string length"),
        (raw_gguf([kv("k", ARR, arr(ARR, 1, arr(I32, huge, b"")))]), "field 'k[0]'"),
    ]
    pad = bytes(64)  # so the header's minimum-size check passes and the inner check is reached
    cases = cases[:2] + [(content + pad, pattern) for content, pattern in cases[2:]]
    tracemalloc.start()
    try:
        for content, pattern in cases:
            _expect(tmp_path, content, pattern)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_bad_tensor_infos(tmp_path):
    q40 = int(QType.Q4_0)
    data = bytes(256)
    cases = [
        ([tensor_info("w", [32, 2], q40, 0), tensor_info("w", [32, 2], q40, 64)],
         "duplicate tensor name 'w'"),
        ([tensor_info("w", [32, 100], q40, 0)], "tensor 'w': data", "outside the file"),
        ([tensor_info("w", [32, 2], q40, 1 << 63)], "outside the file"),
        ([tensor_info("empty", [0, 256], 0, 1 << 40)], "tensor 'empty'", "outside the file"),  # 0 bytes, past EOF
        ([tensor_info("empty", [1 << 62, 0], 0, 0)], "a row of 4611686018427387904 F32", "overflows"),
        ([tensor_info("a", [32, 4], q40, 0), tensor_info("b", [32, 2], q40, 32)],
         "tensor 'b'", "overlaps tensor 'a'"),
        ([tensor_info("w", [32, 2], q40, 8)], "offset 8 is not a multiple of the alignment 32"),
        ([tensor_info("w", [33, 2], q40, 0)], "row length 33", "block size 32"),
        ([tensor_info("w", [32, 2], 4, 0)], "unknown ggml type id 4"),
        ([tensor_info("w", [32, 2], 1000, 0)], "unknown ggml type id 1000"),
        ([tensor_info("w", [32, 2, 1, 1], q40, 0, n_dims=5)], "n_dims 5 out of range"),
        ([tensor_info("w", [], q40, 0)], "n_dims 0 out of range"),
        ([tensor_info("w", [1 << 32, 1 << 32], 0, 0)], "overflow int64"),
        ([tensor_info("w", [2**64 - 1], 0, 0)], "overflow int64"),
        ([tensor_info(b"\xff\xfe", [32], 0, 0)], "tensor #0 name: invalid UTF-8"),
    ]
    for infos, *patterns in cases:
        _expect(tmp_path, raw_gguf(infos=infos, data=data), *patterns)


def test_bad_fields(tmp_path):
    nested = arr(I32, 0, b"")
    for _ in range(10):
        nested = arr(ARR, 1, nested)
    cases = [
        ([_u32kv("a", 1), _u32kv("b", 2), _u32kv("a", 3)], "duplicate key 'a' (pairs #0 and #2)"),
        ([kv(b"\xc3\x28", U8, b"\x00")], "key #0: invalid UTF-8"),
        ([kv("k", STR, s(b"ok\xff"))], "field 'k': invalid UTF-8 at offset"),
        ([kv("k", ARR, arr(STR, 2, s("fine") + s(b"\xe2\x82")))], "field 'k'[1]: invalid UTF-8"),
        ([kv("k", 13, b"\x00" * 8)], "field 'k': unknown value type 13"),
        ([kv("k", ARR, arr(99, 1, b"\x00" * 8))], "field 'k' array: unknown value type 99"),
        ([kv("k", ARR, nested)], "nested deeper than 8"),
        ([kv("general.alignment", U8, b"\x40")], "must be UINT32, got UINT8"),
        ([_u32kv("general.alignment", 48)], "48 is not a power of two"),
        ([_u32kv("general.alignment", 0)], "0 is not a power of two"),
        ([kv("k", F32, b"\x00\x00")], "truncated: field 'k' value"),
    ]
    for kvs, *patterns in cases:
        _expect(tmp_path, raw_gguf(kvs), *patterns)


def test_handmade_file_parses(tmp_path):
    """The raw builder itself makes valid files (so the malformed cases above test one fault each)."""
    content = raw_gguf(
        [_u32kv("general.alignment", 64), kv("b", BOOL, b"\x01"),
         kv("e", ARR, arr(STR, 0, b"")), kv("n", ARR, arr(ARR, 2, arr(U8, 1, b"\x07") + arr(STR, 0, b"")))],
        [tensor_info("w", [32, 2], int(QType.Q4_0), 0), tensor_info("v", [4], 0, 64)],
        bytes(80), alignment=64)
    with GGUFReader(write(tmp_path, content)) as r:
        assert r.alignment == 64 and r.data_offset % 64 == 0
        assert r.metadata["e"] == [] and r.fields["e"].elem_type == GGUFValueType.STRING
        assert r.fields["n"].value[1].elem_type == GGUFValueType.STRING
        assert r.metadata["n"][0].tolist() == [7] and r.metadata["b"] is True
        assert r.tensors["w"].data.shape == (2, 18) and r.tensors["v"].offset == r.data_offset + 64
