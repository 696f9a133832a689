"""EXL2 linears of a model directory -> QTensors the kernels read, with an input permutation.

Every EXL2 value is (q - 2^(b-1)) * s with one fp16 scale s per (group, output column) and groups
of whole 32-row blocks along the act-order K: so each 32-block of an output row is exactly
d * (q - 2^(b-1)), d = s, at its group's width. Each Linear is kept either at those widths
(QType.EXL2, native.py: b + 0.5 bits a weight, read by the CPU kernels in place) or as the one ggml
type that holds every block exactly (`single_type`: <= 4 bits Q4_0, 5 Q5_0, 6 and 8 Q8_0), whichever
`layout_choice` says (PYQUANT_EXL2_LAYOUT: native by default; single; auto: the widths where they
save a fifth of the bytes); a device whose backends have no kernel for the widths gets the single
type (`QTensor.to`; the CUDA and Triton kernels read the widths, so a GPU keeps them). The weight
stays in act-order and the QTensor carries the permutation (`in_perm`): every backend gathers x's
columns once per call, as ExLlamaV2's kernels do. A layout whose group edges are not 32-aligned (2-bit
groups of 16 rows) is kept as its exact fp16 reconstruction instead. `pyquant info DIR` shows the
file's bits per weight beside what the kernels read.
"""
from __future__ import annotations

import os

import torch

from . import layouts

TENSORS = ("q_weight", "q_groups", "q_scale", "q_scale_max", "q_invperm")


def _blocks_q4_0(v: torch.Tensor) -> torch.Tensor:
    """v int16 [N, nb, 32] in -8..7 -> the 16 quant bytes per block."""
    u = (v + 8).to(torch.uint8)
    return u[..., :16] | (u[..., 16:] << 4)


def _blocks_q5_0(v: torch.Tensor) -> torch.Tensor:
    """v in -16..15 -> qh (4 bytes, bit j = high bit of element j) + 16 nibble bytes."""
    u = (v + 16).to(torch.int64)
    qh = (((u >> 4) & 1) << torch.arange(32)).sum(-1)                            # [N, nb]
    qh_bytes = ((qh[..., None] >> torch.arange(0, 32, 8)) & 0xFF).to(torch.uint8)
    lo = (u & 0xF).to(torch.uint8)
    return torch.cat([qh_bytes, lo[..., :16] | (lo[..., 16:] << 4)], dim=-1)


def _blocks_q8_0(v: torch.Tensor) -> torch.Tensor:
    return v.to(torch.int8).view(torch.uint8)


_PACK = {"Q4_0": _blocks_q4_0, "Q5_0": _blocks_q5_0, "Q8_0": _blocks_q8_0}


def exact_type(groups) -> str | None:
    """The ggml type holding every value of these groups exactly, or None (group edges off the 32 grid)."""
    if any(g.row0 % 32 for g in groups) or (groups[-1].row0 + groups[-1].rows) % 32:
        return None
    return single_type_name(max(g.bits for g in groups))


def single_type_name(widest: int) -> str:
    """The smallest ggml type holding blocks of up to `widest` bits exactly."""
    return "Q4_0" if widest <= 4 else "Q5_0" if widest == 5 else "Q8_0"


def single_type_rows(v: torch.Tensor, d: torch.Tensor, tname: str) -> torch.Tensor:
    """v int16 [rows, nb, 32] (q - 2^(b-1)), d fp16 [rows, nb] -> rows of `tname` blocks, uint8 [rows, row_bytes]."""
    rows, nb = d.shape
    body = _PACK[tname](v)
    return torch.cat([d.contiguous().view(torch.uint8).reshape(rows, nb, 2), body], dim=-1).reshape(rows, -1)


