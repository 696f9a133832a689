"""Row-interleaved weight layout for the CPU's M = 1 kernels (csrc/cpu/interleave.h says why).

Rows [8g, 8g + 8) of a weight are stored block by block: the 8 rows' block headers (scales, mins),
then the block's quants in 8-byte chunks, chunk by chunk, rows 0..7 within a chunk. Same bytes,
same size, permuted within each group of 8 rows, so the one packed copy the runner keeps
(pyquant/kernels/cpu/packing.py) can be laid out this way at load time without doubling memory.
pyquant's int4 (no block headers: the nibbles alone) also stores its scales and mins [n, ng] as
[n/8][ng][8], a group's 8 rows side by side (`interleave_side`). EXL2's mixed widths interleave
block by block too, each width's payload in its own units (pyquant/formats/exl2/native.py).
"""
from __future__ import annotations

import torch

from ...qtypes import QType

# qtype -> (header bytes, quant bytes) of one block; the C++ table is kSpec (cpu/interleave.cpp)
SPECS = {QType.Q4_0: (2, 16), QType.Q4_1: (4, 16), QType.Q5_0: (6, 16), QType.Q5_1: (8, 16),
         QType.Q4_K: (16, 128), QType.Q6_K: (18, 192), QType.Q8_0: (2, 32), QType.INT4: (0, 16)}
# types whose plain block holds the header after the quants (Q6_K: ql, qh, then scales and d);
# interleaved, the 8 rows' headers come first as for every type
HEADER_LAST = {QType.Q6_K}
NAMES = " / ".join(t.name for t in SPECS) + " / EXL2"   # for messages


def supports(qtype, shape) -> bool:
    """Whether a weight of this type and (out, in) shape can be stored interleaved."""
    q = QType(int(qtype))
    return (q in SPECS or q is QType.EXL2) and len(shape) == 2 and shape[0] % 8 == 0 and shape[0] > 0


def _split(data: torch.Tensor, qtype):
    h, q = SPECS[QType(int(qtype))]
    n, rb = data.shape
    return h, q, n, rb, rb // (h + q)


def interleave(data: torch.Tensor, qtype, block_bits=None) -> torch.Tensor:
    """Plain rows uint8 [n, row_bytes] (n % 8 == 0) -> the interleaved layout, same shape (a copy).
    block_bits: EXL2's block widths (that format only)."""
    if QType(int(qtype)) is QType.EXL2:
        from ...formats.exl2 import native

        return native.interleave(data, block_bits)
    h, q, n, rb, nb = _split(data, qtype)
    x = data.reshape(n // 8, 8, nb, h + q)
    head, quants = (x[..., q:], x[..., :q]) if QType(int(qtype)) in HEADER_LAST else (x[..., :h], x[..., h:])
    hdr = head.permute(0, 2, 1, 3).reshape(n // 8, nb, 8 * h)
    qs = quants.reshape(n // 8, 8, nb, q // 8, 8).permute(0, 2, 3, 1, 4).reshape(n // 8, nb, 8 * q)
    return torch.cat([hdr, qs], dim=-1).reshape(n, rb)


def deinterleave(data: torch.Tensor, qtype, block_bits=None) -> torch.Tensor:
    """The inverse of interleave: plain rows again (a copy)."""
    if QType(int(qtype)) is QType.EXL2:
        from ...formats.exl2 import native

        return native.interleave(data, block_bits, inverse=True)
    h, q, n, rb, nb = _split(data, qtype)
    x = data.reshape(n // 8, nb, 8 * (h + q))
    hdr = x[..., :8 * h].reshape(n // 8, nb, 8, h).permute(0, 2, 1, 3)
    qs = x[..., 8 * h:].reshape(n // 8, nb, q // 8, 8, 8).permute(0, 3, 1, 2, 4).reshape(n // 8, 8, nb, q)
    parts = [qs, hdr] if QType(int(qtype)) in HEADER_LAST else [hdr, qs]
    return torch.cat(parts, dim=-1).reshape(n, rb)


def interleave_side(t: torch.Tensor) -> torch.Tensor:
    """int4 scales or mins [n, ng] -> the 8 rows of each group side by side per weight group."""
    n, ng = t.shape
    return t.reshape(n // 8, 8, ng).transpose(1, 2).reshape(n, ng).contiguous()


def deinterleave_side(t: torch.Tensor) -> torch.Tensor:
    n, ng = t.shape
    return t.reshape(n // 8, ng, 8).transpose(1, 2).reshape(n, ng).contiguous()


def convert(qt, to_interleaved: bool) -> tuple:
    """(data, scales, mins) of QTensor qt in the interleaved layout (to_interleaved) or back in plain
    rows: copies; int4's scales and mins move with their rows, other formats have none."""
    rows, side = (interleave, interleave_side) if to_interleaved else (deinterleave, deinterleave_side)

    def side_of(t):
        return t if t is None or qt.qtype is not QType.INT4 else side(t)

    return rows(qt.data, qt.qtype, qt.block_bits), side_of(qt.scales), side_of(qt.mins)
