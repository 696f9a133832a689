"""`pyquant estimate MODEL | --params 70B --arch llama [--ctx 8192] [--device cpu|cuda|cpu:64GB]`:
for each GGUF mixture, AWQ int4 and EXL2 bit rate, the weight and KV-cache bytes, whether it fits,
and the generation speed this machine's kernels predict (pyquant/runtime/estimate.py)."""
from __future__ import annotations

import json

from ._common import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("estimate", help="memory and speed of a model in every format, and what fits")
    p.add_argument("model", nargs="?", default=None, help="GGUF file, model directory or alias")
    p.add_argument("--params", default=None, help="a common model size instead of a file: 8B, 70B, 7B, 32B, ...")
    p.add_argument("--arch", default="llama", help="with --params: llama, qwen2, mistral, gemma3")
    p.add_argument("--ctx", type=positive_int, default=None, help="context for the KV cache (default: the model's, "
                                                                   "at most 8192)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or a budget: cpu:64GB, cuda:24GB")
    p.add_argument("--gpu", default=None, help="with --device cuda:SIZE: the card, for its bandwidth (h100, a100, "
                                               "4090, ...; default: the GPU torch sees)")
    p.add_argument("--no-speed", action="store_true", help="skip the kernel speed probe (~3 s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import PyquantError
    from ..hub import resolve
    from ..runtime.estimate import as_dicts, estimate, recommend, shape_of

    if (args.model is None) == (args.params is None):
        raise PyquantError("estimate: give a MODEL or --params SIZE (with --arch)")
    shape, real = shape_of(resolve(args.model) if args.model else None, args.params, args.arch)
    ctx = args.ctx or min(shape.context, 8192)
    rows, info = estimate(shape, ctx, args.device, real, measure_speed=not args.no_speed, gpu=args.gpu)
    best, why = recommend(rows)
    if args.json:
        print(json.dumps({"shape": shape.__dict__, "ctx": ctx, **info, "formats": as_dicts(rows),
                          "recommended": best, "why": why}, indent=1))
        return 0
    gib = 2**30
    print(f"{shape.arch}: {info['parameters'] / 1e9:.2f} B parameters, {shape.n_layer} layers, context {ctx} "
          f"(KV cache {info['kv_bytes'] / gib:.2f} GiB); {info['device']} memory available "
          f"{info['available_bytes'] / gib:.1f} GiB")
    print(f"{'format':<10} {'bpw':>6} {'weights GiB':>12} {'total GiB':>10} {'fits':>5} {'tok/s':>8}")
    for r in rows:
        speed = f"{r.tok_s:8.1f}" if r.tok_s else f"{'-':>8}"
        print(f"{r.format:<10} {r.bits_per_weight:>6.2f} {r.weight_bytes / gib:>12.2f} {r.total_bytes / gib:>10.2f} "
              f"{'yes' if r.fits else 'no':>5} {speed}")
    if info["speeds_GB_s"]:
        print("kernel speeds measured here (GB/s at M = 1): " +
              ", ".join(f"{k} {v:.1f}" for k, v in info["speeds_GB_s"].items()))
    if info["gpu"]:
        g = info["gpu"]
        print(f"tok/s on {g['card']}: {g['GB_s']:.0f} GB/s datasheet bandwidth at {g['efficiency']:.0%}")
    print(f"recommended: {why}")
    return 0