# Default "native": the widths read fewer bytes and, rows interleaved by 8 (the runner's packing),
# generate as fast or faster. 4096x14336, M = 1, 2 threads, this 2-vCPU Zen 4, same runs: a 2.5 bpw
# mix 0.97-1.23 ms against its single type (Q4_0 rows interleaved) 1.28-1.41; a 4.0 mix (5/4/3
# bits) 1.30-1.51 against Q5_0 1.47-1.57; a 6.0 mix (8/6/5) 1.78-1.89 against Q8_0 2.37-2.68.
# SmolLM2's 576-wide rows (18 blocks): EXL2 2.5 tg64 345-375 tok/s against 360-392 (noise), pp64
# level (82-84 ms vs 82-84.5, alternating in one process), peak RSS 420-490 MiB against 537-771
# (the in-memory repack is not copied again by the runner's packing). "single" keeps one ggml type
# per Linear (what a device without a widths kernel gets); "auto" the widths where they read at most
# 0.8 of the single type's bytes.
_NATIVE_AT_MOST = 0.8


def layout_choice() -> str:
    """PYQUANT_EXL2_LAYOUT: native (default: the mixed widths), single (one ggml type) or auto."""
    v = os.environ.get("PYQUANT_EXL2_LAYOUT", "native").strip().lower() or "native"
    if v not in ("auto", "native", "single"):
        from ...errors import PyquantError

        raise PyquantError(f"PYQUANT_EXL2_LAYOUT={v!r}: use native, single or auto")
    return v


def _block_bytes(groups) -> tuple[int, int]:
    """(bytes a row in its own widths, bytes a row as its single type) of 32-aligned groups."""
    from ...qtypes import info
    from .native import block_bytes

    tname = exact_type(groups)
    return (sum(g.rows // 32 * block_bytes(g.bits) for g in groups),
            sum(g.rows for g in groups) // 32 * info(tname).type_size)


def _uses_widths(groups) -> bool:
    """Whether layout_choice() keeps these 32-aligned groups at their own widths."""
    choice = layout_choice()
    if choice != "auto":
        return choice == "native"
    own, single = _block_bytes(groups)
    return own <= _NATIVE_AT_MOST * single


def read_bits(groups) -> float:
    """Bits a weight the CPU kernels read for a Linear of these groups in the chosen layout (`pyquant info`)."""
    if exact_type(groups) is None:
        return 16.0                                              # the fp16 fallback
    own, single = _block_bytes(groups)
    return 8 * (own if _uses_widths(groups) else single) / sum(g.rows for g in groups)


def to_qtensor(c: layouts.Exl2Canonical, n: int, k: int):
    from ...qtensor import QTensor
    from . import native

    if exact_type(c.groups) is None:
        w = layouts.dequantize(c, torch.float16)                     # [N, K] in the original order
        return QTensor(w.view(torch.uint8).reshape(n, -1), "F16", (n, k))
    data, block_bits = native.pack(c.values, c.scales, c.groups)
    qt = QTensor(data, "EXL2", (n, k), in_perm=c.perm, block_bits=block_bits)
    return qt if _uses_widths(c.groups) else qt.single_type()


class Exl2Linears:
    """Reads the quantized linears of an EXL2 directory (tensors: SafetensorsDir)."""

    def __init__(self, tensors, path, release=None):
        self.tensors, self.path, self.release = tensors, path, release

    def is_quantized(self, prefix: str) -> bool:
        return f"{prefix}.q_weight" in self.tensors and f"{prefix}.q_groups" in self.tensors

    def canonical(self, prefix: str, n: int, k: int) -> layouts.Exl2Canonical:
        missing = [t for t in TENSORS if f"{prefix}.{t}" not in self.tensors]
        if missing:
            from ...errors import FormatError

            raise FormatError(self.path, f"tensor '{prefix}.{missing[0]}' is missing (an EXL2 linear needs "
                                         f"{', '.join(TENSORS)})")
        return layouts.unpack(self.path, prefix, n, k, *(self.tensors.get(f"{prefix}.{t}") for t in TENSORS))

    def qtensor(self, prefix: str, n: int, k: int):
        qt = to_qtensor(self.canonical(prefix, n, k), n, k)
        if self.release is not None:
            for t in TENSORS:
                self.release(self.tensors.get(f"{prefix}.{t}"))
        return qt
