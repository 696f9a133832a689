"""The EXL2 width mixes the benchmarks time (bench_matmul.py on the CPU, gpu_check.py on a GPU).

Each mix is the fraction of K per block width, widest first: what the converter picks around each
target (2.5 bpw -> 2.8 bits read a weight, 4.0 -> 4.5, 6.0 -> 6.5).
"""
from __future__ import annotations

import torch

MIXES = {"exl2-2.5": [(3, 0.3), (2, 0.7)], "exl2-4.0": [(5, 0.1), (4, 0.8), (3, 0.1)],
         "exl2-6.0": [(8, 0.1), (6, 0.7), (5, 0.2)]}


def widths(name: str, k: int) -> torch.Tensor:
    """block_bits (uint8 [k/32]) of a mix: each width's share of the k/32 blocks, widest first."""
    nb, out = k // 32, []
    for bits, frac in MIXES[name]:
        out += [bits] * round(frac * nb)
    out = (out + [MIXES[name][-1][0]] * nb)[:nb]
    return torch.tensor(out, dtype=torch.uint8)
