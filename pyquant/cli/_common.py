"""Arguments shared by the runner subcommands (run, chat, bench, ppl)."""
from __future__ import annotations


def add_model_args(p, threads_default=None):
    p.add_argument("model", help="GGUF file or alias (smollm2)")
    p.add_argument("-t", "--threads", type=int, default=threads_default,
                   help="threads for pyquant's kernels and torch (default: torch's count)")
    p.add_argument("-c", "--ctx-size", type=int, default=None, dest="max_seq_len",
                   help="KV cache positions (default: min(model context, 4096))")


def add_sampling_args(p):
    p.add_argument("--temp", type=float, default=0.0, help="temperature (0 = greedy, the default)")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=None)


def load_model(args):
    from ..models import load, set_threads

    if args.threads:
        set_threads(args.threads)
    return load(args.model, max_seq_len=args.max_seq_len)
