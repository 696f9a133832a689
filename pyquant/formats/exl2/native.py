"""EXL2 linears in their own widths: the mixed-width 32-block layout the CPU kernels read
(QType.EXL2; byte layout in csrc/cpu/exl2_blocks.h).

An EXL2 value is (q - 2^(b-1)) * s with one fp16 scale per (group, output column) and groups of
whole 32-row blocks along the act-order K, so every 32-block of an output row is exactly
d * (q - 2^(b-1)) with its own width b: a row is the run of those blocks, each 2 + 4 b bytes, the
widths shared by all rows (`block_bits`, uint8 [K/32]). A Linear at 2.5 bpw reads ~3 bits a weight
(b + 0.5 per block), where the single-type repack (reader.exact_type) read 4.5.
"""
from __future__ import annotations

import torch
from torch.utils.weak import WeakTensorKeyDictionary

BITS = (2, 3, 4, 5, 6, 8)
_ROWS = 4096   # output rows packed at a time (bounded temporaries for a 49152-row lm_head)


def block_bytes(bits: int) -> int:
    return 2 + 4 * bits


def block_offsets(block_bits: torch.Tensor) -> torch.Tensor:
    """int64 [K/32 + 1]: the byte offset of each block inside a row, then the row's size."""
    sizes = block_bytes(block_bits.to(torch.int64))
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])


def row_bytes(block_bits: torch.Tensor) -> int:
    return int(block_offsets(block_bits)[-1])


# block_bits tensor -> (its _version, row bytes, device, (widths, int32 offsets) there): checked and
# summed once per weight, not per call (no device sync in the token step, which a CUDA graph captures)
_checked = WeakTensorKeyDictionary()


