"""`pyquant chat MODEL`: interactive chat with the model's own chat template.

Each turn re-renders the whole conversation, then prefills only the tokens after the longest prefix
already in the KV cache (so earlier turns are not recomputed)."""
from __future__ import annotations

import sys

from ._common import add_model_args, add_sampling_args, load_model, positive_int


def register(subparsers):
    p = subparsers.add_parser("chat", help="interactive chat (uses the model's chat template)")
    add_model_args(p)
    add_sampling_args(p)
    p.add_argument("-n", "--n-predict", type=positive_int, default=512, help="max tokens per reply")
    p.add_argument("--system", default=None, help="system message")
    p.set_defaults(func=main)


def _common_prefix(a: list, b: list) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main(args) -> int:
    from ..runtime.chat_template import render_chat
    from ..runtime.generate import generate_tokens, stream_text
    from ..runtime.sampling import sampler_for

    model = load_model(args)
    tok = model.tokenizer
    bos = tok.token_text(tok.bos_id) if tok.bos_id is not None else ""
    eos = tok.token_text(tok.eos_id) if tok.eos_id is not None else ""
    sampler = sampler_for(model, args.temp, args.top_k, args.top_p, args.seed, args.repeat_penalty,
                          args.repeat_last_n)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    cached: list[int] = []   # token ids whose K/V are in the cache, position = index
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.rstrip("\n")
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        prompt = render_chat(tok.chat_template, messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)
        ids = tok.encode(prompt, add_bos=tok.add_bos and not prompt.startswith(bos or "\0"), parse_special=True)
        start = min(_common_prefix(cached, ids), len(ids) - 1)
        if len(ids) + 1 > model.max_seq_len:
            print("[context full: starting a new conversation]", file=sys.stderr)
            messages, cached = messages[-1:], []
            continue
        generated, reply = [], []
        tokens = generate_tokens(model, ids[start:], args.n_predict, sampler, start_pos=start)

        def record(it):
            for t in it:
                generated.append(t)
                yield t

        for piece in stream_text(model, record(tokens)):
            reply.append(piece)
            print(piece, end="", flush=True)
        print()
        cached = ids + generated[:-1]
        messages.append({"role": "assistant", "content": "".join(reply)})
