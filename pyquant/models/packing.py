"""Decode-order packing of the quantized weights into one huge-page-backed buffer.

A decoded token streams every weight once (96 MB for SmolLM2 Q4_1: 3x the L3), straight from the
mmap'ed GGUF file by default: 4 KiB pages, so ~24k dTLB misses per token (Zen 3's L2 TLB covers
8 MiB) and tensors scattered in file order. Copying the weights at load time, in the order a decode
step reads them (per layer qkv, wo, gate_up, down; then the output head), into one anonymous
buffer advised MADV_HUGEPAGE (2 MiB pages where the kernel's THP mode is `madvise` or `always`)
measured on the shared 2-core Zen 3 box (load ~2), C++ decode step at positions 64..95, per-step
wall time p10 / median over 384 steps, file mapping and packed copy interleaved in one process:
2 threads 5.18 / 5.65 -> 4.96 / 5.37 ms, 1 thread 12.71 / 13.34 -> 11.91 / 12.53 ms. The file pages we copied from are dropped (release_pages), so RSS does not grow: the
anonymous copy replaces them. PYQUANT_PACK_WEIGHTS=0 keeps the file mapping (for comparisons).
"""
from __future__ import annotations

import os

import torch


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
        pass   # no THP: the copy is still contiguous and in decode order


def _packable(lin) -> bool:
    """ggml block types only. Float weights (an AWQ model's F16 lm_head: 56 MB for SmolLM2) stay where
    they are: packing them measured within noise for speed (tg32 151 vs 150 tok/s) and cost 35 MB of
    peak RSS while the copy ran (431 vs 397 MB)."""
    from ..qtypes import Kind, info

    qt = lin.qt
    return (lin.dense is None and int(qt.qtype) < 1000 and info(qt.qtype).kind is not Kind.FLOAT
            and qt.scales is None and qt.data.device.type == "cpu" and qt.data.dtype == torch.uint8
            and qt.data.is_contiguous())


def pack_decode_weights(model, release=None) -> int:
    """Moves every quantized Linear of `model` (before its decode state is built: that binds raw
    pointers) into one buffer in decode order; returns the bytes packed (0 when disabled).
    release: the weight source's page dropper for file-backed weights (None: the copies' sources are
    plain memory, freed when the last reference goes)."""
    if os.environ.get("PYQUANT_PACK_WEIGHTS", "1") == "0":
        return 0
    from ..qtensor import QTensor

    lins = []
    for L in model.layers:
        lins += [*L.qkv, L.wo, *L.gate_up, L.down]
    if model.output is not None:   # a layer split's last rank only
        lins.append(model.output)
    lins = [lin for lin in lins if _packable(lin)]
    sizes = [(lin.qt.data.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN for lin in lins]
    total = sum(sizes)
    if total == 0:
        return 0
    raw = torch.empty(total + _HUGE, dtype=torch.uint8)
    start = (-raw.data_ptr()) % _HUGE
    _advise_huge(raw.data_ptr() + start, total)   # before the first touch: the pages fault in huge
    off = start
    for lin, size in zip(lins, sizes):
        src = lin.qt.data
        dst = raw[off:off + src.nbytes]
        flat = src.reshape(-1)
        # 4 MiB at a time, dropping the source pages as we go: copying a 30 MB output head whole
        # first faulted it all in (peak RSS +30 MB over the test's file + 300 MB budget)
        for a in range(0, src.nbytes, _SLICE):
            b = min(src.nbytes, a + _SLICE)
            dst[a:b].copy_(flat[a:b])
            if release is not None:
                release(flat[a:b])   # file-backed pages: dropped; anonymous (fused copies): freed with src
        lin.qt = QTensor(dst.view(src.shape), lin.qt.qtype, lin.qt.shape, in_perm=lin.qt.in_perm)
        off += size
    return total
