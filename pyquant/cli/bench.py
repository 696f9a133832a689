"""`pyquant bench MODEL -p 64 -n 32 -t 2`: prompt processing and generation speed, llama-bench style.

pp: one batched forward of p random tokens from an empty cache. tg: n single-token token steps
from an empty cache (random tokens, as llama-bench). Each test runs once to warm up, then -r times.
Achieved bandwidth = weight bytes read per generated token x tokens/s (the roofline of decoding)."""
from __future__ import annotations

import json
import statistics
import sys
import time

from ._common import add_model_args, add_parallel_args, non_negative_int, positive_int


def register(subparsers):
    p = subparsers.add_parser("bench", help="prompt / generation tokens per second and weight bandwidth")
    add_model_args(p)
    add_parallel_args(p)
    p.add_argument("-p", "--n-prompt", type=non_negative_int, default=64,
                   help="prompt tokens prefilled in one batch: the pp<N> figure (llama-bench -p; default 64)")
    p.add_argument("-n", "--n-gen", type=non_negative_int, default=32,
                   help="tokens generated one step at a time: the tg<N> figure (llama-bench -n; default 32)")
    p.add_argument("-r", "--repetitions", type=positive_int, default=3,
                   help="runs of each test; mean and std are reported (llama-bench -r; default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the table")
    p.add_argument("--overhead", action="store_true",
                   help="also time token steps with the matmuls skipped: the Python + torch-op cost per token")
    p.add_argument("--roofline", action="store_true",
                   help="also measure the DRAM read bandwidth (_C.bandwidth_probe, same threads) for reference")
    p.add_argument("--per-gemv", action="store_true",
                   help="C++ token step: one thread-pool dispatch per GEMV instead of one parallel region per "
                        "token (the previous structure, for side-by-side measurements)")
    p.set_defaults(func=main)


GEMV_PHASES = ("qkv", "wo", "gate_up", "down", "output_head")


def native_profile(model, n: int = 32, reps: int = 3) -> dict:
    """The C++ token step's per-phase microseconds per token (_C.LlmStep.profile) over reps x n
    steps from an empty cache, plus "python": the rest of a step call's wall time (embedding
    row, checks, the call itself)."""
    st = model._step
    st.native.set_profile(True)
    try:
        t0 = time.perf_counter()
        for _ in range(reps):
            for pos in range(n):
                model.step(1, pos)
        wall = (time.perf_counter() - t0) / (reps * n) * 1e6
        prof = dict(st.native.profile())
    finally:
        st.native.set_profile(False)
    prof["python"] = max(0.0, wall - sum(prof.values()))
    return prof


def step_overhead(model, n: int = 32, reps: int = 3) -> float | None:
    """Seconds per token step spent outside the matmul kernels: everything but the GEMV phases of
    the C++ step's profile (norms, activation quantization, RoPE, KV write, attention, SiLU, Python).
    None when the model runs without the C++ step (its forward per token has no such profile)."""
    if model._step.native is None:
        return None
    prof = native_profile(model, n, reps)
    return sum(v for k, v in prof.items() if k not in GEMV_PHASES) / 1e6


def bench_model(model, n_prompt: int, n_gen: int, reps: int, seed: int = 0, overhead: bool = False) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size

    def pp():
        ids = torch.randint(0, vocab, (n_prompt,), generator=g)
        t0 = time.perf_counter()
        model.forward(ids, 0)
        return n_prompt / (time.perf_counter() - t0)

    cpu = []   # process CPU seconds per generated token (all threads; spinning workers included)

    def tg():
        ids = torch.randint(0, vocab, (n_gen,), generator=g).tolist()
        c0, t0 = time.process_time(), time.perf_counter()
        for pos, token in enumerate(ids):
            model.step(token, pos)
        t1 = time.perf_counter()
        cpu.append((time.process_time() - c0) / n_gen)
        return n_gen / (t1 - t0)

    res = {"model": str(model.path), "n_prompt": n_prompt, "n_gen": n_gen, "repetitions": reps,
           "threads": _threads(), "weight_bytes_per_token": model.weight_nbytes,
           "step": model._step.mode}
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
        res["tg_cpu_ms_per_token"] = 1e3 * min(cpu[1:] or cpu)   # best measured run (not the warm-up)
    from ..runtime.memory import peak_rss_mib

    res["peak_rss_mib"] = peak_rss_mib()   # of this process (tensor parallel: of rank 0)
    if overhead and n_gen > 0 and model._step.native is not None:
        res["tg_overhead_ms_per_token"] = 1e3 * step_overhead(model, n_gen, reps)
        res["tg_profile_us"] = native_profile(model, n_gen, reps)
    return res


def _threads() -> int:
    from .._ext import num_threads

    return num_threads()


def main(args) -> int:
    from ._common import load_model

    if args.max_seq_len is None:
        args.max_seq_len = max(args.n_prompt, args.n_gen) + 1
    model = load_model(args)
    if args.per_gemv and model._step.native is not None:
        model._step.native.set_one_region(False)
    res = bench_model(model, args.n_prompt, args.n_gen, args.repetitions, overhead=args.overhead)
    res["tp"] = 1 if model.tp is None else model.tp.size   # weights/token below: this rank's share
    if args.roofline:
        from .._ext import _C

        # 256 MiB: well past the L3, like the 96 MB of weights a SmolLM2 token streams
        res["roofline_GB_s"] = _C.bandwidth_probe(256 << 20, res["threads"], 3)
    if args.json:
        print(json.dumps(res))
        return 0
    tp = f"  tp: {res['tp']}" if res["tp"] > 1 else ""
    print(f"model: {res['model']}  threads: {res['threads']}{tp}  weights/token: "
          f"{res['weight_bytes_per_token'] / 1e6:.1f} MB  token step: {res['step']}")
    if "pp_tok_s" in res:
        print(f"pp{args.n_prompt}: {res['pp_tok_s']:8.1f} ± {res['pp_tok_s_std']:.1f} tok/s")
    if "tg_tok_s" in res:
        print(f"tg{args.n_gen}: {res['tg_tok_s']:8.1f} ± {res['tg_tok_s_std']:.1f} tok/s  "
              f"({res['tg_ms_per_token']:.2f} ms/token, {res['tg_weight_GB_s']:.1f} GB/s of weights; "
              f"CPU {res['tg_cpu_ms_per_token']:.2f} ms/token over all threads)")
    if "roofline_GB_s" in res and "tg_weight_GB_s" in res:
        print(f"DRAM read roofline: {res['roofline_GB_s']:.1f} GB/s -> generation at "
              f"{res['tg_weight_GB_s'] / res['roofline_GB_s']:.0%} of it")
    if "tg_overhead_ms_per_token" in res:
        ovh = res["tg_overhead_ms_per_token"]
        print(f"step overhead outside the matmuls: {ovh:.2f} ms/token "
              f"({ovh / res['tg_ms_per_token']:.0%} of a step)")
    if "tg_profile_us" in res:
        prof = res["tg_profile_us"]
        total = sum(prof.values())
        print("token step profile (us/token): " + ", ".join(
            f"{k} {v:.0f} ({v / total:.0%})" for k, v in sorted(prof.items(), key=lambda kv: -kv[1])))
    sys.stdout.flush()
    return 0
