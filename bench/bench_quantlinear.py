"""QuantLinear as a custom torch loop calls it: the row-interleaved CPU layout against plain rows.

    PYTHONPATH=. pytest bench/bench_quantlinear.py --benchmark-only -s

4096 x 14336 (Llama-3-8B's FFN), M = 1 and 8, 2 threads, cold weights (a pool of modules larger than
the L3, conftest.COLD_BYTES), the module's forward (torch.library op, dispatch, kernel) timed whole.
Each type runs both layouts in the same session and prints the ratio of medians: plain rows are what a
QuantLinear held before it kept the CPU kernels' layout (`QuantLinear(qt, interleave=False)` still
does), so the ratio is what a user's loop gains. The DRAM read probe of the same run is printed too.
"""
from __future__ import annotations

import pytest
import torch
from conftest import n_copies, run_rotating

from pyquant import QTensor
from pyquant.nn import QuantLinear

N, K = 4096, 14336
TYPES = ["Q4_0", "Q4_K", "Q8_0", "int4"]
_SECONDS: dict = {}


def _modules(qtype: str, interleave: bool) -> list:
    torch.manual_seed(0)
    qt = QTensor.quantize(torch.randn(N, K) * 0.02, qtype, group_size=128)
    first = QuantLinear(qt, interleave=interleave)
    nbytes = sum(t.nbytes for t in qt.tensors().values())
    mods = [first]
    for _ in range(n_copies(nbytes, True) - 1):
        copy = QuantLinear(qt, interleave=interleave)
        copy.load_state_dict({k: v.clone() for k, v in first.state_dict().items()})   # its own memory
        mods.append(copy)
    return mods


@pytest.mark.parametrize("m", [1, 8])
@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("interleave", [False, True], ids=["plain", "interleaved"])
def test_quantlinear(benchmark, threads, roofline, qtype, m, interleave):
    threads(2)
    mods = _modules(qtype, interleave)
    assert all(mod.interleave == (8 if interleave else 0) for mod in mods)
    x = torch.randn(m, K)
    run_rotating(benchmark, lambda mod: mod(x), mods, {"qtype": qtype, "m": m, "interleave": interleave})
    sec = benchmark.stats.stats.median   # the minimum favours whichever side met a quiet moment here
    _SECONDS[(qtype, m, interleave)] = sec
    other = _SECONDS.get((qtype, m, not interleave))
    if other is not None:
        plain, inter = (other, sec) if interleave else (sec, other)
        print(f"\nQuantLinear {qtype} {N}x{K} M={m}, 2 threads, cold: plain rows {plain * 1e3:.2f} ms, "
              f"interleaved {inter * 1e3:.2f} ms -> {plain / inter:.2f}x (read probe {roofline(2):.1f} GB/s)")