def device_tables(block_bits: torch.Tensor, row_bytes_: int, device, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(block_bits uint8 [K/32], block offsets int32 [K/32 + 1]: block_offsets) on `device`, for the
    device kernels (Triton, CUDA), after checking the widths and that they make `row_bytes_`-byte rows."""
    device = torch.device(device)
    key = (block_bits._version, row_bytes_, device)
    hit = _checked.get(block_bits)
    if hit is not None and hit[0] == key:
        return hit[1]
    from ...errors import KernelError

    bb = block_bits.detach().cpu()
    if bb.dtype != torch.uint8 or bb.dim() != 1 or bb.numel() == 0:
        raise KernelError(f"{who}: block_bits must be a non-empty uint8 [K/32], got {bb.dtype} {tuple(bb.shape)}")
    bad = ~torch.isin(bb, torch.tensor(BITS, dtype=torch.uint8))
    if bad.any():
        j = int(bad.nonzero()[0])
        raise KernelError(f"{who}: block {j} has width {int(bb[j])} bits (EXL2 widths: {BITS})")
    off = block_offsets(bb)
    if int(off[-1]) != row_bytes_:
        raise KernelError(f"{who}: the widths make {int(off[-1])}-byte rows, qweight has {row_bytes_}")
    out = (bb.contiguous().to(device), off.to(torch.int32).to(device))
    _checked[block_bits] = (key, out)
    return out


def device_args(qweight: torch.Tensor, block_bits: torch.Tensor, interleaved: int, who: str):
    """What a device kernel (Triton, CUDA) reads: (qweight as plain contiguous rows, uint8 [N,
    row_bytes], checked; block_bits and its offsets on qweight's device: device_tables). Rows
    interleaved by 8 (the CPU kernels' layout) are put back through the CPU (only a direct call
    brings them: pyquant.ops hands device backends plain rows)."""
    from ...errors import KernelError

    if interleaved:
        qweight = interleave(qweight.cpu(), block_bits.cpu(), inverse=True).to(qweight.device)
    if qweight.dtype != torch.uint8 or qweight.dim() != 2:
        raise KernelError(f"{who}: qweight must be uint8 [N, row_bytes], got {qweight.dtype} {tuple(qweight.shape)}")
    qweight = qweight.contiguous()
    return (qweight, *device_tables(block_bits, qweight.shape[1], qweight.device, who))


def _crumb_bytes(c: torch.Tensor) -> torch.Tensor:
    """c [..., 32] of 2-bit values -> [..., 8] bytes, byte m = c[m] | c[m+8] << 2 | c[m+16] << 4 | c[m+24] << 6."""
    c = c.reshape(*c.shape[:-1], 4, 8)
    return (c[..., 0, :] | (c[..., 1, :] << 2) | (c[..., 2, :] << 4) | (c[..., 3, :] << 6)).to(torch.uint8)


def _bit_bytes(h: torch.Tensor) -> torch.Tensor:
    """h [..., 32] of 0/1 -> [..., 4] bytes, byte m = h[m] | h[m + 4] << 1 | .. | h[m + 28] << 7."""
    h = h.reshape(*h.shape[:-1], 8, 4)                                   # [.., t, m]: element 4 t + m
    return (h << torch.arange(8, dtype=h.dtype)[:, None]).sum(-2).to(torch.uint8)


def pack_payload(u: torch.Tensor, bits: int) -> torch.Tensor:
    """u int64 [..., 32] unsigned values of `bits` bits -> their payload bytes [..., 4 bits]."""
    parts = []
    for sh in ((0, 4) if bits == 8 else (0,) if bits >= 4 else ()):
        lo = (u >> sh) & 15
        parts.append((lo[..., :16] | (lo[..., 16:] << 4)).to(torch.uint8))
    if bits in (2, 3, 6):
        parts.append(_crumb_bytes((u >> (4 if bits == 6 else 0)) & 3))
    if bits in (3, 5):
        parts.append(_bit_bytes((u >> (2 if bits == 3 else 4)) & 1))
    return torch.cat(parts, dim=-1)


def unpack_payload(p: torch.Tensor, bits: int) -> torch.Tensor:
    """payload bytes [..., 4 bits] -> the unsigned values int64 [..., 32] (pack_payload's inverse)."""
    p = p.to(torch.int64)
    u = torch.zeros(*p.shape[:-1], 32, dtype=torch.int64)
    for sh in ((0, 4) if bits == 8 else (0,) if bits >= 4 else ()):
        u = u | (torch.cat([p[..., :16] & 15, p[..., :16] >> 4], dim=-1) << sh)
        p = p[..., 16:]
    if bits in (2, 3, 6):
        c = torch.stack([(p[..., :8] >> (2 * g)) & 3 for g in range(4)], dim=-2).reshape(*p.shape[:-1], 32)
        u = u | (c << (4 if bits == 6 else 0))
        p = p[..., 8:]
    if bits in (3, 5):
        h = ((p[..., None, :4] >> torch.arange(8)[:, None]) & 1).reshape(*p.shape[:-1], 32)
        u = u | (h << (2 if bits == 3 else 4))
    return u


def pack(values: torch.Tensor, scales: torch.Tensor, groups) -> tuple[torch.Tensor, torch.Tensor]:
    """An Exl2Canonical's values int16 [K, N] (q - 2^(b-1), act-order rows), scales fp16 [G, N] and
    groups (32-aligned) -> (data uint8 [N, row_bytes], block_bits uint8 [K/32])."""
    k, n = values.shape
    block_bits = torch.cat([torch.full((g.rows // 32,), g.bits, dtype=torch.uint8) for g in groups])
    off = block_offsets(block_bits)
    data = torch.empty((n, int(off[-1])), dtype=torch.uint8)
    for r0 in range(0, n, _ROWS):
        r1 = min(n, r0 + _ROWS)
        for gi, g in enumerate(groups):
            nb = g.rows // 32
            u = (values[g.row0:g.row0 + g.rows, r0:r1].t().to(torch.int64) + (1 << (g.bits - 1)))
            body = pack_payload(u.reshape(r1 - r0, nb, 32), g.bits)                        # [rows, nb, 4 b]
            d = scales[gi, r0:r1].contiguous().view(torch.uint8).reshape(r1 - r0, 1, 2).expand(-1, nb, 2)
            b0 = int(off[g.row0 // 32])
            data[r0:r1, b0:b0 + nb * block_bytes(g.bits)] = torch.cat([d, body], dim=-1).reshape(r1 - r0, -1)
    return data, block_bits


def runs(block_bits: torch.Tensor) -> list[tuple[int, int, int]]:
    """(first block, block count, bits) of each run of equal widths along K."""
    bb = block_bits.tolist()
    out, j = [], 0
    while j < len(bb):
        e = j
        while e < len(bb) and bb[e] == bb[j]:
            e += 1
        out.append((j, e - j, bb[j]))
        j = e
    return out


def unpack(data: torch.Tensor, block_bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain rows uint8 [rows, row_bytes] (CPU) -> (v int16 [rows, K/32, 32], q - 2^(b-1); d fp16
    [rows, K/32]): pack's inverse, run by run."""
    rows, nb = data.shape[0], block_bits.numel()
    off = block_offsets(block_bits)
    v = torch.empty((rows, nb, 32), dtype=torch.int16)
    d = torch.empty((rows, nb), dtype=torch.float16)
    for j0, cnt, bits in runs(block_bits):
        b0, size = int(off[j0]), block_bytes(bits)
        blk = data[:, b0:b0 + cnt * size].reshape(rows, cnt, size)
        d[:, j0:j0 + cnt] = blk[..., :2].contiguous().view(torch.float16).reshape(rows, cnt)
        v[:, j0:j0 + cnt] = (unpack_payload(blk[..., 2:], bits) - (1 << (bits - 1))).to(torch.int16)
    return v, d


def dequantize(data: torch.Tensor, block_bits: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """data uint8 [N, row_bytes] -> W [N, K] in dtype, stored (act-order) column order: the exact
    products d * (q - 2^(b-1)) rounded once to dtype (decoded in torch on the CPU; any device)."""
    n, bits = data.shape[0], block_bits.cpu()
    out = torch.empty((n, 32 * bits.numel()), dtype=dtype, device=data.device)
    for r0 in range(0, n, _ROWS):   # bounded temporaries, as pack
        r1 = min(n, r0 + _ROWS)
        v, d = unpack(data[r0:r1].cpu(), bits)
        out[r0:r1] = (v.to(torch.float32) * d.to(torch.float32)[..., None]).reshape(r1 - r0, -1).to(dtype)
    return out


def to_single_type(data: torch.Tensor, block_bits: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The same values as the one ggml type holding every block exactly (reader.single_type_name):
    (data uint8 [N, row_bytes], type name)."""
    from .reader import single_type_name, single_type_rows

    n, bits = data.shape[0], block_bits.cpu()
    tname = single_type_name(int(bits.max()))
    parts = [single_type_rows(*unpack(data[r0:r0 + _ROWS].cpu(), bits), tname) for r0 in range(0, n, _ROWS)]
    return torch.cat(parts).to(data.device), tname


# ---- the row-interleaved layout (8 rows per group; csrc/cpu/interleave.h, kernels/cpu/interleave.py)
def units(bits: int) -> list[tuple[int, int]]:
    """(payload offset, bytes) of each unit of a block's payload: 8-byte units of the nibble and
    crumb parts, a 4-byte unit for the bit part (csrc/cpu/exl2_blocks.h)."""
    nib = 32 if bits == 8 else 16 if bits >= 4 else 0
    out = [(o, 8) for o in range(0, nib, 8)]
    if bits in (2, 3, 6):
        out.append((nib, 8))
    if bits in (3, 5):
        out.append((4 * bits - 4, 4))
    return out


def _x8_index(bits: int) -> torch.Tensor:
    """Byte i of an interleaved group-block (8 rows x one block of `bits`) is byte index[i] of the 8
    plain blocks side by side: the 8 fp16 d, then each unit of the payload for rows 0..7."""
    size = block_bytes(bits)
    idx = [size * r + i for r in range(8) for i in range(2)]
    for o, n in units(bits):
        idx += [size * r + 2 + o + i for r in range(8) for i in range(n)]
    return torch.tensor(idx)


def interleave(data: torch.Tensor, block_bits: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Plain rows uint8 [n, row_bytes] (n % 8 == 0) -> the row-interleaved layout (or back, inverse):
    same shape, a copy. Block j of rows 8g..8g+7 becomes one group-block of 8 (2 + 4 b) bytes at
    8 * offset(j) in the group's 8 row_bytes."""
    n, rb = data.shape
    src = data.reshape(n // 8, 8 * rb)
    out = torch.empty_like(src)
    off = block_offsets(block_bits.cpu())
    for j0, cnt, bits in runs(block_bits.cpu()):
        size, b0 = block_bytes(bits), int(off[j0])
        idx = _x8_index(bits)
        if not inverse:   # [g, 8 rows, cnt, size] -> [g, cnt, 8 * size], permuted
            x = src.reshape(n // 8, 8, rb)[:, :, b0:b0 + cnt * size].reshape(n // 8, 8, cnt, size)
            x = x.permute(0, 2, 1, 3).reshape(n // 8, cnt, 8 * size)[..., idx]
            out[:, 8 * b0:8 * (b0 + cnt * size)] = x.reshape(n // 8, -1)
        else:
            x = src[:, 8 * b0:8 * (b0 + cnt * size)].reshape(n // 8, cnt, 8 * size)
            plain = torch.empty_like(x)
            plain[..., idx] = x
            out.view(n // 8, 8, rb)[:, :, b0:b0 + cnt * size] = (
                plain.reshape(n // 8, cnt, 8, size).permute(0, 2, 1, 3).reshape(n // 8, 8, cnt * size))
    return out.reshape(n, rb)
