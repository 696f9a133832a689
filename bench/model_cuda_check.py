"""A whole model on CUDA (issue #8), run by bench/gpu_check.sh on a lent GPU.

1. Correctness: tiny random qwen2 (Q/K/V biases, neox RoPE) and gemma3 (QK-norm, post-norms, sliding
   window, soft-cap) GGUF models loaded with device="cuda" against the same files on the CPU with
   float activations: 16-token prefill logits within 1e-3 of the logits' range, and 16 greedy tokens
   equal.
2. Speed: a synthetic Llama-shaped stack (d 2048, 8 layers, FFN 5632, Q8_0 or Q4_K) on CUDA:
   prefill of 64 tokens and a token step (the model's forward, one token), against torch bf16
   matmuls of the same linears' dequantized weights in the same run (the linears' share of a bf16
   model's step: a floor for it), and as weight bytes per token / time.

Prints one line per check; exits non-zero on a mismatch. Not a CI test: CI has no GPU.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pyquant  # noqa: E402
from pyquant._ext import _C  # noqa: E402
from test_model import _write_tiny_model  # noqa: E402


def _cuda_time(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def check_tiny(tmp: Path) -> bool:
    ok = True
    cases = {"qwen2": dict(biases=True),
             "gemma3": dict(biases=False, tied=True, qk_norm=True, sliding_window=5, n_layers=7, post_norms=True,
                            softcap=3.0)}
    ids = list(range(40, 56))
    for arch, kw in cases.items():
        path = _write_tiny_model(tmp / f"{arch}.gguf", arch, **kw)
        cpu = pyquant.load(path, max_seq_len=64)
        gpu = pyquant.load(path, max_seq_len=64, device="cuda")
        a = cpu.forward(ids, 0, all_logits=True).double()
        b = gpu.forward(ids, 0, all_logits=True).double()
        err = float((a - b).abs().max()) / float(a.abs().max())
        ta = cpu.generate(ids, max_new_tokens=16)
        tb = gpu.generate(ids, max_new_tokens=16)
        good = err < 1e-3 and ta == tb
        ok &= good
        print(f"tiny {arch} cuda vs cpu: prefill rel err {err:.2e}, 16 greedy tokens "
              f"{'equal' if ta == tb else 'DIFFERENT'} -> {'ok' if good else 'FAIL'}")
    return ok


def bench_stack(tmp: Path, qtype: str) -> None:
    path = _write_tiny_model(tmp / f"stack_{qtype}.gguf", "llama", biases=False, n_layers=8, d=2048, H=16, Hkv=8,
                             ff=5632, qtype=qtype)
    m = pyquant.load(path, max_seq_len=256, device="cuda")
    ids = list(range(64))
    pp = _cuda_time(lambda: m.forward(ids, 0), 5)
    m.forward(ids, 0)
    tg = _cuda_time(lambda: m.step(7, 64), 20)
    lins = [m.output] + [lin for L in m.layers for lin in (*L.qkv, L.wo, *L.gate_up, L.down)]
    dense = [lin.qt.dequantize(torch.bfloat16) for lin in lins]   # on the GPU already
    x1 = torch.randn(1, 2048, device="cuda", dtype=torch.bfloat16)

    def bf16_step():
        for w in dense:
            (x1 if w.shape[1] == 2048 else x1.new_ones(1, w.shape[1])) @ w.t()

    ref = _cuda_time(bf16_step, 20)
    gbs = m.weight_nbytes / tg / 1e9
    print(f"stack {qtype} ({m.weight_nbytes / 2**20:.0f} MiB): pp64 {64 / pp:.0f} tok/s, tg {1 / tg:.0f} tok/s "
          f"({gbs:.0f} GB/s of weights), torch bf16 linears alone {1 / ref:.0f} tok/s -> tg ratio {ref / tg:.2f}x")
    print("  " + m.explain(64).splitlines()[-2].strip())


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    _C.set_matmul_act("float")   # the CPU side of the comparison: float activations, like the GPU kernels
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ok = check_tiny(tmp)
        for qtype in ("Q8_0", "Q4_K"):
            try:
                bench_stack(tmp, qtype)
            except Exception as e:   # report and go on: the correctness lines above still count
                print(f"stack {qtype}: {type(e).__name__}: {e}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
