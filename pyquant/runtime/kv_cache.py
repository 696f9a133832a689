"""Preallocated KV cache, one slab per layer.

Allocated with torch.empty: untouched pages cost no RSS, so a 4096-position cache only uses memory
for the positions actually written."""
from __future__ import annotations

import torch

from ..errors import PyquantError


class KVCache:
    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, max_seq_len: int,
                 dtype: torch.dtype = torch.float32, device=None):
        self.max_seq_len = max_seq_len
        # kv: [n_layers, 2 (k, v), n_kv_heads, max_seq_len, head_dim]; a head's positions are
        # contiguous, so attention reads K[:, :T] as plain strided matrices, and K and V of a new
        # token (adjacent in the fused QKV output) go in with one index_copy_.
        # Off the CPU zeroed: the CUDA-graph step attends over every position, masked, and a masked
        # position's value still meets a zero weight (0 * NaN garbage would be NaN).
        alloc = torch.empty if torch.device(device or "cpu").type == "cpu" else torch.zeros
        self.kv = alloc((n_layers, 2, n_kv_heads, max_seq_len, head_dim), dtype=dtype, device=device)
        self.layer_kv = list(self.kv.unbind(0))  # per-layer views made once, not per step
        self.layer_k = [kv[0] for kv in self.layer_kv]
        self.layer_v = [kv[1] for kv in self.layer_kv]

    def check(self, start: int, n: int) -> None:
        if start < 0 or start + n > self.max_seq_len:
            raise PyquantError(f"KV cache holds {self.max_seq_len} positions; positions {start}..{start + n - 1} "
                               f"do not fit (load the model with a larger max_seq_len)")

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v: [S, n_kv_heads, head_dim] for positions start..start+S-1 (start: an int, or a
        one-element device tensor with S = 1: the CUDA-graph step)."""
        if torch.is_tensor(start):
            self.layer_k[layer].index_copy_(1, start, k.transpose(0, 1))
            self.layer_v[layer].index_copy_(1, start, v.transpose(0, 1))
            return
        s = k.shape[0]
        self.layer_k[layer][:, start:start + s].copy_(k.transpose(0, 1))
        self.layer_v[layer][:, start:start + s].copy_(v.transpose(0, 1))

    def read(self, layer: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V: [n_kv_heads, length, head_dim] views of positions 0..length-1."""
        return self.layer_k[layer][:, :length], self.layer_v[layer][:, :length]
