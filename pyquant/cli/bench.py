"""`pyquant bench MODEL -p 64 -n 32 -t 2`: prompt processing and generation speed, llama-bench style.

pp: one batched forward of p random tokens from an empty cache. tg: n single-token decode steps
from an empty cache (random tokens, as llama-bench). Each test runs once to warm up, then -r times.
Achieved bandwidth = weight bytes read per generated token x tokens/s (the roofline of decoding)."""
from __future__ import annotations

import json
import statistics
import sys
import time

from ._common import add_model_args


def register(subparsers):
    p = subparsers.add_parser("bench", help="prompt / generation tokens per second and weight bandwidth")
    add_model_args(p)
    p.add_argument("-p", "--n-prompt", type=int, default=64)
    p.add_argument("-n", "--n-gen", type=int, default=32)
    p.add_argument("-r", "--repetitions", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=main)


def bench_model(model, n_prompt: int, n_gen: int, reps: int, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size

    def pp():
        ids = torch.randint(0, vocab, (n_prompt,), generator=g)
        t0 = time.perf_counter()
        model.forward(ids, 0)
        return n_prompt / (time.perf_counter() - t0)

    def tg():
        ids = torch.randint(0, vocab, (n_gen,), generator=g).tolist()
        t0 = time.perf_counter()
        for pos, token in enumerate(ids):
            model.decode_step(token, pos)
        return n_gen / (time.perf_counter() - t0)

    res = {"model": str(model.path), "n_prompt": n_prompt, "n_gen": n_gen, "repetitions": reps,
           "threads": _threads(), "weight_bytes_per_token": model.weight_nbytes}
    for name, fn, n in (("pp", pp, n_prompt), ("tg", tg, n_gen)):
        if n <= 0:
            continue
        fn()  # warm-up: first-touch page faults of the mmap, allocator, lazy imports
        runs = [fn() for _ in range(reps)]
        res[f"{name}_tok_s"] = statistics.mean(runs)
        res[f"{name}_tok_s_std"] = statistics.stdev(runs) if len(runs) > 1 else 0.0
    if "tg_tok_s" in res:
        res["tg_weight_GB_s"] = res["tg_tok_s"] * model.weight_nbytes / 1e9
        res["tg_ms_per_token"] = 1e3 / res["tg_tok_s"]
    return res


def _threads() -> int:
    from .._ext import num_threads

    return num_threads()


def main(args) -> int:
    from ._common import load_model

    if args.max_seq_len is None:
        args.max_seq_len = max(args.n_prompt, args.n_gen) + 1
    model = load_model(args)
    res = bench_model(model, args.n_prompt, args.n_gen, args.repetitions)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"model: {res['model']}  threads: {res['threads']}  weights/token: "
          f"{res['weight_bytes_per_token'] / 1e6:.1f} MB")
    if "pp_tok_s" in res:
        print(f"pp{args.n_prompt}: {res['pp_tok_s']:8.1f} ± {res['pp_tok_s_std']:.1f} tok/s")
    if "tg_tok_s" in res:
        print(f"tg{args.n_gen}: {res['tg_tok_s']:8.1f} ± {res['tg_tok_s_std']:.1f} tok/s  "
              f"({res['tg_ms_per_token']:.2f} ms/token, {res['tg_weight_GB_s']:.1f} GB/s of weights)")
    sys.stdout.flush()
    return 0
