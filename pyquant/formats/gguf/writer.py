"""GGUF v3 writer.

Fields are encoded (and validated) when added, so a bad value fails at the call that added it, not
halfway through a multi-GB write. Tensor bytes are referenced, not copied, until write(); a tensor's
data may also be a zero-argument callable producing its bytes at write time, so a converter can
stream a model through without holding every quantized tensor in memory.

Layout (what gguf-py and llama.cpp write): header, key-value pairs, tensor infos, zero padding to
the alignment, then each tensor's bytes followed by zero padding to the alignment (after the last
one too). Offsets are assigned in the order tensors were added.
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...errors import GGUFError
from ...qtypes import QType, REGISTRY, qtype as to_qtype
from .constants import (
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, DTYPE_TO_VTYPE, GGUF_MAGIC, INT64_MAX, INTEGER_RANGES,
    MAX_ARRAY_DEPTH,
    MAX_DIMS, SCALAR_DTYPES, SCALAR_FORMATS, WRITE_VERSION, GGUFValueType,
)
from .reader import GGUFField, GGUFReader

_V = GGUFValueType
GGML_MAX_NAME = 64   # llama.cpp's tensor name buffer, NUL included
# element dtype of plain (non-block) tensor types, for float/int data given in another dtype
_ELEMENT_DTYPES = {QType.F32: "<f4", QType.F16: "<f2", QType.F64: "<f8", QType.I8: "i1",
                   QType.I16: "<i2", QType.I32: "<i4", QType.I64: "<i8"}


class _PendingTensor:
    __slots__ = ("name", "qtype", "dims", "nbytes", "data")

    def __init__(self, name, qtype, dims, nbytes, data):
        self.name, self.qtype, self.dims, self.nbytes, self.data = name, qtype, dims, nbytes, data


class GGUFWriter:
    """w = GGUFWriter(path); w.add_field(...); w.add_tensor(...); w.write().

    A 'general.alignment' field (added directly or copied from a reader) sets the alignment;
    an alignment other than 32 given here adds that field at write time.
    """

    def __init__(self, path, alignment: int = DEFAULT_ALIGNMENT):
        self.path = Path(path)
        self._check_alignment(alignment)
        self.alignment = alignment
        self.fields: dict[str, GGUFField] = {}
        self._encoded: dict[str, bytes] = {}   # key -> encoded key + type + value
        self._tensors: dict[str, _PendingTensor] = {}

    # -- metadata -----------------------------------------------------------------------------
    def add_field(self, key: str, value: Any, vtype=None, elem_type=None) -> GGUFField:
        """Add one key-value pair. vtype / elem_type (GGUFValueType or int) are inferred when None:
        bool -> BOOL, int -> INT32 (INT64 / UINT64 if out of range), float -> FLOAT32, str -> STRING,
        numpy scalars and arrays by dtype, lists by their items. A GGUFField value keeps its types."""
        if not isinstance(key, str) or not key:
            raise GGUFError(self.path, f"field key must be a non-empty str, got {key!r}")
        _check_utf8(self.path, key, f"field key {key!r}")
        if key in self.fields:
            raise GGUFError(self.path, f"duplicate key {key!r}")
        if key == ALIGNMENT_KEY and vtype is None and not isinstance(value, GGUFField):
            vtype = _V.UINT32
        field = self._make_field(key, value, vtype, elem_type, depth=0)
        if key == ALIGNMENT_KEY:
            if field.vtype != _V.UINT32:
                raise GGUFError(self.path, f"field {key!r} must be UINT32, got {field.vtype.name}")
            self._check_alignment(field.value)
            self.alignment = field.value
        encoded_key = key.encode("utf-8")
        self._encoded[key] = (struct.pack("<Q", len(encoded_key)) + encoded_key
                              + struct.pack("<I", field.vtype) + self._encode(field))
        self.fields[key] = field
        return field

    def copy_fields(self, reader: GGUFReader, skip=()) -> None:
        """Copy every field of `reader` (file order, exact types) except the keys in `skip`."""
        skip = set(skip)
        for key, field in reader.fields.items():
            if key not in skip:
                self.add_field(key, field)

    def _check_alignment(self, a) -> None:
        if not isinstance(a, (int, np.integer)) or a <= 0 or a & (a - 1) or a > 0xFFFFFFFF:
            raise GGUFError(self.path, f"alignment {a!r} is not a power of two that fits in u32")

    def _make_field(self, key, value, vtype, elem_type, depth) -> GGUFField:
        if isinstance(value, GGUFField):   # keep its types unless told otherwise
            if vtype is None or (vtype == value.vtype and elem_type is None):
                vtype, elem_type = value.vtype, value.elem_type
            value = value.value
        if depth > MAX_ARRAY_DEPTH:
            raise GGUFError(self.path, f"field {key!r}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
        vtype = self._as_vtype(key, vtype) if vtype is not None else self._infer_type(key, value)
        if vtype != _V.ARRAY:
            if elem_type is not None:
                raise GGUFError(self.path, f"field {key!r}: elem_type given for a {vtype.name} value")
            return GGUFField(key, vtype, self._scalar(key, value, vtype))
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise GGUFError(self.path, f"field {key!r}: ARRAY value must be a sequence, got "
                                       f"{type(value).__name__}")
        elem_type = (self._as_vtype(key, elem_type) if elem_type is not None
                     else self._infer_elem_type(key, value))
        if elem_type == _V.STRING:
            items = [self._scalar(f"{key}[{i}]", v, _V.STRING) for i, v in enumerate(value)]
        elif elem_type == _V.ARRAY:
            items = [self._make_field(f"{key}[{i}]", v, _V.ARRAY, None, depth + 1)
                     for i, v in enumerate(value)]
        else:
            items = self._numeric_array(key, value, elem_type)
        return GGUFField(key, _V.ARRAY, items, elem_type)

    def _as_vtype(self, key, v) -> GGUFValueType:
        try:
            return _V(v)
        except ValueError:
            raise GGUFError(self.path, f"field {key!r}: unknown value type {v!r}") from None

    def _infer_type(self, key, value) -> GGUFValueType:
        if isinstance(value, (bool, np.bool_)):
            return _V.BOOL
        if isinstance(value, np.generic):
            return self._dtype_vtype(key, value.dtype)
        if isinstance(value, int):
            lo, hi = INTEGER_RANGES[_V.INT32]
            if lo <= value <= hi:
                return _V.INT32
            return _V.INT64 if value < 0 or value <= INTEGER_RANGES[_V.INT64][1] else _V.UINT64
        if isinstance(value, float):
            return _V.FLOAT32
        if isinstance(value, str):
            return _V.STRING
        if isinstance(value, (list, tuple, np.ndarray, GGUFField)):
            return _V.ARRAY
        raise GGUFError(self.path, f"field {key!r}: cannot store a {type(value).__name__} in GGUF")

    def _infer_elem_type(self, key, value) -> GGUFValueType:
        if isinstance(value, np.ndarray):
            return self._dtype_vtype(key, value.dtype)
        if len(value) == 0:
            raise GGUFError(self.path, f"field {key!r}: empty array needs an explicit elem_type")
        types = {self._infer_type(key, v) for v in value}
        if types <= {_V.INT32, _V.INT64, _V.UINT64}:
            return _V.INT32 if types == {_V.INT32} else (_V.UINT64 if _V.UINT64 in types else _V.INT64)
        if types <= {_V.INT32, _V.INT64, _V.FLOAT32}:
            return _V.FLOAT32
        if len(types) == 1:
            return types.pop()
        raise GGUFError(self.path, f"field {key!r}: array mixes element types "
                                   f"{sorted(t.name for t in types)}")

    def _dtype_vtype(self, key, dtype) -> GGUFValueType:
        vt = DTYPE_TO_VTYPE.get(np.dtype(dtype).newbyteorder("="))
        if vt is None:
            raise GGUFError(self.path, f"field {key!r}: numpy dtype {dtype} has no GGUF type")
        return vt

    def _scalar(self, key, value, vtype):
        if vtype == _V.STRING:
            if not isinstance(value, str):
                raise GGUFError(self.path, f"field {key!r}: STRING value must be str, got "
                                           f"{type(value).__name__}")
            _check_utf8(self.path, value, f"field {key!r}")
            return value
        if vtype == _V.BOOL:
            if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
                raise GGUFError(self.path, f"field {key!r}: {value!r} is not a bool")
            return bool(value)
        if vtype in INTEGER_RANGES:
            if isinstance(value, (float, np.floating)) or not isinstance(value, (int, np.integer)):
                raise GGUFError(self.path, f"field {key!r}: {vtype.name} value must be an int, "
                                           f"got {value!r}")
            lo, hi = INTEGER_RANGES[vtype]
            if not lo <= int(value) <= hi:
                raise GGUFError(self.path, f"field {key!r}: {value} out of {vtype.name} range")
            return int(value)
        if not isinstance(value, (int, float, np.integer, np.floating)):
            raise GGUFError(self.path, f"field {key!r}: {vtype.name} value must be a number")
        value = float(value)
        if vtype == _V.FLOAT32:
            try:
                struct.pack("<f", value)
            except OverflowError:
                raise GGUFError(self.path, f"field {key!r}: {value} overflows FLOAT32") from None
        return value

    def _numeric_array(self, key, value, elem_type) -> np.ndarray:
        target = SCALAR_DTYPES[elem_type]
        try:
            arr = np.asarray(value)
        except (ValueError, OverflowError) as e:
            raise GGUFError(self.path, f"field {key!r}: not a {elem_type.name} array: {e}") from None
        if arr.ndim != 1:
            raise GGUFError(self.path, f"field {key!r}: array must be 1-D, got shape {arr.shape}")
        if arr.size == 0:
            return np.zeros(0, target)
        kind = arr.dtype.kind
        if elem_type == _V.BOOL:
            if kind not in "biu" or not np.isin(arr, (0, 1)).all():
                raise GGUFError(self.path, f"field {key!r}: BOOL array holds non-bool values")
            return arr.astype(target)
        if elem_type in INTEGER_RANGES:
            if kind not in "biuO":
                raise GGUFError(self.path, f"field {key!r}: {elem_type.name} array holds "
                                           f"non-integers ({arr.dtype})")
            lo, hi = INTEGER_RANGES[elem_type]
            if kind == "O" and not all(isinstance(v, (int, np.integer)) for v in arr.tolist()):
                raise GGUFError(self.path, f"field {key!r}: {elem_type.name} array holds non-ints")
            if not (lo <= int(arr.min()) and int(arr.max()) <= hi):
                raise GGUFError(self.path, f"field {key!r}: values outside {elem_type.name} range")
            return arr.astype(target)
        if kind not in "biuf":
            raise GGUFError(self.path, f"field {key!r}: {elem_type.name} array holds non-numbers")
        with np.errstate(over="ignore"):
            out = arr.astype(target)
        if (np.isfinite(arr) & ~np.isfinite(out)).any():
            raise GGUFError(self.path, f"field {key!r}: values overflow {elem_type.name}")
        return out

    def _encode(self, field: GGUFField) -> bytes:
        """Value bytes of a field (without key and value type)."""
        v = field.value
        if field.vtype == _V.STRING:
            b = v.encode("utf-8")
            return struct.pack("<Q", len(b)) + b
        if field.vtype != _V.ARRAY:
            return struct.pack(SCALAR_FORMATS[field.vtype], v)
        head = struct.pack("<IQ", field.elem_type, len(v))
        if field.elem_type == _V.STRING:
            parts = []
            for s in v:
                b = s.encode("utf-8")
                parts += (struct.pack("<Q", len(b)), b)
            return head + b"".join(parts)
        if field.elem_type == _V.ARRAY:
            return head + b"".join(self._encode(item) for item in v)  # items: type+count+elems
        return head + np.ascontiguousarray(v, SCALAR_DTYPES[field.elem_type]).tobytes()

    # -- tensors ------------------------------------------------------------------------------
    def add_tensor(self, name: str, data, qtype, shape) -> None:
        """Add a tensor of torch-order `shape` (stored dims are reversed: a weight [out, in] is
        stored as ne0=in, ne1=out). `data`: its packed bytes (bytes-like, numpy/torch uint8 of any
        shape with the right size), or float/int values for F32/F16/BF16/F64/I8..I64 (converted),
        or a zero-argument callable returning either at write time."""
        what = f"tensor {name!r}"
        if not isinstance(name, str) or not name:
            raise GGUFError(self.path, f"tensor name must be a non-empty str, got {name!r}")
        if name in self._tensors:
            raise GGUFError(self.path, f"duplicate tensor name {name!r}")
        _check_utf8(self.path, name, what)
        if len(name.encode("utf-8")) >= GGML_MAX_NAME:
            raise GGUFError(self.path, f"{what}: name is {len(name.encode('utf-8'))} bytes; "
                                       f"llama.cpp accepts at most {GGML_MAX_NAME - 1}")
        qt = to_qtype(qtype)
        if qt not in REGISTRY or qt >= 1000:
            raise GGUFError(self.path, f"{what}: {qt.name} is not a ggml type")
        shape = tuple(int(d) for d in shape)
        if not 1 <= len(shape) <= MAX_DIMS or any(d < 0 for d in shape):
            raise GGUFError(self.path, f"{what}: shape {shape} must have 1..{MAX_DIMS} "
                                       "non-negative dims")
        info = REGISTRY[qt]
        if shape[-1] % info.block_size:
            raise GGUFError(self.path, f"{what}: row length {shape[-1]} is not a multiple of "
                                       f"{qt.name}'s block size {info.block_size}")
        if math.prod(shape) > INT64_MAX:
            raise GGUFError(self.path, f"{what}: shape {shape} overflows int64 (element count)")
        nbytes = math.prod(shape) // info.block_size * info.type_size
        t = _PendingTensor(name, qt, tuple(reversed(shape)), nbytes, data)
        if not callable(data):
            t.data = self._tensor_bytes(t, data)
        self._tensors[name] = t

    def _tensor_bytes(self, t: _PendingTensor, data) -> np.ndarray:
        what = f"tensor {t.name!r}"
        if type(data).__module__.startswith("torch"):
            import torch

            data = data.detach().to("cpu").contiguous()
            if data.dtype != torch.uint8:
                if t.qtype == QType.BF16:
                    data = data.to(torch.bfloat16).view(torch.int16)
                elif data.is_floating_point() and data.dtype not in (torch.float32, torch.float64,
                                                                    torch.float16):
                    data = data.float()
            data = data.numpy()
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                if t.qtype == QType.BF16 and data.dtype.kind == "f":
                    raise GGUFError(self.path, f"{what}: pass BF16 values as a torch tensor "
                                               "(numpy has no bfloat16)")
                target = _ELEMENT_DTYPES.get(t.qtype, "<i2" if t.qtype == QType.BF16 else None)
                if target is None:
                    raise GGUFError(self.path, f"{what}: {t.qtype.name} data must be packed uint8 "
                                               f"bytes, got {data.dtype}")
                data = data.astype(target, copy=False)
            data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        else:
            try:
                data = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
            except TypeError:
                raise GGUFError(self.path, f"{what}: data of type {type(data).__name__} is not "
                                           "bytes-like, numpy or torch") from None
        if data.size != t.nbytes:
            raise GGUFError(self.path, f"{what}: got {data.size} bytes but {t.qtype.name} shape "
                                       f"{tuple(reversed(t.dims))} needs {t.nbytes}")
        return data

    # -- output -------------------------------------------------------------------------------
    def _check_destination(self) -> None:
        """Before any byte is written: the directory exists and is writable, the target is not one."""
        parent = self.path.parent
        if not parent.is_dir():
            raise GGUFError(self.path, f"cannot write: directory {parent} does not exist")
        if self.path.is_dir():
            raise GGUFError(self.path, "cannot write: it is a directory")
        if not os.access(parent, os.W_OK):
            raise GGUFError(self.path, f"cannot write: directory {parent} is not writable")

    def write(self, progress: Callable | Any = None) -> Path:
        """Write the file (to a temporary name, then renamed into place). `progress`: a tqdm-like
        object (its update(nbytes) is called per tensor) or a callable(name, done_bytes, total)."""
        if self.alignment != DEFAULT_ALIGNMENT and ALIGNMENT_KEY not in self.fields:
            self.add_field(ALIGNMENT_KEY, self.alignment, _V.UINT32)
        align = self.alignment
        pad = lambda n: -n % align  # noqa: E731
        infos, offset = [], 0
        for t in self._tensors.values():
            name = t.name.encode("utf-8")
            infos.append(struct.pack("<Q", len(name)) + name + struct.pack(
                f"<I{len(t.dims)}QIQ", len(t.dims), *t.dims, t.qtype, offset))
            offset += t.nbytes + pad(t.nbytes)
        head = b"".join([GGUF_MAGIC, struct.pack("<IQQ", WRITE_VERSION, len(self._tensors),
                                                 len(self._encoded)),
                         *self._encoded.values(), *infos])
        total = sum(t.nbytes for t in self._tensors.values())
        self._check_destination()
        # temp files of writers that were killed (SIGKILL leaves no chance to clean up): any
        # ".<name>.<pid>.tmp" whose pid is gone
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            pid = stale.name[len(self.path.name) + 2:-4]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                stale.unlink(missing_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(head + bytes(pad(len(head))))
                done = 0
                for t in self._tensors.values():
                    data = self._tensor_bytes(t, t.data()) if callable(t.data) else t.data
                    f.write(memoryview(data))
                    f.write(bytes(pad(t.nbytes)))
                    done += t.nbytes
                    _report(progress, t.name, t.nbytes, done, total)
                f.flush()
                os.fsync(f.fileno())   # the bytes are on disk before the name points at them
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self.path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_utf8(path, text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise GGUFError(path, f"{what}: not encodable as UTF-8 ({e.reason})") from None


def _report(progress, name, nbytes, done, total) -> None:
    if progress is None:
        return
    if hasattr(progress, "update"):
        progress.update(nbytes)
    else:
        progress(name, done, total)
