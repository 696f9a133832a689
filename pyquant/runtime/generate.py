"""Text generation: prefill the prompt in one batch (GEMM path), then one token step at a time
(GEMV path) until max_new_tokens, an end-of-generation token or a stop string."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from ..errors import PyquantError
from .sampling import Sampler, model_defaults, sampler_for


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    step_s: float = 0.0
    stop_reason: str = ""
    tokens: list = field(default_factory=list)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def step_tok_s(self) -> float:
        # the first generated token comes from the prefill logits, so token steps = generated - 1
        steps = max(self.generated_tokens - 1, 0)
        return steps / self.step_s if self.step_s else 0.0


def generate_tokens(model, prompt_ids: list[int], max_new_tokens: int, sampler: Sampler, stats=None,
                    start_pos: int = 0):
    """Yields generated token ids (EOG excluded). The prompt goes at positions start_pos.., so a chat
    can keep its KV cache across turns."""
    stats = stats if stats is not None else GenerationStats()
    if not prompt_ids:
        raise PyquantError("generate: empty prompt (and the model adds no BOS token)")
    n_prompt = len(prompt_ids)
    budget = model.max_seq_len - start_pos - n_prompt
    if budget < 0:
        raise PyquantError(f"prompt of {n_prompt} tokens does not fit the context ({model.max_seq_len})")
    context_bound = max_new_tokens > budget + 1
    max_new_tokens = min(max_new_tokens, budget + 1)
    stats.prompt_tokens = n_prompt
    for t in prompt_ids:
        sampler.accept(t)
    # the whole generation holds the model's lock (released when the generator ends or is closed)
    with getattr(model, "lock", None) or contextlib.nullcontext():
        t0 = time.perf_counter()
        logits = model.forward(prompt_ids, start_pos)
        stats.prefill_s = time.perf_counter() - t0
        pos = start_pos + n_prompt
        t0 = time.perf_counter()
        try:
            for i in range(max_new_tokens):
                token = sampler(logits)
                if model.tokenizer.is_eog(token):
                    stats.stop_reason = "eog"
                    return
                stats.generated_tokens += 1
                stats.tokens.append(token)
                sampler.accept(token)
                yield token
                if i + 1 == max_new_tokens:
                    break
                logits = model.step(token, pos)
                pos += 1
            # "length": the requested number of tokens; "context": the KV cache (max_seq_len) is full
            stats.stop_reason = "context" if context_bound else "length"
        finally:
            stats.step_s = time.perf_counter() - t0


def stream_text(model, token_iter, stop: list[str] | None = None, stats=None):
    """Text pieces from token ids: multi-byte characters split across tokens are held until complete;
    text that could still become a stop string is held back, and generation ends at the stop string
    (which is not emitted)."""
    decoder = model.tokenizer.stream_decoder()
    stops = [s for s in (stop or []) if s]
    hold = max((len(s) for s in stops), default=1) - 1
    pending = ""
    for token in token_iter:
        pending += decoder.push(token)
        if stops:
            cut = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                if cut:
                    yield pending[:cut]
                if stats is not None:
                    stats.stop_reason = "stop"
                token_iter.close()
                return
            if len(pending) > hold:
                yield pending[:len(pending) - hold]
                pending = pending[len(pending) - hold:]
        elif pending:
            yield pending
            pending = ""
    pending += decoder.flush()
    if pending:
        yield pending


def generate(model, prompt, max_new_tokens: int | None = None, temperature: float | None = None,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None, stop=None,
             stream: bool = False, stats: GenerationStats | None = None, add_bos: bool | None = None,
             parse_special: bool = True, repeat_penalty: float | None = None,
             repeat_last_n: int | None = None):
    """Completion of `prompt` (str, or a list of token ids). Returns the text, or with stream=True a
    generator of text pieces. Pass a GenerationStats to get token counts, timings and why it stopped
    ("eog", "length", "context" when the KV cache filled up, "stop" at a stop string). Sampling
    parameters left None take the model's defaults (a directory's generation_config.json), else
    those of `pyquant.runtime.sampling.DEFAULTS` (the CLI's too)."""
    if max_new_tokens is None:
        max_new_tokens = model_defaults(model).max_new_tokens
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise PyquantError(f"generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if isinstance(prompt, str):
        ids = model.tokenizer.encode(prompt, add_bos=add_bos, parse_special=parse_special)
    elif isinstance(prompt, (bytes, bytearray)) or prompt is None:
        raise PyquantError(f"generate: prompt must be text (str) or a list of token ids, got {type(prompt).__name__}")
    else:
        try:
            ids = [int(t) for t in prompt]
        except (TypeError, ValueError):
            raise PyquantError("generate: prompt must be text (str) or a list of token ids") from None
        vocab = model.config.vocab_size
        if any(not 0 <= t < vocab for t in ids):
            raise PyquantError(f"generate: token ids must be in [0, {vocab})")
    sampler = sampler_for(model, temperature, top_k, top_p, seed, repeat_penalty, repeat_last_n)
    pieces = stream_text(model, generate_tokens(model, ids, max_new_tokens, sampler, stats), stop, stats)
    return pieces if stream else "".join(pieces)
