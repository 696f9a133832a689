"""`pyquant ppl MODEL FILE --ctx 128`: perplexity computed as llama.cpp's llama-perplexity does."""
from __future__ import annotations

import json
import sys

from ._common import add_model_args, add_parallel_args, follower, positive_int


def register(subparsers):
    p = subparsers.add_parser("ppl", help="perplexity of a text file (llama-perplexity procedure)")
    add_model_args(p, ctx_flag=False)
    add_parallel_args(p)
    p.add_argument("file", help="UTF-8 text file")
    p.add_argument("-c", "--ctx", type=positive_int, default=512, help="chunk length in tokens (llama-perplexity's -c)")
    p.add_argument("--chunks", type=positive_int, default=None, help="evaluate at most this many chunks")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..errors import PyquantError
    from ..runtime.perplexity import perplexity
    from ._common import check_model_arg, load_model, read_text_file

    check_model_arg(args.model)
    text = read_text_file(args.file)        # before the model loads: a typo fails at once
    if args.ctx < 4 or args.ctx % 2:
        raise PyquantError(f"-c/--ctx must be even and >= 4, got {args.ctx}")
    args.max_seq_len = args.ctx
    model = load_model(args)

    def progress(i, n, ppl):
        if not args.json and not follower(model):
            print(f"[{i}]{ppl:.4f}", end=" " if i < n else "\n", file=sys.stderr, flush=True)

    r = perplexity(model, text, ctx=args.ctx, max_chunks=args.chunks, progress=progress)
    if args.json:
        print(json.dumps({"model": str(model.path), "file": args.file, **r.as_dict()}))
    else:
        print(f"perplexity: {r.ppl:.4f} ({r.n_chunks} chunks of {r.ctx}, {r.n_scored} scored tokens, "
              f"{r.seconds:.1f} s)")
    return 0
