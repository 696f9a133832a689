"""The model's linear layers and embedding over QTensors from any weight source (a GGUF file, an AWQ
directory: pyquant/formats/*/source.py), fused where the formats match."""
from __future__ import annotations

import torch

from ..qtypes import QType

_FLOAT_TYPES = {QType.F32, QType.F16, QType.BF16}


class Linear:
    """y = x @ W.T (+ b) with W quantized or float (F32/F16/BF16), through pyquant.dispatch.linear: the
    kernels of whichever backend serves x's device, the direct CPU path when that is the cpu backend."""

    def __init__(self, qt, bias: torch.Tensor | None = None, name: str = ""):
        self.qt = qt
        self.bias = bias
        self.name = name
        self.out_features, self.in_features = qt.shape
        # Float weights the CPU engine reads as they are (F16 / BF16 converted in registers: an AWQ
        # model's F16 lm_head streams 56 MB a token instead of a 113 MB float32 copy, 1.4 ms instead of
        # 9.7 ms for SmolLM2's); a float32 copy for torch only where no CPU kernel takes the weight.
        self.dense = None
        if qt.qtype in _FLOAT_TYPES and qt.cpu_call is None:
            self.dense = qt.dequantize(torch.float32)
        from ..dispatch import linear

        self._linear = linear

    @property
    def nbytes(self) -> int:
        return self.qt.nbytes

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """x [M, in] float32 contiguous -> out [M, out_features] (preallocated, contiguous)."""
        if self.dense is not None:
            if self.bias is not None:
                torch.addmm(self.bias, x, self.dense.t(), out=out)
            else:
                torch.mm(x, self.dense.t(), out=out)
            return out
        return self._linear(self.qt, x, out, self.bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.into(x, x.new_empty((x.shape[0], self.out_features)))


def concat_rows(qts: list, row_perms: list | None = None, release=None):
    """One QTensor holding the rows of `qts` stacked (same qtype and format, same in_features): one
    kernel call instead of several. Rows are independent in every format (a ggml row is its own byte
    string; int4 / int8 rows carry their own scales and mins), so stacking and permuting rows is
    exact. Copies the bytes once at load (QKV and gate/up are ~45% of the weights of SmolLM2)."""
    from ..qtensor import QTensor

    qts = [qt.plain() for qt in qts]

    def rows(t, i):
        t = t.reshape(qts[i].shape[0], -1)
        return t[row_perms[i]] if row_perms is not None and row_perms[i] is not None else t

    n = sum(qt.shape[0] for qt in qts)
    fused = torch.cat([rows(qt.data, i) for i, qt in enumerate(qts)]).contiguous()
    extra = {}
    if qts[0].scales is not None:   # int4: [N, K/gs]; int8: [N]
        scales = torch.cat([rows(qt.scales, i) for i, qt in enumerate(qts)])
        extra["scales"] = (scales.reshape(n) if qts[0].qtype == QType.INT8 else scales).contiguous()
    if qts[0].mins is not None:     # int4: [N, K/gs]
        extra["mins"] = torch.cat([rows(qt.mins, i) for i, qt in enumerate(qts)]).contiguous()
    if release is not None:   # the source's weights are views of a file: drop the pages we copied from
        for qt in qts:
            release(qt.data)
    return QTensor(fused, qts[0].qtype, (n, qts[0].shape[1]), group_size=qts[0].group_size,
                   in_perm=qts[0].in_perm, block_bits=qts[0].block_bits, **extra)


def _widths(qt) -> tuple | None:
    """An EXL2 weight's block widths (rows stack only where they agree), else None."""
    return None if qt.block_bits is None else tuple(qt.block_bits.tolist())


def fused_linear(source, names: list[str], shapes: list[tuple], biases: list, name: str,
                 row_perms: list | None = None) -> list[Linear]:
    """Linears for `names` in output order: one when all weights share a quant type, else one each."""
    qts = [source.qtensor(n, s) for n, s in zip(names, shapes)]
    if any(b is not None for b in biases):
        bias = torch.cat([b if b is not None else torch.zeros(s[0]) for b, s in zip(biases, shapes)])
    else:
        bias = None
    permute = row_perms is not None and any(p is not None for p in row_perms)
    same_format = len({(qt.qtype, qt.group_size, _widths(qt)) for qt in qts}) == 1 and _same_perm(qts)
    if same_format and qts[0].qtype not in _FLOAT_TYPES:
        if len(qts) == 1 and not permute:
            return [Linear(qts[0], bias, name)]
        # ggml-type tensors stored back to back in the file fuse as one view of it
        span = None if permute or qts[0].qtype >= 1000 else source.span(names)
        if span is not None:
            from ..qtensor import QTensor

            n = sum(qt.shape[0] for qt in qts)
            return [Linear(QTensor(span, qts[0].qtype, (n, qts[0].shape[1])), bias, name)]
        return [Linear(concat_rows(qts, row_perms, source.release), bias, name)]
    out, off = [], 0
    for i, qt in enumerate(qts):
        if row_perms is not None and row_perms[i] is not None:
            qt = concat_rows([qt], [row_perms[i]], source.release)
        b = None if bias is None else bias[off:off + qt.shape[0]].clone()
        out.append(Linear(qt, b, names[i]))
        off += qt.shape[0]
    return out


def _same_perm(qts) -> bool:
    """Rows fuse only when they read their input in the same order (EXL2: q/k/v share one act-order)."""
    p0 = qts[0].in_perm
    return all((qt.in_perm is None) == (p0 is None) and (p0 is None or torch.equal(qt.in_perm, p0))
               for qt in qts)


class Embedding:
    """Token embedding that stays quantized: each step gathers the rows of its ids and dequantizes
    only those (a 49152x576 Q8_0 table is 30 MB packed, 113 MB as float32).

    Tensor parallel: `qt` holds rows first..first+rows of a `vocab_size` vocabulary, and the ids
    outside them embed as zeros (the rank holding them supplies the row: an all-reduce)."""

    def __init__(self, qt, first: int = 0, vocab_size: int | None = None):
        self.qt = qt
        self.rows = qt.data.reshape(qt.shape[0], -1)   # interleaved (a tied head): groups of 8 rows
        self.n_rows, self.dim = qt.shape
        self.first = first
        self.vocab_size = self.n_rows if vocab_size is None else vocab_size

    def _take(self, idx: torch.Tensor) -> torch.Tensor:
        """Plain bytes of rows idx, [len(idx), row_bytes] uint8 (an interleaved table: their groups of 8
        rows put back in row order, pyquant/kernels/cpu/interleave.py)."""
        if not self.qt.interleave:
            return self.rows.index_select(0, idx)
        from ..kernels.cpu.interleave import deinterleave

        rb = self.rows.shape[1]
        groups = self.rows.reshape(-1, 8 * rb).index_select(0, idx // 8).reshape(-1, rb)
        plain = deinterleave(groups, self.qt.qtype).reshape(-1, 8, rb)
        return plain[torch.arange(idx.numel()), idx % 8]

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        from ..dequant import dequantize

        if self.first == 0 and self.n_rows == self.vocab_size:
            rows = self._take(ids)  # [S, row_bytes] uint8
            return dequantize(rows, self.qt.qtype, (ids.numel(), self.dim))  # [S, dim] float32
        local = ids - self.first
        mine = (local >= 0) & (local < self.n_rows)
        x = torch.zeros((ids.numel(), self.dim))
        if bool(mine.any()):
            rows = self._take(local[mine])
            x[mine] = dequantize(rows, self.qt.qtype, (int(mine.sum()), self.dim))
        return x
