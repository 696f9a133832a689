"""The model forward's row ops on the CPU: RMSNorm, the gated MLP's activation and causal
grouped-query attention over a prompt's S rows (csrc/cpu/prefill_ops.cpp), threaded on pyquant's
pool with the token step's own vector math. `takes(t)` says whether a tensor can use them (CPU,
float32, extension present); the forward keeps torch ops otherwise (other devices, other dtypes).

Measured (SmolLM2-135M, pp64, 2 threads): these ran as ~25 torch ops per layer on one thread,
~21 ms of a ~110 ms forward."""
from __future__ import annotations

import torch

from ..._ext import _C
from ...errors import KernelError

_HAVE = getattr(_C, "attention_rows", None) is not None


def takes(t: torch.Tensor) -> bool:
    return _HAVE and t.device.type == "cpu" and t.dtype == torch.float32


def _reach(t: torch.Tensor) -> int:
    """Bytes of t's storage from its first element on: what C++ may read through data_ptr."""
    return t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()


def _rows(t: torch.Tensor, name: str, width: int) -> int:
    """Row stride (floats) of a 2-D float32 view whose rows are contiguous runs of `width`."""
    if t.dim() != 2 or t.shape[1] != width or (t.stride(1) != 1 and width > 1) or not takes(t):
        raise KernelError(f"rowops: {name} must be a float32 CPU [rows, {width}] view with contiguous rows, got "
                          f"{tuple(t.shape)} {t.dtype} strides {t.stride()}")
    return t.stride(0)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [S, n] (rows contiguous) -> x * weight / sqrt(mean(x^2) + eps), a new [S, n] tensor."""
    S, n = x.shape
    xs = _rows(x, "x", n)
    w = weight.contiguous()
    if w.shape != (n,) or not takes(w):
        raise KernelError(f"rowops.rms_norm: weight must be float32 CPU [{n}], got {tuple(w.shape)} {w.dtype}")
    out = torch.empty((S, n))
    _C.rms_norm_rows(x.data_ptr(), _reach(x), xs, w.data_ptr(), _reach(w), out.data_ptr(), out.nbytes, n, S, n,
                     float(eps))
    return out


def act_mul(gate_up: torch.Tensor, act: str) -> torch.Tensor:
    """[S, 2 ffn] = [gate | up] -> act(gate) * up [S, ffn]; act "silu" or "gelu_tanh"."""
    S, f2 = gate_up.shape
    if not gate_up.is_contiguous() or f2 % 2 or not takes(gate_up):
        raise KernelError(f"rowops.act_mul: gate_up must be a contiguous float32 CPU [S, 2 ffn], got "
                          f"{tuple(gate_up.shape)} {gate_up.dtype}")
    out = torch.empty((S, f2 // 2))
    _C.act_mul_rows(gate_up.data_ptr(), _reach(gate_up), out.data_ptr(), out.nbytes, S, f2 // 2, act)
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start_pos: int, window: int,
              scale: float) -> torch.Tensor:
    """q [S, H, hd] at positions start_pos.., k/v [Hkv, T = start_pos + S, hd] (views of the KV
    cache: heads strided, positions contiguous) -> causal attention [S, H*hd]; window > 0: each
    query reads its last `window` positions only."""
    S, H, hd = q.shape
    Hkv, T, _ = k.shape
    if T != start_pos + S or v.shape != k.shape:
        raise KernelError(f"rowops.attention: k/v {tuple(k.shape)} / {tuple(v.shape)} do not hold positions "
                          f"0..{start_pos + S - 1}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not takes(t) or t.stride(2) != 1 or t.stride(1) != hd:
            raise KernelError(f"rowops.attention: {name} {tuple(t.shape)} strides {t.stride()}: rows of one "
                              f"{'query' if name == 'q' else 'head'} must be contiguous float32 on the CPU")
    if k.stride(0) != v.stride(0):
        raise KernelError("rowops.attention: k and v must share their head stride")
    out = torch.empty((S, H * hd))
    _C.attention_rows(q.data_ptr(), _reach(q), q.stride(0), k.data_ptr(), _reach(k), v.data_ptr(), _reach(v),
                      k.stride(0), out.data_ptr(), out.nbytes, S, H, Hkv, hd, int(start_pos), int(window),
                      float(scale))
    return out
