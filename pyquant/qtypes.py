"""The one registry of quant types.

Every ggml type (ids as in GGUF files) with its block geometry, plus pyquant's generic formats
(``int4`` group-wise asymmetric, ``int8`` per-channel symmetric) used for AWQ/EXL2-style weights.
The C++ side mirrors the ggml part in csrc/common/qtypes.h (tests/test_qtypes.py checks it).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import UnsupportedQTypeError


class QType(enum.IntEnum):
    """Every weight format pyquant knows: the ggml types with their GGUF ids (F32 = 0 ... IQ4_XS = 23,
    BF16 = 30, ...) plus pyquant's generic INT4 (group-wise asymmetric, AWQ semantics) and INT8
    (per-channel symmetric), numbered from 1000. `pyquant.qtype("q4_k")` parses a name; block
    geometry and kind are in `pyquant.qtypes.info(qt)`."""
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    # pyquant's generic formats (not ggml ids; never written to GGUF files)
    INT4 = 1000
    INT8 = 1001
    EXL2 = 1002   # EXL2's mixed-width 32-blocks (pyquant/formats/exl2/native.py), widths in `block_bits`


class Kind(enum.Enum):
    FLOAT = "float"          # plain floating point elements
    INTEGER = "integer"      # plain integer elements (not weights)
    LEGACY = "legacy"        # ggml Q4_0..Q8_1: 32-element blocks, one scale
    KQUANT = "k-quant"       # ggml Q2_K..Q8_K: 256-element super-blocks with sub-block scales
    IQUANT = "i-quant"       # ggml IQ*: lattice / non-linear codebooks
    TERNARY = "ternary"      # ggml TQ1_0/TQ2_0
    FP4 = "fp4"              # MXFP4 / NVFP4 micro-scaled float4
    GENERIC = "generic"      # pyquant int4 / int8 / exl2


@dataclass(frozen=True)
class QTypeInfo:
    qtype: QType
    block_size: int   # elements per block (1 for element types; group size is a parameter for INT4)
    type_size: int    # bytes per block
    kind: Kind
    activation_only: bool = False  # Q8_1 / Q8_K exist for activations in llama.cpp

    @property
    def name(self) -> str:
        return self.qtype.name

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.type_size / self.block_size


_T = QType
_K = Kind
REGISTRY: dict[QType, QTypeInfo] = {
    info.qtype: info
    for info in [
        QTypeInfo(_T.F32, 1, 4, _K.FLOAT),
        QTypeInfo(_T.F16, 1, 2, _K.FLOAT),
        QTypeInfo(_T.BF16, 1, 2, _K.FLOAT),
        QTypeInfo(_T.F64, 1, 8, _K.FLOAT),
        QTypeInfo(_T.I8, 1, 1, _K.INTEGER),
        QTypeInfo(_T.I16, 1, 2, _K.INTEGER),
        QTypeInfo(_T.I32, 1, 4, _K.INTEGER),
        QTypeInfo(_T.I64, 1, 8, _K.INTEGER),
        QTypeInfo(_T.Q4_0, 32, 18, _K.LEGACY),
        QTypeInfo(_T.Q4_1, 32, 20, _K.LEGACY),
        QTypeInfo(_T.Q5_0, 32, 22, _K.LEGACY),
        QTypeInfo(_T.Q5_1, 32, 24, _K.LEGACY),
        QTypeInfo(_T.Q8_0, 32, 34, _K.LEGACY),
        QTypeInfo(_T.Q8_1, 32, 40, _K.LEGACY, activation_only=True),
        QTypeInfo(_T.Q2_K, 256, 84, _K.KQUANT),
        QTypeInfo(_T.Q3_K, 256, 110, _K.KQUANT),
        QTypeInfo(_T.Q4_K, 256, 144, _K.KQUANT),
        QTypeInfo(_T.Q5_K, 256, 176, _K.KQUANT),
        QTypeInfo(_T.Q6_K, 256, 210, _K.KQUANT),
        QTypeInfo(_T.Q8_K, 256, 292, _K.KQUANT, activation_only=True),
        QTypeInfo(_T.IQ2_XXS, 256, 66, _K.IQUANT),
        QTypeInfo(_T.IQ2_XS, 256, 74, _K.IQUANT),
        QTypeInfo(_T.IQ2_S, 256, 82, _K.IQUANT),
        QTypeInfo(_T.IQ3_XXS, 256, 98, _K.IQUANT),
        QTypeInfo(_T.IQ3_S, 256, 110, _K.IQUANT),
        QTypeInfo(_T.IQ1_S, 256, 50, _K.IQUANT),
        QTypeInfo(_T.IQ1_M, 256, 56, _K.IQUANT),
        QTypeInfo(_T.IQ4_NL, 32, 18, _K.IQUANT),
        QTypeInfo(_T.IQ4_XS, 256, 136, _K.IQUANT),
        QTypeInfo(_T.TQ1_0, 256, 54, _K.TERNARY),
        QTypeInfo(_T.TQ2_0, 256, 66, _K.TERNARY),
        QTypeInfo(_T.MXFP4, 32, 17, _K.FP4),
        QTypeInfo(_T.NVFP4, 64, 36, _K.FP4),
        # Generic formats: block_size/type_size describe the packed integers only (4 bits or 8 bits
        # per weight); scales and zero points are stored beside them.
        QTypeInfo(_T.INT4, 2, 1, _K.GENERIC),
        QTypeInfo(_T.INT8, 1, 1, _K.GENERIC),
        # EXL2: 32-element blocks of 2..8 bits each (2 + 4 b bytes); type_size is the 4-bit block's
        QTypeInfo(_T.EXL2, 32, 18, _K.GENERIC),
    ]
}

GGML_TYPES = tuple(t for t in REGISTRY if t < 1000)


def qtype(value) -> QType:
    """Resolve a quant type given as QType, ggml id (int) or name ('q4_k', 'Q4_K')."""
    if isinstance(value, QType):
        return value
    if isinstance(value, str):
        try:
            return QType[value.strip().upper()]
        except KeyError:
            raise UnsupportedQTypeError(
                f"unknown quant type name {value!r}; known: {', '.join(t.name for t in REGISTRY)}"
            ) from None
    try:
        return QType(int(value))
    except (ValueError, TypeError):
        raise UnsupportedQTypeError(f"unknown quant type id {value!r}") from None


def info(value) -> QTypeInfo:
    return REGISTRY[qtype(value)]


def row_bytes(value, ncols: int) -> int:
    """Bytes of one row of `ncols` elements; raises if ncols is not a multiple of the block size."""
    i = info(value)
    if i.qtype is QType.EXL2:
        raise UnsupportedQTypeError("EXL2: a row's bytes follow from its block widths "
                                    "(pyquant.formats.exl2.native.row_bytes(block_bits))")
    if ncols % i.block_size:
        raise UnsupportedQTypeError(
            f"{i.name}: row length {ncols} is not a multiple of the block size {i.block_size}"
        )
    return ncols // i.block_size * i.type_size
