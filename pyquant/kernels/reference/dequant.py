"""Plain torch dequantizers for every ggml type: the readable specification and the fallback that
runs on any device.

Each dequantizer takes blocks as a uint8 tensor [nblocks, type_size] and returns float32
[nblocks, block_size]. They are bit-exact with gguf-py (``gguf.quants.dequantize``): the same
float32 operations in the same order (scales first, ``d * sc``, then ``dl * q - ml``), fp16 fields
widened exactly (NaN payloads kept, as numpy does; torch's own ``.to(float32)`` is not exact for
signalling NaNs). The C++ kernels in csrc/common/dequant_*.h implement the same formulas.
"""
from __future__ import annotations

import torch

from ...errors import KernelError, UnsupportedQTypeError
from ...qtypes import QType, info, qtype as as_qtype
from .dequant_iq import IQ_DEQUANTIZERS

# ----------------------------------------------------------------------------- field helpers


def _u16(b: torch.Tensor, off: int) -> torch.Tensor:
    """Little-endian u16 at byte `off` of every block -> int32 [nb, 1]."""
    return b[:, off:off + 1].to(torch.int32) | (b[:, off + 1:off + 2].to(torch.int32) << 8)


def _u32(b: torch.Tensor, off: int) -> torch.Tensor:
    """Little-endian u32 at byte `off` of every block -> int64 [nb, 1]."""
    v = b[:, off:off + 4].to(torch.int64)
    return v[:, 0:1] | (v[:, 1:2] << 8) | (v[:, 2:3] << 16) | (v[:, 3:4] << 24)


def _bits_to_f32(bits: torch.Tensor) -> torch.Tensor:
    """Reinterpret unsigned 32-bit patterns (held in int64) as float32."""
    signed = torch.where(bits >= 2**31, bits - 2**32, bits)
    return signed.to(torch.int32).view(torch.float32)


def fp16_bits_to_f32(h: torch.Tensor) -> torch.Tensor:
    """IEEE half bit patterns (any int tensor) -> float32, exact including NaN payloads."""
    h = h.to(torch.int64) & 0xFFFF
    sign = (h & 0x8000) << 16
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    normal = sign | ((exp + 112) << 23) | (mant << 13)
    inf_nan = sign | 0x7F800000 | (mant << 13)
    subnormal = sign | (mant.to(torch.float32) * 2.0**-24).view(torch.int32).to(torch.int64)  # exact
    bits = torch.where(exp == 31, inf_nan, torch.where(exp == 0, subnormal, normal))
    return _bits_to_f32(bits)


def _f16(b: torch.Tensor, off: int) -> torch.Tensor:
    return fp16_bits_to_f32(_u16(b, off))


def _f32(b: torch.Tensor, off: int) -> torch.Tensor:
    return _bits_to_f32(_u32(b, off))


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, returning a's NaN when both are NaN: what x86 does for numpy's (and C's) a + b, and what
    torch's CPU kernels do not (they hand back b's). Only NaN payloads differ without this."""
    return torch.where(torch.isnan(a), a, a + b)


def _sub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a - b with a's NaN kept when both are NaN (see _add)."""
    return torch.where(torch.isnan(a), a, a - b)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """[nb, n] bytes -> [nb, 2n]: all low nibbles, then all high nibbles (ggml's 4-bit order)."""
    return torch.cat([qs & 15, qs >> 4], dim=-1)


def _bit_planes(x: torch.Tensor, nbits: int, count: int) -> torch.Tensor:
    """[..., n] bytes -> [..., count, n]: field j is (x >> nbits*j) & (2^nbits - 1)."""
    shifts = torch.arange(0, nbits * count, nbits, dtype=torch.uint8, device=x.device).view(count, 1)
    return (x.unsqueeze(-2) >> shifts) & ((1 << nbits) - 1)


# ----------------------------------------------------------------------------- plain types


def dequant_f32(b):
    return b.contiguous().view(torch.float32)


