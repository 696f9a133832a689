"""pyquant's two generic weight formats, packed from float weights.

Two steps, kept apart on purpose: *quantize* produces the weight "as stored" by the usual
producers (AWQ/GPTQ-style integer codes plus per-group scale and zero point), *repack* turns that
into the layout the kernels read. AWQ / EXL2 readers later produce the "as stored" form from their
checkpoints and call the same repack functions.

int4 (group-wise asymmetric, AWQ semantics): w[n, k] ~= (q[n, k] - z[n, g]) * s[n, g], with
q, z in 0..15 and g = k // group_size (group_size in 32, 64, 128).
  as stored:    q uint8 [N, K] (one code per byte), scales float [N, K/g], zeros uint8 [N, K/g]
  kernel layout: qweight uint8 [N, K/2]; inside each run of 32 consecutive k, byte j holds code j in
                its low nibble and code j+16 in its high nibble (ggml's Q4 order, so one 16-byte load
                gives 32 codes); scales float32 [N, K/g]; mins float32 [N, K/g] = -z * s, so that the
                kernel computes w = q * scale + min with one FMA.

int8 (per-output-channel symmetric): w[n, k] ~= q[n, k] * s[n], q in -127..127 (never -128, so the
format is symmetric and negation-safe).
  as stored = kernel layout: qweight int8 [N, K], scales float32 [N].
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import UnsupportedQTypeError

INT4_GROUP_SIZES = (32, 64, 128)
# Smallest scale: a constant group would otherwise give scale 0 and 0/0 codes (AWQ clamps the same way).
_MIN_SCALE = 1e-5


class Int4Stored(NamedTuple):
    """int4 weight as stored by producers: q uint8 [N, K] codes 0..15, scales float [N, K/g],
    zeros uint8 [N, K/g] codes 0..15; w ~= (q - zeros) * scales."""
    q: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    group_size: int


class Int4Packed(NamedTuple):
    """int4 kernel layout: qweight uint8 [N, K/2] (ggml Q4 nibble order per 32), scales and mins
    float32 [N, K/g]; w = q * scales + mins."""
    qweight: torch.Tensor
    scales: torch.Tensor
    mins: torch.Tensor
    group_size: int


class Int8Packed(NamedTuple):
    """int8 kernel layout: qweight int8 [N, K], scales float32 [N]; w = q * scales."""
    qweight: torch.Tensor
    scales: torch.Tensor


def check_int4_shape(n: int, k: int, group_size: int) -> None:
    """Raise UnsupportedQTypeError unless an [n, k] weight can be int4 with this group size."""
    if group_size not in INT4_GROUP_SIZES:
        raise UnsupportedQTypeError(f"int4: group_size {group_size} not supported (one of {INT4_GROUP_SIZES})")
    if k % group_size:
        raise UnsupportedQTypeError(
            f"int4: in_features {k} is not a multiple of group_size {group_size}")


def _as_2d_float(w: torch.Tensor, what: str) -> torch.Tensor:
    if w.dim() != 2:
        raise UnsupportedQTypeError(f"{what}: weight must be 2-D [out, in], got shape {tuple(w.shape)}")
    if not w.is_floating_point():
        raise UnsupportedQTypeError(f"{what}: weight must be floating point, got {w.dtype}")
    return w.detach().to(torch.float32)


def quantize_int4(w: torch.Tensor, group_size: int = 128) -> Int4Stored:
    """Round-to-nearest asymmetric int4 of a float weight w [N, K] (any float dtype, any device).

    Per group: scale = (max - min) / 15, zero = round(-min / scale) clamped to 0..15,
    q = clamp(round(w / scale) + zero, 0, 15), as AWQ's pseudo-quantizer (range widened to hold 0).
    """
    w = _as_2d_float(w, "int4")
    n, k = w.shape
    check_int4_shape(n, k, group_size)
    g = w.reshape(n, k // group_size, group_size)
    # Unlike AWQ, the range always includes 0: a one-signed group (min > 0) would otherwise clamp z to 0
    # and clip its largest codes; with 0 inside, z stays in 0..15 and w = 0 is exact.
    wmax = g.amax(dim=-1).clamp(min=0.0)
    wmin = g.amin(dim=-1).clamp(max=0.0)
    scales = ((wmax - wmin) / 15.0).clamp(min=_MIN_SCALE)
    zeros = torch.round(-wmin / scales).clamp(0, 15)
    q = (torch.round(g / scales[..., None]) + zeros[..., None]).clamp(0, 15)
    return Int4Stored(q.reshape(n, k).to(torch.uint8), scales, zeros.to(torch.uint8), group_size)


def repack_int4(stored: Int4Stored) -> Int4Packed:
    """As stored -> kernel layout (see module docstring). Works on any device."""
    q, scales, zeros, gs = stored
    n, k = q.shape
    check_int4_shape(n, k, gs)
    if k % 32:
        raise UnsupportedQTypeError(f"int4: in_features {k} is not a multiple of 32")
    if scales.shape != (n, k // gs) or zeros.shape != (n, k // gs):
        raise UnsupportedQTypeError(
            f"int4: scales {tuple(scales.shape)} / zeros {tuple(zeros.shape)} do not match "
            f"q {tuple(q.shape)} with group_size {gs} (expected {(n, k // gs)})")
    scales32 = scales.to(torch.float32).contiguous()
    mins = (-zeros.to(torch.float32) * scales32).contiguous()
    return Int4Packed(pack_int4_codes(q), scales32, mins, gs)


def pack_int4_codes(q: torch.Tensor) -> torch.Tensor:
    """Codes uint8 [N, K] (0..15, K % 32 == 0) -> kernel-layout qweight uint8 [N, K/2]."""
    n, k = q.shape
    codes = q.to(torch.uint8).reshape(n, k // 32, 2, 16)
    qweight = (codes[:, :, 0, :] & 0x0F) | ((codes[:, :, 1, :] & 0x0F) << 4)
    return qweight.reshape(n, k // 2).contiguous()


_NIBBLE_SHIFTS = torch.arange(0, 32, 4, dtype=torch.int32)


def word_nibbles(words: torch.Tensor, chunk_rows: int = 1024) -> torch.Tensor:
    """int32 words [R, ...] -> uint8 [R, ..., 8], nibble i (bits 4i..4i+3) of each word at index i
    (how AWQ packs codes and zeros and EXL2 its scale codes). Done chunk_rows rows at a time: the
    int32 intermediate is 32 bytes per code (1.9 GB for one 4096 x 14336 weight at once)."""
    out = torch.empty((*words.shape, 8), dtype=torch.uint8)
    for r in range(0, words.shape[0], chunk_rows):
        out[r:r + chunk_rows] = (words[r:r + chunk_rows].to(torch.int32)[..., None] >> _NIBBLE_SHIFTS) & 0xF
    return out


def nibble_words(nibbles: torch.Tensor) -> torch.Tensor:
    """The inverse of word_nibbles: values 0..15 [..., 8] -> int32 words [...]."""
    return int32_words((nibbles.to(torch.int64) << _NIBBLE_SHIFTS.to(torch.int64)).sum(-1))


def int32_words(v: torch.Tensor) -> torch.Tensor:
    """Unsigned 32-bit values held in int64 -> the int32 tensor with the same bits (what checkpoints
    store packed words as)."""
    return torch.where(v >= 2**31, v - 2**32, v).to(torch.int32)


def unpack_int4_codes(qweight: torch.Tensor) -> torch.Tensor:
    """Kernel-layout qweight uint8 [N, K/2] -> codes uint8 [N, K] in natural k order."""
    n, half = qweight.shape
    b = qweight.reshape(n, half // 16, 1, 16)
    return torch.cat([b & 0x0F, b >> 4], dim=2).reshape(n, half * 2)


def pack_int4(w: torch.Tensor, group_size: int = 128) -> Int4Packed:
    """Float weight [N, K] -> int4 kernel layout (quantize_int4 then repack_int4)."""
    return repack_int4(quantize_int4(w, group_size))


def quantize_int8(w: torch.Tensor) -> Int8Packed:
    """Symmetric per-output-channel int8 of w [N, K]: scale = max|w_n| / 127, q = round(w / scale)."""
    w = _as_2d_float(w, "int8")
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=_MIN_SCALE)
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Packed(q.contiguous(), scales.contiguous())


def repack_int8(q: torch.Tensor, scales: torch.Tensor) -> Int8Packed:
    """As stored (any integer dtype with values in -127..127, any float scales [N]) -> kernel layout."""
    if q.dim() != 2 or scales.shape != (q.shape[0],):
        raise UnsupportedQTypeError(
            f"int8: expected q [N, K] and scales [N], got {tuple(q.shape)} and {tuple(scales.shape)}")
    return Int8Packed(q.to(torch.int8).contiguous(), scales.to(torch.float32).contiguous())


def pack_int8(w: torch.Tensor) -> Int8Packed:
    """Float weight [N, K] -> int8 kernel layout."""
    return quantize_int8(w)
