"""`pyquant compare A B ... --text FILE`: perplexity, KL divergence from a base model and top-1
agreement on your own text, size, bits per weight and speed, for GGUF files and AWQ / EXL2
directories of one model side by side (pyquant/runtime/compare.py)."""
from __future__ import annotations

import json
import sys

from ._common import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="what each quantized version of a model loses, on your text")
    p.add_argument("models", nargs="+", help="GGUF files, model directories, aliases, or recipes built on the fly "
                                             "from one source: SRC:Q4_K_M, SRC:awq-g128, SRC:exl2-4.0")
    p.add_argument("--text", required=True, help="UTF-8 text to measure on")
    p.add_argument("-c", "--ctx", type=positive_int, default=512, help="chunk length in tokens (default 512)")
    p.add_argument("--chunks", type=positive_int, default=None, help="evaluate at most this many chunks")
    p.add_argument("--base", default=None, help="the reference model (default: the first of MODELS)")
    p.add_argument("--json", action="store_true", help="one JSON list on stdout")
    p.add_argument("--png", default=None, help="also plot quality vs bits per weight and speed vs size (matplotlib)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import PyquantError
    from ..runtime.compare import as_dicts, compare, format_table, plot
    from ._common import read_text_file

    text = read_text_file(args.text)
    if args.ctx < 4 or args.ctx % 2:
        raise PyquantError(f"-c/--ctx must be even and >= 4, got {args.ctx}")

    def progress(row):
        if not args.json:
            print(f"  {row.model}: PPL {row.ppl:.4f}, KLD {row.kld_mean:.5f}", file=sys.stderr, flush=True)

    rows = compare(args.models, text, ctx=args.ctx, max_chunks=args.chunks, base=args.base, progress=progress)
    print(json.dumps(as_dicts(rows), indent=1) if args.json else format_table(rows))
    if args.png:
        plot(rows, args.png)
        if not args.json:
            print(f"plot: {args.png}", file=sys.stderr)
    return 0