def dequant_f16(b):
    # torch's widening is exact for every finite value and infinity; only NaN payloads need the
    # bit-level path (torch canonicalises or quiets them), so run it on the NaNs alone.
    h = b.contiguous().view(torch.int16)
    y = h.view(torch.float16).to(torch.float32)
    nan = torch.isnan(y)
    if bool(nan.any()):
        y[nan] = fp16_bits_to_f32(h[nan])
    return y


def dequant_bf16(b):
    return _bits_to_f32((b.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF) << 16)


def _plain(dtype):
    return lambda b: b.contiguous().view(dtype).to(torch.float32)


# ----------------------------------------------------------------------------- legacy (32 per block)


def dequant_q4_0(b):  # d:f16, qs[16]
    q = _nibbles(b[:, 2:18]).to(torch.int32) - 8
    return _f16(b, 0) * q.to(torch.float32)


def dequant_q4_1(b):  # d:f16, m:f16, qs[16]
    q = _nibbles(b[:, 4:20]).to(torch.float32)
    return _add(_f16(b, 0) * q, _f16(b, 2))


def _q5_high_bits(b, off):  # qh as u32: bit j is the 5th bit of element j
    return ((_u32(b, off) >> torch.arange(32, device=b.device)) & 1).to(torch.int32) << 4


def dequant_q5_0(b):  # d:f16, qh:u32, qs[16]
    q = (_nibbles(b[:, 6:22]).to(torch.int32) | _q5_high_bits(b, 2)) - 16
    return _f16(b, 0) * q.to(torch.float32)


def dequant_q5_1(b):  # d:f16, m:f16, qh:u32, qs[16]
    q = _nibbles(b[:, 8:24]).to(torch.int32) | _q5_high_bits(b, 4)
    return _add(_f16(b, 0) * q.to(torch.float32), _f16(b, 2))


def dequant_q8_0(b):  # d:f16, qs[32]:i8
    return _f16(b, 0) * b[:, 2:34].contiguous().view(torch.int8).to(torch.float32)


def dequant_q8_1(b):  # d:f32, s:f32, qs[32]:i8 (gguf-py's 40-byte geometry; s unused)
    return _f32(b, 0) * b[:, 8:40].contiguous().view(torch.int8).to(torch.float32)


# ----------------------------------------------------------------------------- k-quants (256 per block)


def dequant_q2_k(b):  # scales[16] (lo4 scale, hi4 min), qs[64], d:f16, dmin:f16
    nb = b.shape[0]
    scales = b[:, 0:16]
    dl = (_f16(b, 80) * (scales & 15).to(torch.float32)).view(nb, 16, 1)
    ml = (_f16(b, 82) * (scales >> 4).to(torch.float32)).view(nb, 16, 1)
    q = _bit_planes(b[:, 16:80].reshape(nb, 2, 32), 2, 4).reshape(nb, 16, 16)  # [half, plane, 32]
    return _sub(dl * q.to(torch.float32), ml).reshape(nb, 256)


def q3_k_scales(sc: torch.Tensor) -> torch.Tensor:
    """12 packed bytes -> 16 signed 6-bit scales: low 4 bits from nibbles of bytes 0..7, high 2 bits
    from the 2-bit fields of bytes 8..11."""
    nb = sc.shape[0]
    lo = _nibbles(sc[:, 0:8])
    hi = _bit_planes(sc[:, 8:12], 2, 4).reshape(nb, 16)
    return (lo | (hi << 4)).to(torch.int32) - 32


def dequant_q3_k(b):  # hmask[32], qs[64], scales[12], d:f16
    nb = b.shape[0]
    dl = (_f16(b, 108) * q3_k_scales(b[:, 96:108]).to(torch.float32)).view(nb, 16, 1)
    low = _bit_planes(b[:, 32:96].reshape(nb, 2, 32), 2, 4).reshape(nb, 16, 16)
    high = _bit_planes(b[:, 0:32], 1, 8).reshape(nb, 16, 16)  # bit k of hmask[l] -> output 32k + l
    q = low.to(torch.int32) - ((high ^ 1).to(torch.int32) << 2)  # offset 4 when the bit is clear
    return (dl * q.to(torch.float32)).reshape(nb, 256)


