"""Next-token choice: greedy (temperature 0) or temperature / top-k / top-p sampling with a seed, after
an optional repetition penalty.

Order as llama.cpp's common sampler chain: penalties (over the last `repeat_last_n` tokens, prompt
included), top-k, top-p over the renormalised survivors, temperature, then a draw from a seeded
generator (same seed -> same tokens). `DEFAULTS` is the one set of defaults that `generate`, the
model's `generate` and the CLI all use."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch

from ..errors import PyquantError


@dataclass(frozen=True)
class SamplingDefaults:
    """Greedy by default (the same answer every run; top-k / top-p apply once temperature > 0, with
    llama.cpp's values), no repetition penalty (llama.cpp's default 1.0), at most 128 new tokens."""
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    max_new_tokens: int = 128


    @classmethod
    def from_generation_config(cls, gc: dict) -> "SamplingDefaults":
        """A Hugging Face generation_config.json's choices over pyquant's defaults: temperature only
        when it samples (do_sample), top_k / top_p / repetition_penalty / max_new_tokens as given;
        a value of the wrong type or range is ignored (the defaults are a convenience, never an error)."""
        base = cls()
        kw = {}

        def num(key, ok):
            v = gc.get(key)
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) and ok(v) else None

        if gc.get("do_sample") is True and num("temperature", lambda v: 0 < v < 100) is not None:
            kw["temperature"] = float(gc["temperature"])
        if num("top_k", lambda v: v >= 0 and v == int(v)) is not None:
            kw["top_k"] = int(gc["top_k"])
        if num("top_p", lambda v: 0 < v <= 1) is not None:
            kw["top_p"] = float(gc["top_p"])
        if num("repetition_penalty", lambda v: 0 < v < 100) is not None:
            kw["repeat_penalty"] = float(gc["repetition_penalty"])
        if num("max_new_tokens", lambda v: v >= 1 and v == int(v)) is not None:
            kw["max_new_tokens"] = int(gc["max_new_tokens"])
        return cls(**{**base.__dict__, **kw})


DEFAULTS = SamplingDefaults()


def sampler_for(model, temperature=None, top_k=None, top_p=None, seed=None, repeat_penalty=None,
                repeat_last_n=None) -> "Sampler":
    """A Sampler with the given parameters, the model's defaults for those left None."""
    d = model_defaults(model)
    pick = lambda v, dv: dv if v is None else v  # noqa: E731
    if seed is None and getattr(model, "group", None) is not None:
        seed = model.group.common_seed()   # a split model's ranks must all draw the same token
    return Sampler(pick(temperature, d.temperature), pick(top_k, d.top_k), pick(top_p, d.top_p), seed,
                   pick(repeat_penalty, d.repeat_penalty), pick(repeat_last_n, d.repeat_last_n))


def model_defaults(model) -> SamplingDefaults:
    """The sampling defaults a model was shipped with (a directory's generation_config.json), else
    pyquant's."""
    return getattr(model, "sampling_defaults", None) or DEFAULTS


class Sampler:
    def __init__(self, temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                 top_p: float = DEFAULTS.top_p, seed: int | None = None,
                 repeat_penalty: float = DEFAULTS.repeat_penalty, repeat_last_n: int = DEFAULTS.repeat_last_n):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (temperature, top_p, top_k)) \
                or not math.isfinite(temperature) or temperature < 0 or not 0 < top_p <= 1 \
                or top_k < 0 or top_k != int(top_k):
            raise PyquantError(f"sampling: need temperature >= 0, 0 < top_p <= 1, top_k >= 0 "
                               f"(got {temperature}, {top_p}, {top_k})")
        if not (isinstance(repeat_penalty, (int, float)) and math.isfinite(repeat_penalty) and repeat_penalty > 0) \
                or not isinstance(repeat_last_n, int) or repeat_last_n < 0:
            raise PyquantError(f"sampling: need repeat_penalty > 0 and repeat_last_n >= 0 "
                               f"(got {repeat_penalty}, {repeat_last_n})")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.repeat_penalty = repeat_penalty
        self.recent: deque[int] = deque(maxlen=repeat_last_n)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63):
            raise PyquantError(f"sampling: seed must be an integer in [0, 2^63), got {seed!r}")
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else torch.seed())

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    def accept(self, token: int) -> None:
        """Record a token of the context (prompt or generated) for the repetition penalty."""
        if self.recent.maxlen:
            self.recent.append(int(token))

    def penalize(self, logits: torch.Tensor) -> torch.Tensor:
        """llama.cpp's repeat penalty: each distinct recent token's logit is divided by the penalty
        when positive, multiplied when negative (a copy; the model's buffer is left alone)."""
        if self.repeat_penalty == 1.0 or not self.recent:
            return logits
        ids = torch.tensor(sorted(set(self.recent)), dtype=torch.long)
        out = logits.clone()
        v = out[ids]
        out[ids] = torch.where(v > 0, v / self.repeat_penalty, v * self.repeat_penalty)
        return out

    def __call__(self, logits: torch.Tensor) -> int:
        """logits: [vocab] float -> token id."""
        logits = self.penalize(logits)
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
