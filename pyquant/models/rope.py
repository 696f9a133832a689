"""Rotary position embedding as ggml's "normal" mode: adjacent pairs (x[2i], x[2i+1]) rotate by
pos * base^(-2i/rope_dim). "neox" models (pairs (i, i + rope_dim/2)) are run through the same code
by permuting their Q/K weight rows at load time (`neox_to_normal_rows`): q.k is invariant under a
permutation applied to both, so only the pairing changes."""
from __future__ import annotations

import torch


def rope_table(max_seq_len: int, rope_dim: int, base: float, linear_scale: float = 1.0,
               freq_factors: torch.Tensor | None = None) -> torch.Tensor:
    """complex64 [max_seq_len, rope_dim/2]: e^(i * pos * theta_j). theta_j = base^(-2j/rope_dim),
    divided by freq_factors[j] when the model has them (Llama 3's rope_freqs tensor)."""
    j = torch.arange(0, rope_dim, 2, dtype=torch.float64)
    theta = base ** (-j / rope_dim)
    if freq_factors is not None:
        theta = theta / freq_factors.to(torch.float64)
    pos = torch.arange(max_seq_len, dtype=torch.float64) / linear_scale
    angles = torch.outer(pos, theta)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def neox_to_normal_rows(n_heads: int, head_dim: int, rope_dim: int) -> torch.Tensor:
    """Row order that turns a neox-paired projection into an adjacent-paired one, per head."""
    half = rope_dim // 2
    head = torch.arange(head_dim)
    head[:rope_dim] = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)
    return (torch.arange(n_heads)[:, None] * head_dim + head[None, :]).reshape(-1)


def apply_rope_(x: torch.Tensor, freqs: torch.Tensor, rope_dim: int) -> None:
    """In place. x: [S, n_heads, head_dim] (last dim contiguous), freqs: [S, rope_dim/2] complex."""
    xc = torch.view_as_complex(x[..., :rope_dim].unflatten(-1, (rope_dim // 2, 2)))
    xc.mul_(freqs[:, None, :])
