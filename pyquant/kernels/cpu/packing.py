"""Step-order packing of the quantized weights into one huge-page-backed buffer.

A decoded token streams every weight once (96 MB for SmolLM2 Q4_1: 3x the L3), straight from the
mmap'ed GGUF file by default: 4 KiB pages, so ~24k dTLB misses per token (Zen 3's L2 TLB covers
8 MiB) and tensors scattered in file order. Copying the weights at load time, in the order a token
step reads them (per layer qkv, wo, gate_up, down; then the output head), into one anonymous
buffer advised MADV_HUGEPAGE (2 MiB pages where the kernel's THP mode is `madvise` or `always`)
measured on the shared 2-core Zen 3 box (load ~2), C++ token step at positions 64..95, per-step
wall time p10 / median over 384 steps, file mapping and packed copy interleaved in one process:
2 threads 5.18 / 5.65 -> 4.96 / 5.37 ms, 1 thread 12.71 / 13.34 -> 11.91 / 12.53 ms. The file pages we copied from are dropped (release_pages), so RSS does not grow: the
anonymous copy replaces them. PYQUANT_PACK_WEIGHTS=0 keeps the file mapping (for comparisons).

The copy is also where Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q6_K / Q8_0 weights take the row-interleaved
layout the small-M kernels read fastest (pyquant/kernels/cpu/interleave.py: same bytes, permuted
within groups of 8 rows; 1.46x at M = 1 for Q4_0 4096x14336, 2 threads, cold). A tied output head
is interleaved too (the embedding reads its rows back through _C.Weight.dequantize_row or a
gather of their groups); an embedding-only table is not (the token step dequantizes its rows
straight from the bytes). int4 weights (AWQ, built in
memory) take the same layout here, without the packed copy. PYQUANT_INTERLEAVE=0 keeps every weight
row by row.
"""
from __future__ import annotations

import os

import torch

from ...qtypes import QType


_HUGE = 2 << 20
_ALIGN = 4096
_MADV_HUGEPAGE = 14
_SLICE = 4 << 20


def _advise_huge(ptr: int, nbytes: int) -> None:
    import ctypes
    import sys

    if not sys.platform.startswith("linux") or nbytes < _HUGE:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(ptr), ctypes.c_size_t(nbytes // _HUGE * _HUGE), _MADV_HUGEPAGE)
    except (OSError, AttributeError):
        pass   # no THP: the copy is still contiguous and in step order


def _packable(qt) -> bool:
    """Weights the step reads as stored bytes: ggml block types and float (F32/F16/BF16) rows, on
    the CPU, contiguous. pyquant's int4 / int8 (separate scale tensors) are built in memory by their
    readers, never views of a file, and stay where they are."""
    return (int(qt.qtype) < 1000 and qt.data.device.type == "cpu" and qt.data.dtype == torch.uint8
            and qt.data.is_contiguous())


def pack_step_weights(model, release=None) -> int:
    """Moves every Linear of `model` that reads stored bytes, then the token embedding (before the
    step state is built: it binds the weights as they are then), into one buffer in step order; returns the
    bytes packed (0 when disabled).

    Float linears (an AWQ model's F16 lm_head: 56 MB for SmolLM2) and the embedding are packed too,
    so that after loading the model holds no view of its file: a file replaced or truncated under a
    running model (`cp new.gguf model.gguf`) would otherwise end it with SIGBUS on the next token
    (issue #15). A tied embedding shares the output head's packed bytes. Packing floats measured
    within noise for speed (tg32 151 vs 150 tok/s).
    release: the weight source's page dropper for file-backed weights (None: the copies' sources are
    plain memory, freed when the last reference goes)."""
    if os.environ.get("PYQUANT_PACK_WEIGHTS", "1") == "0":
        return 0
    from ...models.weights import Embedding
    from ...qtensor import QTensor
    from . import interleave as il

    lins = []
    for L in model.layers:
        lins += [*L.qkv, L.wo, *L.gate_up, L.down]
    if model.output is not None:   # a layer split's last rank only
        lins.append(model.output)
    interleave = os.environ.get("PYQUANT_INTERLEAVE", "1") != "0"
    for lin in lins:   # int4 / EXL2 are no file views: rewritten in place, one weight's temporary at a time
        qt = lin.qt        # (new copies of all of them while the loader still held the old ones: +35 MB peak)
        if (interleave and lin.dense is None and qt.qtype in (QType.INT4, QType.EXL2) and qt.data.device.type == "cpu"
                and not qt.interleave and il.supports(qt.qtype, qt.shape)):
            for old, t in zip((qt.data, qt.scales, qt.mins), il.convert(qt, to_interleaved=True)):
                if old is not None:
                    old.copy_(t)
            qt.interleave = 8   # the same object: whoever else holds it sees the new layout
    lins = [lin for lin in lins if lin.dense is None and _packable(lin.qt)]
    qts = [lin.qt for lin in lins]
    embed = model.embed
    tied = None   # the output head whose bytes are the embedding's (same memory)
    if embed is not None and _packable(embed.qt):
        key = (embed.qt.data.data_ptr(), embed.qt.data.nbytes)
        tied = next((i for i, qt in enumerate(qts) if (qt.data.data_ptr(), qt.data.nbytes) == key), None)
        if tied is None:
            qts.append(embed.qt)
    sizes = [(qt.data.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN for qt in qts]
    total = sum(sizes)
    if total == 0:
        return 0

    def interleavable(qt):   # the output head (tied to the embedding or not) included; an embedding-only table not
        return (interleave and not qt.interleave and (embed is None or tied is not None or qt is not embed.qt)
                and il.supports(qt.qtype, qt.shape))

    mix = [interleavable(qt) for qt in qts]
    raw = torch.empty(total + _HUGE, dtype=torch.uint8)
    start = (-raw.data_ptr()) % _HUGE
    _advise_huge(raw.data_ptr() + start, total)   # before the first touch: the pages fault in huge
    off = start
    packed = []
    for qt, size, inter in zip(qts, sizes, mix):
        src = qt.data
        dst = raw[off:off + src.nbytes]
        flat = src.reshape(-1)
        # _SLICE at a time (whole groups of 8 rows when interleaving), dropping the source pages as
        # we go: copying a 30 MB output head whole first faulted it all in (peak RSS +30 MB over
        # the test's file + 300 MB budget)
        step = _SLICE
        if inter:
            rb = src.nbytes // qt.shape[0]
            step = max(1, _SLICE // (8 * rb)) * 8 * rb
        for a in range(0, src.nbytes, step):
            b = min(src.nbytes, a + step)
            if inter:
                dst[a:b].view(-1, rb).copy_(il.interleave(flat[a:b].view(-1, rb), qt.qtype))
            else:
                dst[a:b].copy_(flat[a:b])
            if release is not None:
                # only what has been copied: MADV_DONTNEED drops file-backed pages (re-read if touched)
                # but zeroes anonymous ones (a fused QKV / gate-up copy), so never a byte ahead of b
                release(flat[a:b])
        packed.append(QTensor(dst.view(src.shape), qt.qtype, qt.shape, in_perm=qt.in_perm,
                              interleave=8 if inter else qt.interleave))
        off += size
    for lin, qt in zip(lins, packed):
        lin.qt = qt
    if embed is not None and _packable(embed.qt):
        qt = packed[tied] if tied is not None else packed[-1]
        model.embed = Embedding(QTensor(qt.data, qt.qtype, qt.shape, interleave=qt.interleave), embed.first,
                                embed.vocab_size)
    return total
