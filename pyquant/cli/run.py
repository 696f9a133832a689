"""`pyquant run MODEL -p PROMPT -n N`: stream a completion to stdout (timings to stderr)."""
from __future__ import annotations

import sys

from ._common import add_model_args, add_parallel_args, add_sampling_args, follower, load_model, non_negative_int


def register(subparsers):
    p = subparsers.add_parser("run", help="generate a completion, streamed")
    add_model_args(p)
    add_parallel_args(p)
    p.add_argument("-p", "--prompt", required=True)
    from ..runtime.sampling import DEFAULTS

    p.add_argument("-n", "--n-predict", type=non_negative_int, default=DEFAULTS.max_new_tokens,
                   help=f"at most this many new tokens; generation also ends at the end-of-text token "
                        f"(default {DEFAULTS.max_new_tokens})")
    add_sampling_args(p)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--no-echo", action="store_true", help="do not print the prompt first")
    p.add_argument("--quiet", action="store_true", help="no timings on stderr")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print which path and kernel run each phase (model.explain()) to stderr first")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..runtime.generate import GenerationStats, generate

    model = load_model(args)
    if args.verbose and not follower(model):
        print(model.explain(len(model.tokenizer.encode(args.prompt))), file=sys.stderr)
    stats = GenerationStats()
    out = sys.stdout
    if not args.no_echo:
        out.write(args.prompt)
        out.flush()
    for piece in generate(model, args.prompt, max_new_tokens=args.n_predict, temperature=args.temp,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop, stream=True,
                          stats=stats, repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n):
        out.write(piece)
        out.flush()
    out.write("\n")
    if stats.stop_reason == "context" and not follower(model):
        print(f"[stopped after {stats.generated_tokens} of {args.n_predict} tokens: the context is full "
              f"({model.max_seq_len} positions); raise -c/--ctx-size]", file=sys.stderr)
    if not args.quiet and not follower(model):
        print(f"[prompt: {stats.prompt_tokens} tok, {stats.prefill_tok_s:.1f} tok/s | generated: "
              f"{stats.generated_tokens} tok, {stats.step_tok_s:.1f} tok/s | stop: {stats.stop_reason}]",
              file=sys.stderr)
    return 0
