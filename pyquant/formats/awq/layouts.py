"""The on-disk int4 layouts of AWQ-family checkpoints, unpacked to one canonical form.

Every layout here stores, per quantized Linear with weight W [N out, K in] and group size G,
4-bit codes q, a per-group scale s and a per-group zero; they differ in orientation, nibble order and
how the zero is kept (../../../shared/specs/awq.md, A.3-A.7):

  gemm       qweight int32 [K, N/8]   8 codes along N per word, interleaved (nibble i = column ORDER[i])
             qzeros  int32 [K/G, N/8] same packing; scales fp16 [K/G, N]
  gemv       qweight int32 [N, K/8]   sequential along K; qzeros int32 [N, ZW], scales fp16 [N, 8 ZW]
                                      (zero-padded past K/G)
  gemv_fast  qweight int16 [N/4, K]   4 codes 8 k apart per int16, 4 rows interleaved per 64-k slab;
             scales fp16 [8 ZW, N], qzeros / scaled_zeros fp16 [8 ZW, N] = -s * z (already scaled)
  pack-quantized (compressed-tensors)
             weight_packed int32 [N, K/8] sequential along K, codes stored as signed + 8;
             weight_scale [N, K/G]; weight_zero_point int32 [N/8, K/G] packed along N (+8) or absent
             (symmetric: zero 8)

The canonical form is what the int4 kernels compute, w = q * scale + min, with codes uint8 [N, K],
scales and mins float32 [N, K/G]. For integer zeros min = -z * s, exact in float32 (a 4-bit integer
times an fp16/bf16 value), so q * s + min is (q - z) * s exactly and a dequantization rounded once to
fp16 equals AutoAWQ's bit for bit. gemv_fast's fp16 min is used as stored (its product was rounded
when the file was written; the kernel's fp16 FMA reads it the same way).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import FormatError
from ..generic import INT4_GROUP_SIZES, word_nibbles as _nibbles

# AWQ's gemm interleave: nibble i of a word holds logical column ORDER[i]; column j lives in nibble REV[j].
ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
REV = (0, 4, 1, 5, 2, 6, 3, 7)


class Int4Canonical(NamedTuple):
    """w[n, k] = codes[n, k] * scales[n, k // G] + mins[n, k // G]; codes uint8 0..15 [N, K]."""
    codes: torch.Tensor
    scales: torch.Tensor
    mins: torch.Tensor
    group_size: int


class Where(NamedTuple):
    """Names a Linear in error messages: the file and the tensor prefix."""
    path: object
    prefix: str

    def fail(self, tensor: str, message: str):
        raise FormatError(self.path, f"tensor '{self.prefix}.{tensor}': {message}")


def zeros_width(k: int, g: int) -> int:
    """Packed int32 words per row of gemv / gemv_fast zeros: groups rounded up to 8 per word, then to a
    multiple of 1 / 2 / 4 words for G = 128 / 64 / 32 (AutoAWQ's calculate_zeros_width)."""
    mult = {128: 1, 64: 2, 32: 4}.get(g)
    if mult is None:
        raise ValueError(f"gemv layouts support group sizes 32, 64, 128, not {g}")
    words = -(-(k // g) // 8)
    return -(-words // mult) * mult


def _check(where: Where, name: str, t: torch.Tensor, dtypes, shape) -> None:
    if t.dtype not in dtypes:
        where.fail(name, f"dtype {t.dtype} (expected {' or '.join(str(d) for d in dtypes)})")
    if tuple(t.shape) != tuple(shape):
        where.fail(name, f"shape {tuple(t.shape)} (expected {tuple(shape)} for out_features x in_features "
                         f"from the config)")


def _finite_scales(where: Where, name: str, s: torch.Tensor) -> torch.Tensor:
    s = s.to(torch.float32)
    if not bool(torch.isfinite(s).all()):
        where.fail(name, "holds NaN or infinite scales")
    return s


_FLOAT16 = (torch.float16,)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def unpack_gemm(where: Where, n: int, k: int, g: int, qweight, qzeros, scales) -> Int4Canonical:
    _check(where, "qweight", qweight, (torch.int32,), (k, n // 8))
    _check(where, "qzeros", qzeros, (torch.int32,), (k // g, n // 8))
    _check(where, "scales", scales, _FLOAT16, (k // g, n))
    rev = list(REV)
    codes = _nibbles(qweight)[..., rev].reshape(k, n).t()            # [N, K] (uint8 copies only)
    zeros = _nibbles(qzeros)[..., rev].reshape(k // g, n).t()       # [N, K/G]
    s = _finite_scales(where, "scales", scales).t()
    return Int4Canonical(codes.contiguous(), s.contiguous(), (-zeros.to(torch.float32) * s).contiguous(), g)


def unpack_gemv(where: Where, n: int, k: int, g: int, qweight, qzeros, scales) -> Int4Canonical:
    zw = zeros_width(k, g)
    _check(where, "qweight", qweight, (torch.int32,), (n, k // 8))
    _check(where, "qzeros", qzeros, (torch.int32,), (n, zw))
    _check(where, "scales", scales, _FLOAT16, (n, zw * 8))
    codes = _nibbles(qweight).reshape(n, k)
    zeros = _nibbles(qzeros).reshape(n, zw * 8)[:, :k // g]
    s = _finite_scales(where, "scales", scales[:, :k // g])
    return Int4Canonical(codes.contiguous(), s.contiguous(), (-zeros.to(torch.float32) * s).contiguous(), g)


def unpack_gemv_fast(where: Where, n: int, k: int, g: int, qweight, qzeros, scales,
                     zeros_name: str = "qzeros") -> Int4Canonical:
    if n % 4 or k % 64:
        where.fail("qweight", f"gemv_fast needs out_features % 4 == 0 and in_features % 64 == 0, got {n} x {k}")
    zw = zeros_width(k, g)
    _check(where, "qweight", qweight, (torch.int16,), (n // 4, k))
    _check(where, "scales", scales, _FLOAT16, (zw * 8, n))
    _check(where, zeros_name, qzeros, _FLOAT16, (zw * 8, n))
    # element [i, 64 j + t], nibble r, with t = 16 a + 8 b + c, holds q[4 i + a, 64 j + 32 b + 8 r + c]
    codes = torch.empty(n, k, dtype=torch.uint8)
    shifts = torch.arange(0, 16, 4, dtype=torch.int32)
    for i0 in range(0, n // 4, 256):                      # 256 x 4 output rows at a time (bounded int32 temp)
        w = qweight[i0:i0 + 256].to(torch.int32).reshape(-1, k // 64, 4, 2, 8)          # i j a b c
        nib = ((w[..., None] >> shifts) & 0xF).to(torch.uint8)                           # i j a b c r
        codes[4 * i0:4 * i0 + 4 * w.shape[0]] = nib.permute(0, 2, 1, 3, 5, 4).reshape(-1, k)  # (i a), (j b r c)
    s = _finite_scales(where, "scales", scales[:k // g]).t()
    mins = _finite_scales(where, zeros_name, qzeros[:k // g]).t()
    return Int4Canonical(codes.contiguous(), s.contiguous(), mins.contiguous(), g)


def unpack_pack_quantized(where: Where, n: int, k: int, g: int, packed, scale, zero_point) -> Int4Canonical:
    """compressed-tensors pack-quantized int4 (group or channel strategy; zero_point None: symmetric)."""
    _check(where, "weight_packed", packed, (torch.int32,), (n, -(-k // 8)))
    _check(where, "weight_scale", scale, _FLOATS, (n, k // g))
    codes = _nibbles(packed).reshape(n, -1)[:, :k]
    s = _finite_scales(where, "weight_scale", scale)
    if zero_point is None:
        z = torch.full_like(s, 8.0)
    else:
        _check(where, "weight_zero_point", zero_point, (torch.int32,), (-(-n // 8), k // g))
        z = _nibbles(zero_point.t()).reshape(k // g, -1)[:, :n].t().to(torch.float32)
    return Int4Canonical(codes.contiguous(), s.contiguous(), (-z * s).contiguous(), g)


def to_kernel_groups(c: Int4Canonical, where: Where) -> Int4Canonical:
    """The kernels take groups of 32, 64 or 128. A larger group (AWQ's -1 = one per row, a channel
    strategy, 256, ...) is the same weight with its scale and min repeated over each kernel group."""
    if c.group_size in INT4_GROUP_SIZES:
        return c
    gs = next((s for s in reversed(INT4_GROUP_SIZES) if c.group_size % s == 0), None)
    if gs is None:
        where.fail("scales", f"group size {c.group_size} is not a multiple of 32: no int4 kernel takes it")
    r = c.group_size // gs
    return Int4Canonical(c.codes, c.scales.repeat_interleave(r, dim=1).contiguous(),
                         c.mins.repeat_interleave(r, dim=1).contiguous(), gs)
