"""EXL2's per-Linear tensors, unpacked (../../../shared/specs/exl2.md, B.2-B.5).

The quantizer works on Wt = W.T [K in, N out] with its K rows in act-order (row j is input channel
perm[j], perm = argsort(q_invperm)) and columns padded to Np = ceil(N / 32) * 32. Rows form groups
(q_groups: pairs (bits, first q_weight row)), bit widths descending; in a group of R rows at b bits
each column is a little-endian bitstream down its q_weight words, row r at stream bits [r b, r b + b).
q_scale holds a 4-bit code c per (group, column), 8 per int32; q_scale_max an fp16 per group.

    scale[g, n] = fp16( fp16((c + 1)^2) * fp16(q_scale_max[g] / 256) )    (the runtime's fp16 math)
    Wt[j, n]    = fp16( (q - 2^(b-1)) * scale[g(j), n] )

Everything here is checked before use: a forged file raises FormatError naming the tensor.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import FormatError
from ..generic import word_nibbles

BITS = (2, 3, 4, 5, 6, 8)


class Group(NamedTuple):
    bits: int
    row0: int      # first act-order row
    rows: int
    qrow0: int     # first q_weight row


class Exl2Canonical(NamedTuple):
    """values int16 [K, N]: q - 2^(b-1) per act-order row; scales fp16 [G, N]; groups; perm int64 [K]
    (act-order row j is input channel perm[j])."""
    values: torch.Tensor
    scales: torch.Tensor
    groups: list
    perm: torch.Tensor


def _fail(path, prefix, tensor, msg):
    raise FormatError(path, f"tensor '{prefix}.{tensor}': {msg}")


def parse_groups(path, prefix: str, q_groups: torch.Tensor, k: int, qrows: int) -> list[Group]:
    if q_groups.dtype != torch.int16 or q_groups.dim() != 1 or q_groups.numel() % 2 or q_groups.numel() == 0:
        _fail(path, prefix, "q_groups", f"must be int16 [2 G], got {q_groups.dtype} {tuple(q_groups.shape)}")
    pairs = (q_groups.to(torch.int64) & 0xFFFF).view(-1, 2).tolist()   # offsets are uint16 in ExLlamaV2
    groups, row = [], 0
    for g, (bits, q0) in enumerate(pairs):
        if bits not in BITS:
            _fail(path, prefix, "q_groups", f"group {g} has {bits} bits (allowed: {', '.join(map(str, BITS))})")
        if g and bits > groups[-1].bits:
            _fail(path, prefix, "q_groups", f"bit widths must not increase (group {g}: {bits} after "
                                            f"{groups[-1].bits})")
        q1 = pairs[g + 1][1] if g + 1 < len(pairs) else qrows
        if not q0 <= q1 <= qrows or (g == 0 and q0 != 0) or (groups and q0 != groups[-1].qrow0 + groups[-1].rows * groups[-1].bits // 32):
            _fail(path, prefix, "q_groups", f"group {g} starts at q_weight row {q0}, inconsistent with the "
                                            f"previous groups and q_weight's {qrows} rows")
        stream = (q1 - q0) * 32
        rows = stream // bits if g + 1 < len(pairs) else k - row
        if rows <= 0 or rows * bits > stream or (g + 1 < len(pairs) and stream % bits):
            _fail(path, prefix, "q_groups", f"group {g}: {q1 - q0} q_weight rows cannot hold {rows} rows of {bits} bits")
        groups.append(Group(bits, row, rows, q0))
        row += rows
    if row != k:
        _fail(path, prefix, "q_groups", f"groups cover {row} rows, in_features is {k}")
    last = groups[-1]
    if last.qrow0 + -(-last.rows * last.bits // 32) != qrows:
        _fail(path, prefix, "q_weight", f"{qrows} rows, the groups need {last.qrow0 + -(-last.rows * last.bits // 32)}")
    return groups


_COLUMNS = 1024


def _bitstream_dequantize(words: torch.Tensor, rows: int, bits: int) -> torch.Tensor:
    """int32 words [W, Np] (little-endian column bitstreams) -> uint values int64 [rows, Np].

    Value r of a column is bits r*bits .. r*bits+bits-1 of its stream: the word holding its first
    bit shifted down, OR the next word shifted up (a value straddling two words), masked. Three
    [rows, Np] int64 temporaries; expanding every bit to an int64 plane instead took 64x the words
    (SmolLM2 EXL2's lm_head: ~200 MiB of transient per 4096 columns, the load's peak)."""
    w = torch.cat([words.to(torch.int64) & 0xFFFFFFFF, words.new_zeros((1, words.shape[1]), dtype=torch.int64)])
    start = torch.arange(rows, dtype=torch.int64) * bits
    word, sh = start >> 5, (start & 31)[:, None]
    return ((w[word] >> sh) | (w[word + 1] << (32 - sh))) & ((1 << bits) - 1)


def unpack(path, prefix: str, n: int, k: int, q_weight, q_groups, q_scale, q_scale_max, q_invperm) -> Exl2Canonical:
    np_ = -(-n // 32) * 32
    if q_weight.dtype != torch.int32 or q_weight.dim() != 2 or q_weight.shape[1] != np_:
        _fail(path, prefix, "q_weight", f"must be int32 [rows, {np_}] (out_features {n} padded to 32), got "
                                        f"{q_weight.dtype} {tuple(q_weight.shape)}")
    groups = parse_groups(path, prefix, q_groups, k, q_weight.shape[0])
    G = len(groups)
    if q_scale.dtype != torch.int32 or tuple(q_scale.shape) != (G, np_ // 8):
        _fail(path, prefix, "q_scale", f"must be int32 {(G, np_ // 8)}, got {q_scale.dtype} {tuple(q_scale.shape)}")
    if q_scale_max.dtype != torch.float16 or tuple(q_scale_max.shape) != (G,):
        _fail(path, prefix, "q_scale_max", f"must be float16 [{G}], got {q_scale_max.dtype} {tuple(q_scale_max.shape)}")
    if not bool(torch.isfinite(q_scale_max).all()):
        _fail(path, prefix, "q_scale_max", "holds NaN or infinite values")
    if q_invperm.dtype not in (torch.int32, torch.int64, torch.int16) or tuple(q_invperm.shape) != (k,):
        _fail(path, prefix, "q_invperm", f"must be an integer [{k}], got {q_invperm.dtype} {tuple(q_invperm.shape)}")
    inv = q_invperm.to(torch.int64)
    if k and (int(inv.min()) < 0 or int(inv.max()) >= k or torch.bincount(inv, minlength=k).max() != 1):
        _fail(path, prefix, "q_invperm", f"is not a permutation of 0..{k - 1}")
    perm = torch.argsort(inv)
    # scale codes: nibble i of word w is column 8 w + i
    codes = word_nibbles(q_scale).to(torch.int64).reshape(G, np_)[:, :n]
    smax = (q_scale_max / 256).to(torch.float16)                     # the runtime's prescale, in fp16
    scales = ((codes + 1).pow(2).to(torch.float16) * smax[:, None])  # fp16 * fp16 -> fp16, rounded once
    values = torch.empty(k, n, dtype=torch.int16)
    for grp in groups:
        words = q_weight[grp.qrow0:grp.qrow0 + -(-grp.rows * grp.bits // 32)]
        # columns are independent bitstreams: decoded _COLUMNS at a time, so that a whole
        # 49152-column lm_head group's temporaries stay small
        for c0 in range(0, n, _COLUMNS):
            c1 = min(n, c0 + _COLUMNS)
            q = _bitstream_dequantize(words[:, c0:c1], grp.rows, grp.bits)
            values[grp.row0:grp.row0 + grp.rows, c0:c1] = (q - (1 << (grp.bits - 1))).to(torch.int16)
    return Exl2Canonical(values, scales, groups, perm)


def dequantize(c: Exl2Canonical, dtype=torch.float16) -> torch.Tensor:
    """W [N, K], input channels un-permuted. float16: ExLlamaV2's reconstruction, (q - z) * scale
    rounded once; float32: the exact products (at most 19 significant bits), what pyquant's kernels
    compute with."""
    row_scale = torch.cat([c.scales[g].expand(grp.rows, -1) for g, grp in enumerate(c.groups)])   # [K, N]
    wt = (c.values.to(torch.float32) * row_scale.to(torch.float32)).to(dtype)                       # exact product
    w = torch.empty_like(wt)
    w[c.perm] = wt
    return w.t().contiguous()


def bits_per_weight(groups: list, n: int, k: int, bias: bool = False) -> float:
    """ExLlamaV2's QParams.total_bits / weights (B.6)."""
    G = len(groups)
    total = sum(g.rows * n * g.bits for g in groups) + G * 16 + G * 32 + G * n * 4 + k * 32 + (16 * n if bias else 0)
    return total / (k * n + (n if bias else 0))
