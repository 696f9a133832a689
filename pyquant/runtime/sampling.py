"""Next-token choice: greedy (temperature 0) or temperature / top-k / top-p sampling with a seed.

Order as llama.cpp's common sampler chain: top-k, then top-p over the renormalised survivors,
then temperature, then a draw from a seeded generator (same seed -> same tokens)."""
from __future__ import annotations

import torch

from ..errors import PyquantError


class Sampler:
    def __init__(self, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None):
        if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
            raise PyquantError(f"sampling: need temperature >= 0, 0 < top_p <= 1, top_k >= 0 "
                               f"(got {temperature}, {top_p}, {top_k})")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else torch.seed())

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    def __call__(self, logits: torch.Tensor) -> int:
        """logits: [vocab] float -> token id."""
        if self.greedy:
            return int(torch.argmax(logits))
        if self.top_k:
            vals, idx = torch.topk(logits, min(self.top_k, logits.numel()))   # sorted, descending
        else:
            vals, idx = torch.sort(logits, descending=True)
        if self.top_p < 1.0:
            probs = torch.softmax(vals.float(), dim=-1)
            # keep the smallest prefix whose mass reaches top_p (at least one token)
            keep = int(torch.searchsorted(torch.cumsum(probs, 0), torch.tensor([self.top_p])).item()) + 1
            vals, idx = vals[:keep], idx[:keep]
        probs = torch.softmax(vals.float() / self.temperature, dim=-1)
        return int(idx[torch.multinomial(probs, 1, generator=self.generator)])
