"""One rank of a tensor-parallel or layer-split test run (tests/test_parallel.py starts N of these
with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set, as torchrun would).

    python tp_child.py MODEL OUT.pt [--die-after-load] [--split F0,F1,...]

Loads MODEL with tp=WORLD_SIZE (or the layer split) and saves, from every rank: the prefill logits of a fixed prompt,
the token-step logits that follow, a greedy and a seeded sampled generation.
"""
from __future__ import annotations

import os
import sys

import torch

import pyquant
from pyquant.models import set_threads

IDS = [1, 17, 42, 99, 7, 250, 3, 64, 128, 31, 5, 77]


def main(model_path: str, out: str, die: bool, split) -> None:
    set_threads(1)
    if split:
        m = pyquant.load(model_path, max_seq_len=64, split=[float(f) for f in split.split(",")])
    else:
        m = pyquant.load(model_path, max_seq_len=64, tp=int(os.environ["WORLD_SIZE"]))
    if die:   # a rank that dies after loading: the others must raise, not hang
        if m.group.rank == 1:
            os._exit(3)
    ids = [i % m.config.vocab_size for i in IDS]
    prefill = m.forward(ids, 0, all_logits=True).clone()
    steps = torch.stack([m.step(t, len(ids) + p).clone() for p, t in enumerate(ids[:6])])
    greedy = m.generate(ids, max_new_tokens=12, temperature=0)
    sampled = m.generate(ids, max_new_tokens=12, temperature=0.8, top_k=20)   # seed: rank 0's, shared
    torch.save({"rank": m.group.rank, "mode": m._step.mode, "layers": len(m.layers), "explain": m.explain(8),
                "wo_gathered": sum(L.wo_input is not None for L in m.layers), "prefill": prefill, "steps": steps, "greedy": greedy,
                "sampled": sampled, "heads": m.config.n_heads, "ffn": m.config.ffn_dim,
                "vocab_rows": (m.vocab_rows.start, m.vocab_rows.stop)}, out)


if __name__ == "__main__":
    split = sys.argv[sys.argv.index("--split") + 1] if "--split" in sys.argv else None
    main(sys.argv[1], sys.argv[2], "--die-after-load" in sys.argv, split)
