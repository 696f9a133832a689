"""Perplexity exactly as llama.cpp's `llama-perplexity` (tools/perplexity/perplexity.cpp) computes it,
so the numbers compare one to one:

- tokenize the whole text once (BOS prepended when the model's add_bos says so);
- cut it into floor(n_tokens / ctx) consecutive chunks of ctx tokens (the tail is dropped);
- each chunk is evaluated from an empty KV cache; when add_bos, its first token is replaced by BOS;
- only the second half is scored: logits at positions ctx/2 .. ctx-2 predict tokens ctx/2+1 .. ctx-1
  (ctx/2 - 1 tokens per chunk); ppl = exp(mean negative log-likelihood over all scored tokens).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..errors import PyquantError


@dataclass
class PerplexityResult:
    ppl: float
    n_chunks: int
    ctx: int
    n_tokens: int
    n_scored: int
    seconds: float
    chunk_ppl: list = field(default_factory=list)   # running ppl after each chunk (llama.cpp's [1]..[n])

    def as_dict(self) -> dict:
        return {"ppl": self.ppl, "chunks": self.n_chunks, "ctx": self.ctx, "tokens": self.n_tokens,
                "scored": self.n_scored, "seconds": self.seconds,
                "tokens_per_s": self.n_chunks * self.ctx / self.seconds if self.seconds else 0.0}


def perplexity(model, text: str, ctx: int = 512, max_chunks: int | None = None, progress=None,
               forward=None) -> PerplexityResult:
    """`forward(ids) -> logits [ctx, vocab]` defaults to the model's own (fresh cache per chunk)."""
    tok = model.tokenizer
    tokens = tok.encode(text, parse_special=False)  # add_bos as the model says, like common_tokenize
    if ctx < 4 or ctx % 2:
        raise PyquantError(f"perplexity: ctx must be even and >= 4 (got {ctx})")
    n_chunks = len(tokens) // ctx
    if max_chunks is not None:
        n_chunks = min(n_chunks, max_chunks)
    if n_chunks == 0:
        raise PyquantError(f"perplexity: the text has {len(tokens)} tokens, need at least 2*ctx = {2 * ctx}"
                           if len(tokens) < ctx else "perplexity: no chunk")
    forward = forward or (lambda ids: model.forward(ids, 0, all_logits=True))
    first = ctx // 2
    nll, count, running = 0.0, 0, []
    t0 = time.perf_counter()
    for c in range(n_chunks):
        chunk = tokens[c * ctx:(c + 1) * ctx]
        if tok.add_bos and tok.bos_id is not None:
            chunk = [tok.bos_id] + chunk[1:]
        logits = forward(torch.tensor(chunk))                     # [ctx, vocab]
        logp = torch.log_softmax(logits[first:ctx - 1].double(), dim=-1)
        targets = torch.tensor(chunk[first + 1:ctx])
        nll -= float(logp.gather(1, targets[:, None]).sum())
        count += ctx - 1 - first
        running.append(math.exp(nll / count))
        if progress:
            progress(c + 1, n_chunks, running[-1])
    return PerplexityResult(ppl=running[-1], n_chunks=n_chunks, ctx=ctx, n_tokens=len(tokens), n_scored=count,
                            seconds=time.perf_counter() - t0, chunk_ppl=running)