def k4_scales_mins(sc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K: 12 packed bytes -> 8 six-bit scales and 8 six-bit mins (ggml get_scale_min_k4)."""
    d, m, md = sc[:, 0:4], sc[:, 4:8], sc[:, 8:12]
    scales = torch.cat([d & 63, (md & 15) | ((d >> 2) & 48)], dim=-1)
    mins = torch.cat([m & 63, (md >> 4) | ((m >> 2) & 48)], dim=-1)
    return scales, mins


def _k4_apply(b, q):  # q: [nb, 8, 32] unsigned quants; y = (d * sc) * q - (dmin * m)
    nb = b.shape[0]
    scales, mins = k4_scales_mins(b[:, 4:16])
    dl = (_f16(b, 0) * scales.to(torch.float32)).view(nb, 8, 1)
    ml = (_f16(b, 2) * mins.to(torch.float32)).view(nb, 8, 1)
    return _sub(dl * q.to(torch.float32), ml).reshape(nb, 256)


def dequant_q4_k(b):  # d:f16, dmin:f16, scales[12], qs[128]
    nb = b.shape[0]
    q = _bit_planes(b[:, 16:144].reshape(nb, 4, 32), 4, 2).reshape(nb, 8, 32)  # chunk c -> sub-blocks 2c, 2c+1
    return _k4_apply(b, q)


def dequant_q5_k(b):  # d:f16, dmin:f16, scales[12], qh[32], qs[128]
    nb = b.shape[0]
    low = _bit_planes(b[:, 48:176].reshape(nb, 4, 32), 4, 2).reshape(nb, 8, 32)
    high = _bit_planes(b[:, 16:48], 1, 8)  # bit j of qh[l] -> sub-block j
    return _k4_apply(b, low | (high << 4))


def dequant_q6_k(b):  # ql[128], qh[64], scales[16]:i8, d:f16
    nb = b.shape[0]
    low = _bit_planes(b[:, 0:128].reshape(nb, 2, 64), 4, 2).reshape(nb, 8, 32)  # [half, nibble, 64] -> runs of 32
    high = _bit_planes(b[:, 128:192].reshape(nb, 2, 32), 2, 4).reshape(nb, 8, 32)
    q = (low | (high << 4)).to(torch.int32) - 32
    scales = b[:, 192:208].contiguous().view(torch.int8).to(torch.float32)
    dl = (_f16(b, 208) * scales).view(nb, 16, 1)
    return (dl * q.reshape(nb, 16, 16).to(torch.float32)).reshape(nb, 256)


def dequant_q8_k(b):  # d:f32, qs[256]:i8, bsums[16]:i16
    return _f32(b, 0) * b[:, 4:260].contiguous().view(torch.int8).to(torch.float32)


# ----------------------------------------------------------------------------- ternary and fp4


def _tq1_digits(x: torch.Tensor, count: int) -> torch.Tensor:
    """Base-3 fixed-point bytes [nb, n] -> [nb, count * n] ternary digits -1..1 (digit-major)."""
    pow3 = torch.tensor([1, 3, 9, 27, 81][:count], dtype=torch.int32, device=x.device).view(count, 1)
    rotated = (x.to(torch.int32).unsqueeze(-2) * pow3) & 255  # uint8 wrap-around, as in ggml
    return (((rotated * 3) >> 8) - 1).reshape(x.shape[0], -1)


def dequant_tq1_0(b):  # qs[48] (5 digits/byte), qh[4] (4 digits/byte), d:f16
    q = torch.cat([_tq1_digits(b[:, 0:32], 5), _tq1_digits(b[:, 32:48], 5), _tq1_digits(b[:, 48:52], 4)], -1)
    return _f16(b, 52) * q.to(torch.float32)


def dequant_tq2_0(b):  # qs[64] (2-bit planes), d:f16
    nb = b.shape[0]
    q = _bit_planes(b[:, 0:64].reshape(nb, 2, 32), 2, 4).reshape(nb, 256).to(torch.int32) - 1
    return _f16(b, 64) * q.to(torch.float32)


# E2M1 codes -> doubled values (ggml kvalues_mxfp4); the scales carry the factor 1/2.
E2M1_DOUBLED = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)


def _e2m1(codes: torch.Tensor) -> torch.Tensor:
    table = torch.tensor(E2M1_DOUBLED, dtype=torch.float32, device=codes.device)
    return table[codes.to(torch.int64)]


def dequant_mxfp4(b):  # e:e8m0, qs[16]
    e = b[:, 0:1].to(torch.int64)
    d = _bits_to_f32(torch.where(e < 2, 0x00200000 << e, (e - 1) << 23))  # 2^(e-127) / 2
    return d * _e2m1(_nibbles(b[:, 1:17]))


def ue4m3_half(x: torch.Tensor) -> torch.Tensor:
    """Unsigned E4M3 (bias 7; bit 7 ignored) -> value / 2 as float32; 0x00 and 0x7F give 0."""
    x = x.to(torch.int32)
    exp, man = (x >> 3) & 15, (x & 7).to(torch.float32)
    pow2 = ((exp + (127 - 7)).to(torch.int32) << 23).view(torch.float32)  # 2^(exp-7), built exactly
    raw = torch.where(exp == 0, man * 2.0**-9, (1 + man / 8) * pow2)
    return torch.where((x == 0) | (x == 0x7F), 0.0, raw * 0.5)


def dequant_nvfp4(b):  # d[4]:ue4m3 (one per 16), qs[32]: sub-block s = qs[8s:8s+8] low nibbles then high
    nb = b.shape[0]
    d = ue4m3_half(b[:, 0:4]).view(nb, 4, 1)
    q = _e2m1(_nibbles(b[:, 4:36].reshape(nb, 4, 8)))
    return (d * q).reshape(nb, 64)


DEQUANTIZERS = {
    QType.F32: dequant_f32, QType.F16: dequant_f16, QType.BF16: dequant_bf16,
    QType.F64: _plain(torch.float64), QType.I8: _plain(torch.int8), QType.I16: _plain(torch.int16),
    QType.I32: _plain(torch.int32), QType.I64: _plain(torch.int64),
    QType.Q4_0: dequant_q4_0, QType.Q4_1: dequant_q4_1, QType.Q5_0: dequant_q5_0, QType.Q5_1: dequant_q5_1,
    QType.Q8_0: dequant_q8_0, QType.Q8_1: dequant_q8_1,
    QType.Q2_K: dequant_q2_k, QType.Q3_K: dequant_q3_k, QType.Q4_K: dequant_q4_k, QType.Q5_K: dequant_q5_k,
    QType.Q6_K: dequant_q6_k, QType.Q8_K: dequant_q8_k,
    QType.TQ1_0: dequant_tq1_0, QType.TQ2_0: dequant_tq2_0, QType.MXFP4: dequant_mxfp4, QType.NVFP4: dequant_nvfp4,
    **IQ_DEQUANTIZERS,
}


def dequantize_reference(data: torch.Tensor, qtype, shape) -> torch.Tensor:
    """Dequantize packed ggml data (uint8 tensor, any device) to a float32 tensor of `shape`."""
    qt = as_qtype(qtype)
    fn = DEQUANTIZERS.get(qt)
    if fn is None:
        raise UnsupportedQTypeError(f"dequantize_reference: no dequantizer for {qt.name}")
    i = info(qt)
    shape = tuple(int(s) for s in shape)
    n = 1
    for s in shape:
        n *= s
    cols = shape[-1] if shape else 1
    if cols % i.block_size:
        raise KernelError(f"dequantize_reference: {qt.name} row length {cols} is not a multiple of "
                          f"the block size {i.block_size}")
    need = n // i.block_size * i.type_size
    flat = data.reshape(-1)
    if flat.dtype != torch.uint8 or flat.numel() != need:
        raise KernelError(f"dequantize_reference: {qt.name} shape {shape} needs {need} uint8 bytes, "
                          f"got {flat.numel()} of {flat.dtype}")
    return fn(flat.view(-1, i.type_size)).reshape(shape)
