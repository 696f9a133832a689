"""GGUF writer: files read back identically by the `gguf` package's reader and by ours; exact
re-creation of files written by gguf-py and of the real SmolLM2 GGUF."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gguf_helpers import DATA, _flatten, assert_matches_gguf_py
from pyquant import GGUFError, QType
from pyquant.formats.gguf import GGUFField, GGUFReader, GGUFValueType as V, GGUFWriter


def _rewrite(src, dst) -> None:
    with GGUFReader(src) as r:
        w = GGUFWriter(dst)
        w.copy_fields(r)
        for t in r.tensors.values():
            w.add_tensor(t.name, t.data, t.qtype, t.shape)
        w.write()


@pytest.mark.parametrize("name", ["all_types.gguf", "align64.gguf", "no_tensors.gguf"])
def test_rewrite_of_gguf_py_file_is_byte_identical(tmp_path, name):
    _rewrite(DATA / name, tmp_path / name)
    assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes()


def test_v2_file_rewritten_as_v3(tmp_path):
    _rewrite(DATA / "v2.gguf", tmp_path / "out.gguf")
    assert (tmp_path / "out.gguf").read_bytes() == (DATA / "all_types.gguf").read_bytes()


def test_smollm2_rewrite_is_byte_identical(smollm2_path, tmp_path):
    out = tmp_path / "smollm2.gguf"
    _rewrite(smollm2_path, out)
    assert out.read_bytes() == smollm2_path.read_bytes()


def _every_type_writer(path) -> GGUFWriter:
    w = GGUFWriter(path, alignment=64)
    w.add_field("general.architecture", "llama")
    for vt, value in [(V.UINT8, 200), (V.INT8, -3), (V.UINT16, 60000), (V.INT16, -300),
                      (V.UINT32, 4000000000), (V.INT32, -70000), (V.FLOAT32, 0.125),
                      (V.BOOL, True), (V.STRING, "ü✓ text"), (V.UINT64, 2**64 - 1),
                      (V.INT64, -(2**63)), (V.FLOAT64, 1e-310)]:
        w.add_field(f"scalar.{vt.name.lower()}", value, vt)
    w.add_field("array.u16", [1, 2, 65535], V.ARRAY, V.UINT16)
    w.add_field("array.f64", np.array([0.5, -1.0]))
    w.add_field("array.bool", [True, False])
    w.add_field("array.str", ["a", "", "Ġ"])
    w.add_field("array.empty_str", [], V.ARRAY, V.STRING)
    w.add_field("array.nested", [np.array([1, 2], np.uint8), np.array([3], np.uint8)])
    w.add_field("array.nested_str", [["x"], ["y", "z"]])
    # an empty inner array's element type can only be given through a GGUFField item
    inner = [GGUFField("", V.ARRAY, [], V.STRING), ["q"]]
    w.add_field("array.nested_with_empty", inner, V.ARRAY, V.ARRAY)
    w.add_field("inferred.int", 7)
    w.add_field("inferred.big", 2**40)
    w.add_field("inferred.huge", 2**63)
    w.add_field("inferred.float", 1.5)
    w.add_field("inferred.np_u16", np.uint16(9))
    rng = np.random.default_rng(0)
    w.add_tensor("f32", rng.standard_normal((3, 5)).astype(np.float32), QType.F32, (3, 5))
    w.add_tensor("f16_from_torch", torch.randn(2, 8), QType.F16, (2, 8))
    w.add_tensor("bf16_from_torch", torch.randn(4), "BF16", (4,))
    w.add_tensor("q4_0_3d", rng.integers(0, 256, 2 * 3 * 18, dtype=np.uint8), QType.Q4_0, (2, 3, 32))
    w.add_tensor("q6_k_bytes", bytes(range(210)), "q6_k", (1, 256))
    w.add_tensor("lazy_q8_0", lambda: torch.full((4, 34), 7, dtype=torch.uint8), QType.Q8_0, (4, 32))
    return w


def test_every_type_read_back_by_gguf_py_and_ours(tmp_path):
    path = tmp_path / "every.gguf"
    _every_type_writer(path).write()
    with GGUFReader(path) as r:
        assert_matches_gguf_py(r, path)
        f = r.fields
        assert r.alignment == 64 and f["general.alignment"].vtype == V.UINT32
        for vt in [V.UINT8, V.INT8, V.UINT16, V.INT16, V.UINT32, V.INT32, V.FLOAT32, V.BOOL,
                   V.STRING, V.UINT64, V.INT64, V.FLOAT64]:
            assert f[f"scalar.{vt.name.lower()}"].vtype == vt
        assert f["scalar.float64"].value == 1e-310 and f["scalar.uint64"].value == 2**64 - 1
        assert f["array.u16"].elem_type == V.UINT16 and f["array.f64"].elem_type == V.FLOAT64
        assert f["array.empty_str"].value == [] and f["array.empty_str"].elem_type == V.STRING
        assert [i.elem_type for i in f["array.nested"].value] == [V.UINT8, V.UINT8]
        assert r.metadata["array.nested_str"] == [["x"], ["y", "z"]]
        assert [i.elem_type for i in f["array.nested_with_empty"].value] == [V.STRING, V.STRING]
        assert (f["inferred.int"].vtype, f["inferred.big"].vtype, f["inferred.huge"].vtype) == (
            V.INT32, V.INT64, V.UINT64)
        assert f["inferred.float"].vtype == V.FLOAT32 and f["inferred.np_u16"].vtype == V.UINT16
        t = r.tensors
        assert t["q4_0_3d"].shape == (2, 3, 32) and t["q4_0_3d"].dims == (32, 3, 2)
        assert t["bf16_from_torch"].qtype == QType.BF16 and t["bf16_from_torch"].nbytes == 8
        assert (t["lazy_q8_0"].data == 7).all()
        assert all((x.offset - r.data_offset) % 64 == 0 for x in t.values())


def test_copy_fields_keeps_exact_types_of_nested_and_empty_arrays(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    _every_type_writer(a).write()
    with GGUFReader(a) as r:
        w = GGUFWriter(b)
        w.copy_fields(r, skip={"inferred.int"})
        w.write()
    with GGUFReader(a) as ra, GGUFReader(b) as rb:
        assert list(rb.fields) == [k for k in ra.fields if k != "inferred.int"]
        assert rb.alignment == 64   # the copied general.alignment field sets it
        nested_a, nested_b = ra.fields["array.nested"], rb.fields["array.nested"]
        assert [i.elem_type for i in nested_b.value] == [i.elem_type for i in nested_a.value]
        assert [a.tolist() for a in rb.metadata["array.nested"]] == [[1, 2], [3]]
        for key, fb in rb.fields.items():
            fa = ra.fields[key]
            assert (fb.vtype, fb.elem_type) == (fa.vtype, fa.elem_type)
            assert _flatten(fb.plain()) == _flatten(fa.plain()), key


def test_progress_reporting(tmp_path):
    calls = []

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    w = _every_type_writer(tmp_path / "p.gguf")
    w.write(progress=lambda name, done, total: calls.append((name, done, total)))
    assert [c[0] for c in calls][-1] == "lazy_q8_0" and calls[-1][1] == calls[-1][2]
    bar = Bar()
    _every_type_writer(tmp_path / "q.gguf").write(progress=bar)
    assert bar.n == calls[-1][2]


@pytest.mark.parametrize("call,pattern", [
    (lambda w: w.add_field("k", 256, V.UINT8), "256 out of UINT8 range"),
    (lambda w: w.add_field("k", 1.5, V.INT32), "must be an int"),
    (lambda w: w.add_field("k", 1e39, V.FLOAT32), "overflows FLOAT32"),
    (lambda w: w.add_field("k", []), "empty array needs an explicit elem_type"),
    (lambda w: w.add_field("k", [1, "a"]), "mixes element types"),
    (lambda w: w.add_field("k", [300], V.ARRAY, V.UINT8), "outside UINT8 range"),
    (lambda w: w.add_field("k", np.zeros(2, np.complex64)), "no GGUF type"),
    (lambda w: w.add_field("k", object()), "cannot store"),
    (lambda w: w.add_field("k", 1, 42), "unknown value type 42"),
    (lambda w: w.add_field("general.alignment", 48), "not a power of two"),
    (lambda w: w.add_field("general.alignment", 64, V.UINT64), "must be UINT32"),
    (lambda w: [w.add_field("k", 1), w.add_field("k", 2)], "duplicate key 'k'"),
    (lambda w: w.add_field("k", "bad \udcff surrogate"), "not encodable as UTF-8"),
    (lambda w: w.add_tensor("x" * 64, bytes(4), QType.F32, (1,)), "at most 63"),
    (lambda w: w.add_tensor("t", bytes(4), QType.F32, (2**32, 2**32)), "overflows int64"),
    (lambda w: w.add_tensor("t", bytes(17), QType.Q4_0, (1, 32)), "got 17 bytes"),
    (lambda w: w.add_tensor("t", bytes(18), QType.Q4_0, (1, 31)), "not a multiple"),
    (lambda w: w.add_tensor("t", bytes(4), QType.INT4, (8,)), "not a ggml type"),
    (lambda w: w.add_tensor("t", bytes(4), QType.F32, (1, 1, 1, 1, 1)), "1..4"),
    (lambda w: w.add_tensor("t", np.zeros(4, np.float32), QType.Q8_0, (32,)), "packed uint8"),
    (lambda w: [w.add_tensor("t", bytes(4), 0, (1,)), w.add_tensor("t", bytes(4), 0, (1,))],
     "duplicate tensor name 't'"),
])
def test_bad_writer_input(tmp_path, call, pattern):
    with pytest.raises(GGUFError, match=pattern):
        call(GGUFWriter(tmp_path / "x.gguf"))


def test_failed_write_leaves_nothing(tmp_path):
    w = GGUFWriter(tmp_path / "x.gguf")
    w.add_tensor("t", lambda: bytes(3), QType.F32, (1,))
    with pytest.raises(GGUFError, match="got 3 bytes"):
        w.write()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GGUFError, match="not a power of two"):
        GGUFWriter(tmp_path / "y.gguf", alignment=3)
