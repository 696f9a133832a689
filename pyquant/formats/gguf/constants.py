"""GGUF container constants: magic, versions, metadata value types and their binary encodings.

Facts from the GGUF spec (ggml docs/gguf.md) as restated in shared/specs/gguf.md; all little-endian.
"""
from __future__ import annotations

import enum

import numpy as np

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)   # v1 used 32-bit counts and lengths; nothing current writes it
WRITE_VERSION = 3
DEFAULT_ALIGNMENT = 32
ALIGNMENT_KEY = "general.alignment"
MAX_DIMS = 4                  # GGML_MAX_DIMS: ggml tensors have at most 4 axes
MAX_ARRAY_DEPTH = 8           # arrays of arrays of ...: real files use at most 2 levels
INT64_MAX = (1 << 63) - 1     # ggml stores dims and sizes as int64


class GGUFValueType(enum.IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12

    @property
    def is_numeric(self) -> bool:
        """Fixed-size scalar (everything but STRING and ARRAY)."""
        return self in SCALAR_DTYPES


_V = GGUFValueType
# numpy dtype (little-endian) of each fixed-size type; BOOL is one byte, 0 = false.
SCALAR_DTYPES: dict[GGUFValueType, np.dtype] = {
    _V.UINT8: np.dtype("<u1"),
    _V.INT8: np.dtype("<i1"),
    _V.UINT16: np.dtype("<u2"),
    _V.INT16: np.dtype("<i2"),
    _V.UINT32: np.dtype("<u4"),
    _V.INT32: np.dtype("<i4"),
    _V.FLOAT32: np.dtype("<f4"),
    _V.BOOL: np.dtype("?"),
    _V.UINT64: np.dtype("<u8"),
    _V.INT64: np.dtype("<i8"),
    _V.FLOAT64: np.dtype("<f8"),
}
# struct format of each fixed-size type
SCALAR_FORMATS: dict[GGUFValueType, str] = {
    _V.UINT8: "<B", _V.INT8: "<b", _V.UINT16: "<H", _V.INT16: "<h",
    _V.UINT32: "<I", _V.INT32: "<i", _V.FLOAT32: "<f", _V.BOOL: "<?",
    _V.UINT64: "<Q", _V.INT64: "<q", _V.FLOAT64: "<d",
}
# the value type a numpy dtype is written as
DTYPE_TO_VTYPE: dict[np.dtype, GGUFValueType] = {
    np.dtype(d).newbyteorder("="): v for v, d in SCALAR_DTYPES.items()
}
INTEGER_RANGES: dict[GGUFValueType, tuple[int, int]] = {
    _V.UINT8: (0, 0xFF), _V.INT8: (-0x80, 0x7F),
    _V.UINT16: (0, 0xFFFF), _V.INT16: (-0x8000, 0x7FFF),
    _V.UINT32: (0, 0xFFFFFFFF), _V.INT32: (-0x80000000, 0x7FFFFFFF),
    _V.UINT64: (0, (1 << 64) - 1), _V.INT64: (-(1 << 63), (1 << 63) - 1),
}

# Smallest encodings, used to reject forged counts before any loop or allocation:
# a string is at least its u64 length; an array at least its u32 element type + u64 count.
MIN_STRING_BYTES = 8
MIN_ARRAY_BYTES = 12
MIN_KV_BYTES = 8 + 4 + 1             # key length, value type, 1-byte value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8   # name length, n_dims, one dim, type, offset


def min_value_bytes(vtype: GGUFValueType) -> int:
    if vtype == _V.STRING:
        return MIN_STRING_BYTES
    if vtype == _V.ARRAY:
        return MIN_ARRAY_BYTES
    return SCALAR_DTYPES[vtype].itemsize
