"""This process's memory: its peak resident size (as the benchmarks and `pyquant compare` report it),
and giving freed heap and file pages we copied from back to the OS while a model loads."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def peak_rss_mib() -> float | None:
    """VmHWM of this process in MiB (Linux), else None."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> None:
    """Free what is garbage, then restart the kernel's peak-RSS count (VmHWM) from the current RSS:
    writing 5 to /proc/self/clear_refs (Linux >= 4.0). Elsewhere a no-op."""
    trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def trim_heap() -> None:
    """Give the heap freed while loading (tokenizer construction, metadata) back to the OS, so the
    file pages touched later do not stack on top of it in peak RSS. glibc only; else a no-op."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release_pages(t: torch.Tensor) -> None:
    """Drop the resident pages of a file-backed (copy-on-write, never written) tensor we have just
    copied from: they would otherwise count in RSS for nothing (re-read from the file if touched
    again, so this is always safe). Linux only; a no-op elsewhere."""
    import ctypes
    import mmap

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    page = mmap.PAGESIZE
    start = (t.data_ptr() + page - 1) // page * page
    end = (t.data_ptr() + t.nbytes) // page * page
    if end > start and hasattr(libc, "madvise"):
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED
