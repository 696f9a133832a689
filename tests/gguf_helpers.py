"""Test helpers for the GGUF tests: a raw byte-level GGUF builder (to forge malformed files) and a
field-by-field / tensor-by-tensor comparison against the `gguf` package's reader (the oracle)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
FIXTURES = ["all_types.gguf", "align64.gguf", "no_tensors.gguf", "v2.gguf"]

# value type ids (spelled out here rather than imported from the code under test)
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def s(text) -> bytes:
    """A GGUF string: u64 length + bytes."""
    b = text.encode() if isinstance(text, str) else bytes(text)
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def arr(elem: int, count: int, items: bytes) -> bytes:
    return struct.pack("<IQ", elem, count) + items


def tensor_info(name, dims, type_id: int, offset: int, n_dims=None) -> bytes:
    n = len(dims) if n_dims is None else n_dims
    return s(name) + struct.pack(f"<I{len(dims)}QIQ", n, *dims, type_id, offset)


def raw_gguf(kvs=(), infos=(), data=b"", *, version=3, magic=b"GGUF", n_kv=None, n_tensors=None,
             alignment=32) -> bytes:
    """kvs: encoded pairs (kv()); infos: encoded tensor infos (tensor_info()); data: the data
    section, placed at the next multiple of `alignment` after the infos."""
    head = magic + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    if data:
        body += bytes(-len(body) % alignment) + data
    return body


def write(tmp_path, content: bytes, name="forged.gguf") -> Path:
    """Write (or overwrite in place) a test file. Overwriting through 'r+b' + truncate is ~6x
    faster here than reopening with 'wb', which matters for the thousands of fuzz/cut cases."""
    p = tmp_path / name
    with open(p, "r+b" if p.exists() else "wb") as f:
        f.write(content)
        f.truncate()
    return p


# -- comparison with gguf-py ------------------------------------------------------------------
def _flatten(value):
    if isinstance(value, list):
        out = []
        for v in value:
            out.extend(_flatten(v))
        return out
    if isinstance(value, np.ndarray):
        return value.tolist()
    return [value]


def _type_chain(field):
    """[vtype, elem, elem-of-first-item, ...] as gguf-py's ReaderField.types reports it."""
    chain = [int(field.vtype)]
    while field.elem_type is not None and len(field.value):   # gguf-py omits an empty array's
        chain.append(int(field.elem_type))                      # element type
        if field.elem_type != ARR:
            break
        field = field.value[0]
    return chain


def assert_matches_gguf_py(ours, path) -> None:
    """Every field (type and value) and every tensor (name, type, dims, offset, bytes) equal."""
    import gguf

    g = gguf.GGUFReader(path)
    g_fields = {k: f for k, f in g.fields.items() if not k.startswith("GGUF.")}
    assert list(ours.fields) == list(g_fields)
    assert ours.version == int(g.fields["GGUF.version"].contents())
    assert ours.alignment == g.alignment and ours.data_offset == g.data_offset
    for key, gf in g_fields.items():
        f = ours.fields[key]
        if int(gf.types[-1]) == ARR:
            # gguf-py cannot type a nested array whose first item is empty (its contents() then
            # returns raw bytes): compare the field's exact bytes as gguf-py segmented them
            from pyquant.formats.gguf import GGUFWriter

            raw = b"".join(np.asarray(p).tobytes() for p in gf.parts[3:])
            assert raw == GGUFWriter("unused")._encode(f), key
            continue
        assert _type_chain(f) == [int(t) for t in gf.types], key
        expected = gf.contents()
        if f.vtype == ARR:
            assert int(gf.parts[3][0]) == int(f.elem_type), key   # parts: klen, key, type, elem
            # gguf-py flattens nested arrays; compare flattened values plus our nesting
            got = _flatten(f.plain())
            assert got == (expected if isinstance(expected, list) else [expected]), key
        elif f.vtype == F32:
            assert np.float32(f.value) == np.float32(expected), key
        else:
            assert f.value == expected and type(f.value) is type(expected), key
    assert list(ours.tensors) == [t.name for t in g.tensors]
    for gt in g.tensors:
        t = ours.tensors[gt.name]
        assert int(t.qtype) == int(gt.tensor_type), gt.name
        assert list(t.dims) == [int(d) for d in gt.shape], gt.name
        assert t.shape == tuple(reversed(t.dims))
        assert t.n_elements == int(gt.n_elements) and t.nbytes == int(gt.n_bytes), gt.name
        assert t.offset == int(gt.data_offset), gt.name
        assert np.array_equal(t.data.reshape(-1), np.asarray(gt.data).reshape(-1).view(np.uint8))


def structural_slots(path) -> list[tuple[int, int]]:
    """(offset, size) of every 4- and 8-byte header / field / tensor-info item, located with the
    gguf package's reader (independent of the code under test): where a forged value does the most
    harm. The hypothesis fuzz (test_gguf_fuzz.py) and the long run (tools/fuzz_gguf.py) use it."""
    import gguf

    g = gguf.GGUFReader(path)
    base = g.data.__array_interface__["data"][0]
    slots = {(8, 8), (16, 8)}
    for field in [*g.fields.values(), *(t.field for t in g.tensors)]:
        for part in field.parts:
            addr = part.__array_interface__["data"][0] - base
            if part.nbytes in (4, 8) or part.dtype.itemsize in (4, 8):
                step = part.dtype.itemsize
                for i in range(min(part.size, 8)):
                    slots.add((addr + i * step, step))
    return sorted(slots)
