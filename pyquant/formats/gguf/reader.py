"""Memory-mapped GGUF reader (v2 and v3, little-endian).

Everything is parsed with struct/numpy straight off one mmap; tensor bytes are never copied.
The file is mapped copy-on-write (mmap.ACCESS_COPY): torch.frombuffer accepts such a buffer without
its "not writable" warning, and a write through a tensor view lands in private pages, never in the
file. `GGUFTensor.data` (numpy) is still flagged read-only so accidental writes fail loudly.

Every count and length read from the file is checked against the bytes that remain *before* any
loop or allocation it sizes, so a forged header costs nothing. Malformed input raises GGUFError
naming the file, the field or tensor, and the problem.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GGUFError
from ...qtypes import GGML_TYPES, QType, REGISTRY
from .constants import (
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, INT64_MAX, MAX_ARRAY_DEPTH, MAX_DIMS,
    MIN_KV_BYTES, MIN_TENSOR_INFO_BYTES, SCALAR_DTYPES, SCALAR_FORMATS, SUPPORTED_VERSIONS,
    GGUFValueType, min_value_bytes,
)

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCALAR_STRUCTS = {v: struct.Struct(f) for v, f in SCALAR_FORMATS.items()}
_GGML_IDS = frozenset(int(t) for t in GGML_TYPES)


@dataclass
class GGUFField:
    """One metadata key-value pair.

    value: int / float / bool / str for scalars; for arrays a numpy array (numeric and bool
    elements, a copy, not tied to the mmap), a list of str (STRING elements), or a list of
    GGUFField (nested arrays: each item is an ARRAY field named 'key[i]' keeping its own elem_type,
    so a writer can reproduce the exact types even for empty inner arrays).
    elem_type: the element type of an ARRAY, else None.
    """

    key: str
    vtype: GGUFValueType
    value: Any
    elem_type: GGUFValueType | None = None

    def plain(self):
        """The value with nested arrays unwrapped into lists (numeric arrays stay numpy)."""
        if self.vtype == GGUFValueType.ARRAY and self.elem_type == GGUFValueType.ARRAY:
            return [item.plain() for item in self.value]
        return self.value


class GGUFTensor:
    """A tensor as stored: name, ggml type, dims (ne0 first) and where its bytes are."""

    __slots__ = ("name", "qtype", "dims", "offset", "nbytes", "_reader")

    def __init__(self, name: str, qtype: QType, dims: tuple[int, ...], offset: int, nbytes: int,
                 reader: "GGUFReader"):
        self.name = name
        self.qtype = qtype
        self.dims = dims          # as stored: dims[0] = ne0, the contiguous (row) axis
        self.offset = offset      # absolute file offset of the first byte
        self.nbytes = nbytes
        self._reader = reader

    @property
    def shape(self) -> tuple[int, ...]:
        """torch order: a weight [out, in] is stored with dims (in, out)."""
        return tuple(reversed(self.dims))

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def row_bytes(self) -> int:
        info = REGISTRY[self.qtype]
        return self.dims[0] // info.block_size * info.type_size

    @property
    def n_rows(self) -> int:
        return self.n_elements // self.dims[0] if self.dims[0] else 0

    @property
    def data(self) -> np.ndarray:
        """Zero-copy, read-only numpy uint8 view [rows, row_bytes] (a 1-D tensor is one row)."""
        flat = np.frombuffer(self._reader._buffer(), dtype=np.uint8, count=self.nbytes,
                             offset=self.offset)
        flat.flags.writeable = False
        return flat.reshape(self.n_rows, self.row_bytes)

    def bytes(self):
        """Zero-copy torch.uint8 tensor [rows, row_bytes] over the mmap.

        Writes to it stay private to this process (copy-on-write mapping); the file never changes.
        The tensor keeps the mapping alive after the reader is closed.
        """
        import torch

        if self.nbytes == 0:
            return torch.empty(self.n_rows, self.row_bytes, dtype=torch.uint8)
        # from_numpy over a numpy view (not torch.frombuffer): the numpy array holds a buffer
        # export on the mmap, so reader.close() cannot unmap memory this tensor still points to.
        flat = np.frombuffer(self._reader._buffer(), dtype=np.uint8, count=self.nbytes,
                             offset=self.offset)
        flat = torch.from_numpy(flat)
        return flat.view(self.n_rows, self.row_bytes)

    def array(self) -> np.ndarray:
        """Zero-copy read-only numpy view with element dtype and torch-order shape, for plain
        element types (F32, F16, F64, I8..I64; BF16 as raw uint16)."""
        dtypes = {QType.F32: "<f4", QType.F16: "<f2", QType.F64: "<f8", QType.BF16: "<u2",
                  QType.I8: "i1", QType.I16: "<i2", QType.I32: "<i4", QType.I64: "<i8"}
        if self.qtype not in dtypes:
            raise GGUFError(self._reader.path,
                            f"tensor {self.name!r}: {self.qtype.name} is block-quantized; "
                            "use .data / .bytes() and pyquant.dequantize")
        return self.data.view(dtypes[self.qtype]).reshape(self.shape)

    def __repr__(self) -> str:
        return (f"GGUFTensor({self.name!r}, {self.qtype.name}, shape={self.shape}, "
                f"offset={self.offset}, nbytes={self.nbytes})")


class GGUFReader:
    """Opens a GGUF file: r.fields / r.metadata / r.tensors; see module docstring."""

    def __init__(self, path):
        self.path = Path(path)
        self._file = None
        self._mm = None
        try:
            self._open()
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- public API ---------------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def get(self, key: str, default=None):
        return self.metadata.get(key, default)

    def arch_get(self, suffix: str, default=None):
        """Metadata under the architecture prefix: arch_get('block_count') -> llama.block_count."""
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    def drop_pages(self) -> None:
        """Unmap every resident page of the file mapping (MADV_DONTNEED: re-read from the page cache
        if touched again). A fault can map a whole large folio of the page cache (up to 2 MB on
        recent kernels), so reading one tensor maps its neighbours as well, which dropping that
        tensor's own pages never reaches: on Linux 6.18 SmolLM2's load kept 27 MB of the file resident
        through the packing, over the peak-RSS budget. Called while loading only: nothing writes to
        the mapping, so no private copy-on-write page is lost."""
        if self._mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                self._mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        mm, f = self._mm, self._file
        self._mm = self._file = None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # tensor views still export the buffer; the mapping dies with the last one
        if f is not None:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFReader({str(self.path)!r}, v{self.version}, {len(self.fields)} fields, "
                f"{len(self.tensors)} tensors)")

    # -- parsing ------------------------------------------------------------------------------
    def _buffer(self):
        if self._mm is None:
            raise GGUFError(self.path, "reader is closed")
        return self._mm

    def _fail(self, msg: str):
        raise GGUFError(self.path, msg)

    def _open(self) -> None:
        import stat

        try:   # a FIFO or a device would block in open() or read forever: regular files only
            mode = os.stat(self.path).st_mode
        except OSError as e:
            raise GGUFError(self.path, f"cannot open: {e.strerror or e}") from None
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise GGUFError(self.path, f"cannot open: {kind}")
        try:
            self._file = open(self.path, "rb")
            self.file_size = os.fstat(self._file.fileno()).st_size
            head = self._file.read(4)
        except OSError as e:
            raise GGUFError(self.path, f"cannot open: {e.strerror or e}") from None
        if len(head) == 4 and head != GGUF_MAGIC:
            self._fail(f"bad magic {head!r}: not a GGUF file (expected {GGUF_MAGIC!r})")
        if self.file_size < 24:
            self._fail(f"truncated: {self.file_size} bytes is shorter than the 24-byte GGUF header")
        try:
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as e:
            raise GGUFError(self.path, f"cannot memory-map: {e}") from None
        self._file.close()  # the mapping holds its own descriptor
        self._file = None

    def _need(self, pos: int, n: int, what: str) -> None:
        if n > self.file_size - pos:
            self._fail(f"truncated: {what} needs {n} bytes at offset {pos} but the file ends at "
                       f"{self.file_size}")

    def _u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return _U32.unpack_from(self._mm, pos)[0]

    def _u64(self, pos: int, what: str) -> int:
        self._need(pos, 8, what)
        return _U64.unpack_from(self._mm, pos)[0]

    def _string(self, pos: int, what: str) -> tuple[str, int]:
        n = self._u64(pos, f"{what} length")
        pos += 8
        if n > self.file_size - pos:
            self._fail(f"{what}: string length {n} at offset {pos - 8} exceeds the "
                       f"{self.file_size - pos} bytes left in the file")
        try:
            return self._mm[pos:pos + n].decode("utf-8"), pos + n
        except UnicodeDecodeError as e:
            self._fail(f"{what}: invalid UTF-8 at offset {pos + e.start}: {e.reason}")

    def _parse(self) -> None:
        mm = self._mm   # magic already checked in _open
        version = _U32.unpack_from(mm, 4)[0]
        if version not in SUPPORTED_VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if swapped in SUPPORTED_VERSIONS:
                self._fail(f"big-endian GGUF (version {swapped} byte-swapped) is not supported")
            if version == 1:
                self._fail("GGUF version 1 (32-bit counts) is not supported; re-convert the model")
            self._fail(f"unknown GGUF version {version} (supported: 2, 3)")
        self.version = version
        n_tensors, n_kv = struct.unpack_from("<QQ", mm, 8)
        left = self.file_size - 24
        if n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES > left:
            self._fail(f"header claims {n_kv} key-value pairs and {n_tensors} tensors, more than "
                       f"the {left} bytes after the header can hold")
        pos = self._parse_fields(24, n_kv)
        self.alignment = self._alignment()
        pos = self._parse_tensor_infos(pos, n_tensors)
        self.data_offset = -(-pos // self.alignment) * self.alignment
        self._check_tensor_data()

    def _parse_fields(self, pos: int, n_kv: int) -> int:
        self.fields: dict[str, GGUFField] = {}
        first_index: dict[str, int] = {}
        for i in range(n_kv):
            key, pos = self._string(pos, f"key #{i}")
            if key in first_index:
                self._fail(f"duplicate key {key!r} (pairs #{first_index[key]} and #{i})")
            first_index[key] = i
            vtype = self._vtype(self._u32(pos, f"field {key!r} value type"), f"field {key!r}")
            field, pos = self._value(key, vtype, pos + 4, depth=0)
            self.fields[key] = field
        self.metadata = {k: f.plain() for k, f in self.fields.items()}
        return pos

    def _vtype(self, raw: int, what: str) -> GGUFValueType:
        try:
            return GGUFValueType(raw)
        except ValueError:
            self._fail(f"{what}: unknown value type {raw}")

    def _value(self, key: str, vtype: GGUFValueType, pos: int, depth: int) -> tuple[GGUFField, int]:
        what = f"field {key!r}"
        if vtype == GGUFValueType.STRING:
            s, pos = self._string(pos, what)
            return GGUFField(key, vtype, s), pos
        if vtype != GGUFValueType.ARRAY:
            size = SCALAR_DTYPES[vtype].itemsize
            self._need(pos, size, f"{what} value")
            v = _SCALAR_STRUCTS[vtype].unpack_from(self._mm, pos)[0]
            if vtype == GGUFValueType.BOOL:
                v = bool(v)
            return GGUFField(key, vtype, v), pos + size
        if depth >= MAX_ARRAY_DEPTH:
            self._fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
        elem = self._vtype(self._u32(pos, f"{what} array element type"), f"{what} array")
        count = self._u64(pos + 4, f"{what} array length")
        pos += 12
        need = count * min_value_bytes(elem)
        if need > self.file_size - pos:
            self._fail(f"{what}: array of {count} {elem.name} elements needs at least {need} bytes "
                       f"at offset {pos} but only {self.file_size - pos} are left")
        if elem == GGUFValueType.STRING:
            value, pos = self._string_array(what, count, pos)
        elif elem == GGUFValueType.ARRAY:
            value = []
            for j in range(count):
                item, pos = self._value(f"{key}[{j}]", GGUFValueType.ARRAY, pos, depth + 1)
                value.append(item)
        else:
            dtype = SCALAR_DTYPES[elem]
            raw = np.frombuffer(self._mm, dtype=np.uint8, count=count * dtype.itemsize, offset=pos)
            value = raw != 0 if elem == GGUFValueType.BOOL else raw.view(dtype).copy()
            pos += count * dtype.itemsize
        return GGUFField(key, vtype, value, elem), pos

    def _string_array(self, what: str, count: int, pos: int) -> tuple[list[str], int]:
        # The hot loop of opening a model (49k tokens + 49k merges in SmolLM2): plain struct +
        # bytes slicing over the mmap, no per-element numpy objects (gguf-py takes ~3 s here).
        mm, end, unpack = self._mm, self.file_size, _U64.unpack_from
        out: list[str] = []
        append = out.append
        i = 0
        try:
            for i in range(count):
                if pos + 8 > end:
                    self._need(pos, 8, f"{what}[{i}] length")
                n = unpack(mm, pos)[0]
                pos += 8
                if n > end - pos:
                    self._fail(f"{what}[{i}]: string length {n} at offset {pos - 8} exceeds the "
                               f"{end - pos} bytes left in the file")
                append(mm[pos:pos + n].decode("utf-8"))
                pos += n
        except UnicodeDecodeError as e:
            self._fail(f"{what}[{i}]: invalid UTF-8 ({e.reason}) at offset {pos + e.start}")
        return out, pos

    def _alignment(self) -> int:
        field = self.fields.get(ALIGNMENT_KEY)
        if field is None:
            return DEFAULT_ALIGNMENT
        if field.vtype != GGUFValueType.UINT32:
            self._fail(f"field {ALIGNMENT_KEY!r} must be UINT32, got {field.vtype.name}")
        a = field.value
        if a == 0 or a & (a - 1):
            self._fail(f"field {ALIGNMENT_KEY!r}: {a} is not a power of two")
        return a

    def _parse_tensor_infos(self, pos: int, n_tensors: int) -> int:
        self._infos = []
        self.tensors: dict[str, GGUFTensor] = {}
        first_index: dict[str, int] = {}
        for i in range(n_tensors):
            name, pos = self._string(pos, f"tensor #{i} name")
            what = f"tensor {name!r}"
            if name in first_index:
                self._fail(f"duplicate tensor name {name!r} (tensors #{first_index[name]} and #{i})")
            first_index[name] = i
            n_dims = self._u32(pos, f"{what} n_dims")
            pos += 4
            if not 1 <= n_dims <= MAX_DIMS:
                self._fail(f"{what}: n_dims {n_dims} out of range 1..{MAX_DIMS}")
            self._need(pos, 8 * n_dims + 12, f"{what} dims, type and offset")
            dims = struct.unpack_from(f"<{n_dims}Q", self._mm, pos)
            pos += 8 * n_dims
            type_id, rel_offset = struct.unpack_from("<IQ", self._mm, pos)
            pos += 12
            self._infos.append((name, dims, type_id, rel_offset))
        return pos

    def _check_tensor_data(self) -> None:
        spans = []
        for name, dims, type_id, rel_offset in self._infos:
            what = f"tensor {name!r}"
            n = 1
            for d in dims:
                n *= d
                if n > INT64_MAX or d > INT64_MAX:
                    self._fail(f"{what}: dims {list(dims)} overflow int64 (element count)")
            if type_id not in _GGML_IDS:
                self._fail(f"{what}: unknown ggml type id {type_id}")
            qt = QType(type_id)
            info = REGISTRY[qt]
            if dims[0] % info.block_size:
                self._fail(f"{what}: row length {dims[0]} (dims[0]) is not a multiple of "
                           f"{qt.name}'s block size {info.block_size}")
            if dims[0] // info.block_size * info.type_size > INT64_MAX:   # an empty tensor's row too
                self._fail(f"{what}: a row of {dims[0]} {qt.name} values overflows int64 (bytes)")
            nbytes = n // info.block_size * info.type_size
            if rel_offset % self.alignment:
                self._fail(f"{what}: data offset {rel_offset} is not a multiple of the "
                           f"alignment {self.alignment}")
            start = self.data_offset + rel_offset
            if start > self.file_size or nbytes > self.file_size - start:   # empty tensors too
                self._fail(f"{what}: data [{start}, {start + nbytes}) lies outside the file "
                           f"({self.file_size} bytes)")
            self.tensors[name] = GGUFTensor(name, qt, tuple(dims), start, nbytes, self)
            if nbytes:
                spans.append((start, start + nbytes, name))
        spans.sort()
        for (s0, e0, a), (s1, e1, b) in zip(spans, spans[1:]):
            if s1 < e0:
                self._fail(f"tensor {b!r}: data [{s1}, {e1}) overlaps tensor {a!r} [{s0}, {e0})")
        del self._infos
