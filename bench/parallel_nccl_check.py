"""The tensor-parallel code path on a lent GPU (bench/gpu_check.sh), world size 1 under torchrun:
a "cpu:gloo,cuda:nccl" group; TensorParallel's sum and gather of CUDA tensors go through NCCL, and
SmolLM2 loaded with tp=1 (the sharded load, the C++ step with its reduce hook) generates the same
tokens as without. Prints one line per check; exits non-zero on a mismatch."""
from __future__ import annotations

import torch
import torch.distributed as dist

import pyquant
from pyquant.parallel import TensorParallel


def main() -> int:
    dist.init_process_group("cpu:gloo,cuda:nccl")
    tp = TensorParallel(1)
    t = torch.arange(8, dtype=torch.float32, device="cuda")
    tp._sum(t)                                                    # NCCL all_reduce (world size 1)
    out = torch.empty((1, 8), device="cuda")
    tp.gather_rows(t.view(1, -1), [8], out)
    ok = bool(torch.equal(out[0].cpu(), torch.arange(8, dtype=torch.float32)))
    print(f"nccl sum + gather of CUDA tensors: {'ok' if ok else 'MISMATCH'} ({tp})")
    one = pyquant.load("smollm2", max_seq_len=64).generate("The capital of France is", max_new_tokens=12)
    split = pyquant.load("smollm2", max_seq_len=64, tp=1)
    two = split.generate("The capital of France is", max_new_tokens=12)
    print(f"smollm2 tp=1 ({split._step.mode} step): {'same tokens' if one == two else 'DIFFERENT'}: {two!r}")
    dist.destroy_process_group()
    return 0 if ok and one == two else 1


if __name__ == "__main__":
    raise SystemExit(main())
