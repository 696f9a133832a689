"""This process's peak resident memory, as the benchmarks and `pyquant compare` report it."""
from __future__ import annotations


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
    from ..models import trim_heap

    trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
