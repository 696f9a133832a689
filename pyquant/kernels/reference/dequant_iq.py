"""Plain torch reference dequantizers for the ggml i-quants, readable as the spec.

IQ_DEQUANTIZERS maps QType -> fn(blocks: uint8 [nb, type_size]) -> float32 [nb, block_size].

Formats (llama.cpp ggml-common.h, dequantize_row_iq* in ggml-quants.c); all fields little-endian.
The lattice types store, per group of 8 (or 4) elements, an index into a fixed grid of magnitudes
(iq_tables.py), 8 sign bits (often 7 stored + parity) and a small per-32/16-element scale:

  IQ2_XXS  66 B  d:f16 | 8 x [4 grid bytes | u32: 4 x 7-bit sign index, scale in bits 28..31]
  IQ2_XS   74 B  d:f16 | u16 qs[32]: grid index (9 bits) | sign index << 9 | scales[8] (4-bit, per 16)
  IQ2_S    82 B  d:f16 | qs[32] | signs[32] | qh[8] (2 high index bits per group) | scales[8]
  IQ3_XXS  98 B  d:f16 | qs[64] (4-element grid indices) | 8 x u32 sign indices + scale (bits 28..31)
  IQ3_S   110 B  d:f16 | qs[64] | qh[8] (9th index bit) | signs[32] | scales[4] (4-bit, per 32)
  IQ1_S    50 B  d:f16 | qs[32] | u16 qh[8]: 4 x 3 high index bits, scale bits 12..14, delta sign bit 15
  IQ1_M    56 B  qs[32] | qh[16] (nibble per group: 3 index bits + delta sign) | u16 scales[4]
                 (3-bit scales per 16 elements; the f16 d is split over the four top nibbles)
  IQ4_NL   18 B  d:f16 | qs[16]: y = d * kvalues[nibble] (low nibbles = first 16 elements)
  IQ4_XS  136 B  d:f16 | u16 scales_h | scales_l[4] | qs[128]: 6-bit scales ls, dl = d * (ls - 32)

Bit-exactness with gguf-py (gguf.quants) requires its float32 operation order, followed here:
  IQ2_*:   ((d * (0.5 + s)) * 0.25) * grid * sign     IQ3_XXS: ((d * (0.5 + s)) * 0.5) * grid * sign
  IQ3_S:   (d * (1 + 2 s)) * grid * sign               IQ1_*:   (d * (2 s + 1)) * (grid + delta)
  IQ4_NL:  d * kvalue                                  IQ4_XS:  (d * (ls - 32)) * kvalue
Signs are *multiplications* by +-1 (not negations), so NaN scales keep the oracle's NaN bits.
"""
from __future__ import annotations

import torch

from ...qtypes import QType
from . import iq_tables as T


def _table(spec: tuple, dtype: torch.dtype) -> torch.Tensor:
    entries, width, data = spec
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(entries, width).float()


# Grids as float [entries, elements]; ksigns as uint8 [128] (bit j = element j negative).
_GRIDS: dict[str, torch.Tensor] = {}


def _grid(name: str) -> torch.Tensor:
    if name not in _GRIDS:
        dtype = torch.int8 if name == "IQ1S_GRID" else torch.uint8
        _GRIDS[name] = _table(getattr(T, name), dtype)
    return _GRIDS[name]


_KSIGNS = torch.tensor(list(T.KSIGNS_IQ2XS), dtype=torch.int64)
_KVALUES = torch.tensor(T.KVALUES_IQ4NL, dtype=torch.float32)
_BITS8 = torch.arange(8)


# ------------------------------------------------------------------------ field helpers


def _u16(b: torch.Tensor) -> torch.Tensor:
    """[..., 2k] uint8 -> int64 [..., k] little-endian words."""
    b = b.long()
    return b[..., 0::2] | (b[..., 1::2] << 8)


def _u32(b: torch.Tensor) -> torch.Tensor:
    """[..., 4k] uint8 -> int64 [..., k] little-endian words."""
    b = b.long()
    return b[..., 0::4] | (b[..., 1::4] << 8) | (b[..., 2::4] << 16) | (b[..., 3::4] << 24)


def _f16_bits_to_f32(h: torch.Tensor) -> torch.Tensor:
    """int64 f16 bit patterns -> float32, exactly, NaN payloads included.

    Done on the bits because torch's own half -> float conversion is not payload-exact: its scalar
    path (small or tail tensors) returns the canonical NaN 0x7fffffff, its vector path keeps the payload."""
    sign = (h & 0x8000) << 16
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    normal = sign | ((exp + 112) << 23) | (mant << 13)
    inf_nan = sign | 0x7F800000 | (mant << 13)
    # subnormal (and zero): mant * 2^-24 is exact in float32; the sign is OR-ed in to keep -0.
    sub = (mant.float() * 2.0**-24).view(torch.int32).long() | sign
    bits = torch.where(exp == 0x1F, inf_nan, torch.where(exp == 0, sub, normal))
    return torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32).view(torch.float32)


def _f16(b: torch.Tensor) -> torch.Tensor:
    """[nb, 2] uint8 -> float32 [nb, 1]."""
    return _f16_bits_to_f32(_u16(b))


def _sign_factors(sign_bytes: torch.Tensor) -> torch.Tensor:
    """int64 [...] bytes of sign bits -> float32 [..., 8] of +1 / -1 (bit j set = element j negative)."""
    bits = (sign_bytes.unsqueeze(-1) >> _BITS8) & 1
    return 1.0 - 2.0 * bits.float()


def _nibbles(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., n] -> int64 [..., 2n]: the n low nibbles, then the n high nibbles."""
    b = b.long()
    return torch.cat([b & 15, b >> 4], dim=-1)


# ------------------------------------------------------------------------ IQ2 / IQ3 lattices
def dequant_iq2_xxs(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    d = _f16(blocks[:, 0:2])                                   # [nb, 1]
    groups = blocks[:, 2:].reshape(nb, 8, 8)                   # 8 groups of 32 elements
    grid_idx = groups[:, :, 0:4].long()                        # [nb, 8, 4]
    aux = _u32(groups[:, :, 4:8]).squeeze(-1)                  # [nb, 8]
    db = d * (0.5 + (aux >> 28).float()) * 0.25                # [nb, 8]
    sign_idx = (aux.unsqueeze(-1) >> (7 * torch.arange(4))) & 127   # [nb, 8, 4]
    signs = _sign_factors(_KSIGNS[sign_idx])                   # [nb, 8, 4, 8]
    grid = _grid("IQ2XXS_GRID")[grid_idx]                      # [nb, 8, 4, 8]
    return (db[:, :, None, None] * grid * signs).reshape(nb, 256)


def _iq2_scales(d: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """IQ2_XS / IQ2_S: 8 bytes -> 16 db values (one per 16 elements, low nibble first)."""
    s = torch.stack([scales.long() & 15, scales.long() >> 4], dim=-1).reshape(scales.shape[0], 16)
    return d * (0.5 + s.float()) * 0.25                        # [nb, 16]


def dequant_iq2_xs(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    d = _f16(blocks[:, 0:2])
    qs = _u16(blocks[:, 2:66])                                 # [nb, 32]
    db = _iq2_scales(d, blocks[:, 66:74])                      # [nb, 16]
    grid = _grid("IQ2XS_GRID")[qs & 511]                       # [nb, 32, 8]
    signs = _sign_factors(_KSIGNS[qs >> 9])                    # [nb, 32, 8]
    db = db.repeat_interleave(2, dim=1)[:, :, None]            # [nb, 32, 1]
    return (db * grid * signs).reshape(nb, 256)


def dequant_iq2_s(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    d = _f16(blocks[:, 0:2])
    qs = blocks[:, 2:34].long()                                # [nb, 32]
    sign_bytes = blocks[:, 34:66].long()                       # [nb, 32]
    qh = blocks[:, 66:74].long()                               # [nb, 8]
    high = (qh.unsqueeze(-1) >> (2 * torch.arange(4))) & 3     # [nb, 8, 4]
    idx = qs | (high.reshape(nb, 32) << 8)
    db = _iq2_scales(d, blocks[:, 74:82]).repeat_interleave(2, dim=1)[:, :, None]
    grid = _grid("IQ2S_GRID")[idx]                             # [nb, 32, 8]
    return (db * grid * _sign_factors(sign_bytes)).reshape(nb, 256)


def dequant_iq3_xxs(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    d = _f16(blocks[:, 0:2])
    qs = blocks[:, 2:66].long().reshape(nb, 8, 4, 2)           # [nb, 8 groups, 4 x 8 elements, 2 grid entries]
    aux = _u32(blocks[:, 66:98])                               # [nb, 8]
    db = d * (0.5 + (aux >> 28).float()) * 0.5                 # [nb, 8]
    sign_idx = (aux.unsqueeze(-1) >> (7 * torch.arange(4))) & 127
    signs = _sign_factors(_KSIGNS[sign_idx])                   # [nb, 8, 4, 8]
    grid = _grid("IQ3XXS_GRID")[qs].reshape(nb, 8, 4, 8)       # two 4-element entries -> 8
    return (db[:, :, None, None] * grid * signs).reshape(nb, 256)


def dequant_iq3_s(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    d = _f16(blocks[:, 0:2])
    qs = blocks[:, 2:66].long()                                # [nb, 64]
    qh = blocks[:, 66:74].long()                               # [nb, 8]
    sign_bytes = blocks[:, 74:106].long()                      # [nb, 32]
    scales = blocks[:, 106:110].long()                         # [nb, 4]
    s = torch.stack([scales & 15, scales >> 4], dim=-1).reshape(nb, 8)
    db = d * (1 + 2 * s).float()                               # [nb, 8]
    idx = qs | ((((qh.unsqueeze(-1) >> _BITS8) & 1).reshape(nb, 64)) << 8)
    grid = _grid("IQ3S_GRID")[idx].reshape(nb, 8, 32)          # [nb, 8, 32]
    signs = _sign_factors(sign_bytes).reshape(nb, 8, 32)
    return (db[:, :, None] * grid * signs).reshape(nb, 256)


# ------------------------------------------------------------------------ IQ1 ternary lattice
def dequant_iq1_s(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    d = _f16(blocks[:, 0:2])
    qs = blocks[:, 2:34].long().reshape(nb, 8, 4)
    qh = _u16(blocks[:, 34:50])                                # [nb, 8]
    dl = d * (2 * ((qh >> 12) & 7) + 1).float()                # [nb, 8]
    delta = torch.where((qh & 0x8000) != 0, -T.IQ1S_DELTA, T.IQ1S_DELTA).float()
    idx = qs | (((qh.unsqueeze(-1) >> (3 * torch.arange(4))) & 7) << 8)   # [nb, 8, 4]
    grid = _grid("IQ1S_GRID")[idx]                             # [nb, 8, 4, 8]
    return (dl[:, :, None, None] * (grid + delta[:, :, None, None])).reshape(nb, 256)


def dequant_iq1_m(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    qs = blocks[:, 0:32].long()                                # [nb, 32] groups of 8
    qh = blocks[:, 32:48].long()                               # [nb, 16]
    sc = _u16(blocks[:, 48:56])                                # [nb, 4]
    dbits = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0xF0) | ((sc[:, 2] >> 4) & 0xF00) | (sc[:, 3] & 0xF000)
    d = _f16_bits_to_f32(dbits)[:, None]                       # [nb, 1]
    s = ((sc.unsqueeze(-1) >> (3 * torch.arange(4))) & 7).reshape(nb, 16)
    dl = (d * (2 * s + 1).float()).repeat_interleave(2, dim=1)       # [nb, 32], one per group
    h = torch.stack([qh & 15, qh >> 4], dim=-1).reshape(nb, 32)      # nibble per group
    delta = torch.where((h & 8) != 0, -T.IQ1S_DELTA, T.IQ1S_DELTA).float()
    grid = _grid("IQ1S_GRID")[qs | ((h & 7) << 8)]             # [nb, 32, 8]
    return (dl[:, :, None] * (grid + delta[:, :, None])).reshape(nb, 256)


# ------------------------------------------------------------------------ IQ4 non-linear codebook
def dequant_iq4_nl(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks[:, 0:2])                                   # [nb, 1]
    return d * _KVALUES[_nibbles(blocks[:, 2:18])]             # [nb, 32]


def dequant_iq4_xs(blocks: torch.Tensor) -> torch.Tensor:
    nb = blocks.shape[0]
    d = _f16(blocks[:, 0:2])
    scales_h = _u16(blocks[:, 2:4])                            # [nb, 1]
    scales_l = blocks[:, 4:8].long()
    lo = torch.stack([scales_l & 15, scales_l >> 4], dim=-1).reshape(nb, 8)
    hi = (scales_h >> (2 * torch.arange(8))) & 3               # [nb, 8]
    dl = d * ((lo | (hi << 4)) - 32).float()                   # [nb, 8]
    q = _nibbles(blocks[:, 8:136].reshape(nb, 8, 16))          # [nb, 8, 32]
    return (dl[:, :, None] * _KVALUES[q]).reshape(nb, 256)


IQ_DEQUANTIZERS = {
    QType.IQ2_XXS: dequant_iq2_xxs,
    QType.IQ2_XS: dequant_iq2_xs,
    QType.IQ2_S: dequant_iq2_s,
    QType.IQ3_XXS: dequant_iq3_xxs,
    QType.IQ3_S: dequant_iq3_s,
    QType.IQ1_S: dequant_iq1_s,
    QType.IQ1_M: dequant_iq1_m,
    QType.IQ4_NL: dequant_iq4_nl,
    QType.IQ4_XS: dequant_iq4_xs,
}
