"""`pyquant quantize IN.gguf OUT.gguf TYPE`: what `llama-quantize IN OUT TYPE` writes, in Python.

TYPE is a llama.cpp file type (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, Q4_K_S, ...; see
pyquant/formats/gguf/recipes.py): the per-tensor mixture, the shape fallbacks, the tensor order and
the metadata (general.file_type, general.quantization_version) follow llama.cpp, and every
quantized tensor's bytes are what llama.cpp computes from the same float values (pyquant.quantize).
Sources may be F32/F16/BF16 or already quantized (decoded with pyquant.dequantize first, as
llama-quantize --allow-requantize does; that compounds the error of both quantizations).
"""
from __future__ import annotations

import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("quantize", help="requantize a GGUF file with llama.cpp's mixture rules")
    p.add_argument("input", help="source GGUF (F32/F16/BF16 or quantized) path or model alias")
    p.add_argument("output", help="GGUF file to write")
    p.add_argument("type", help="file type: Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, Q4_K_S, Q5_K_S, ...")
    p.add_argument("--threads", "-t", type=int, default=0, help="quantization threads (default: pyquant's)")
    p.add_argument("--pure", action="store_true", help="no mixture: every quantizable tensor gets TYPE's "
                   "default type (shape fallbacks still apply), like llama-quantize --pure")
    p.add_argument("--dry-run", action="store_true", help="print the per-tensor plan, write nothing")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..formats.gguf import GGUFReader
    from ..formats.gguf.recipes import resolve_ftype
    from ..hub import resolve
    from ..qtypes import REGISTRY

    resolve_ftype(args.type)  # a bad TYPE fails before any file is touched
    if args.threads:
        from .._ext import set_num_threads

        set_num_threads(args.threads)
    src = resolve(args.input)
    with GGUFReader(src) as reader:
        fallbacks: dict = {}
        plan = build_plan(reader, args.type, pure=args.pure, fallbacks=fallbacks)
        if args.dry_run:
            print(format_plan(reader, plan))
        if not args.quiet or args.dry_run:
            print(explain_plan(reader, plan, args.type, fallbacks), file=sys.stderr)
        if args.dry_run:
            return 0
        requant = sorted({t.qtype.name for n, t in reader.tensors.items()
                          if REGISTRY[t.qtype].block_size > 1 and plan[n] != t.qtype})
        if requant:
            print(f"note: requantizing {'/'.join(requant)} tensors: the result carries the error of both "
                  "quantizations (llama-quantize needs --allow-requantize for this)", file=sys.stderr)
        t0 = time.perf_counter()
        out_bytes = requantize(reader, args.output, args.type, plan, progress=not args.quiet)
        dt = time.perf_counter() - t0
        in_bytes = sum(t.nbytes for t in reader.tensors.values())
    counts: dict[str, int] = {}
    for qt in plan.values():
        counts[qt.name] = counts.get(qt.name, 0) + 1
    mix = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"{args.output}: {out_bytes / 2**20:.1f} MiB of tensors (from {in_bytes / 2**20:.1f} MiB) "
          f"in {dt:.1f} s; tensors: {mix}", file=sys.stderr)
    return 0


def build_plan(reader, ftype: str, pure: bool = False, fallbacks: dict | None = None):
    from ..formats.gguf.recipes import ModelInfo, plan_tensors

    model = ModelInfo.from_metadata(reader.metadata)
    tensors = {t.name: t.dims for t in reader.tensors.values()}
    types = {t.name: t.qtype for t in reader.tensors.values()}
    return plan_tensors(tensors, ftype, model, source_types=types, pure=pure, fallbacks=fallbacks)


def explain_plan(reader, plan, ftype: str, fallbacks: dict) -> str:
    """What the plan does and costs, before anything is written: the types chosen (count, share of
    the weights), the tensors that fell back to another type and why, and bits per weight of the
    source and of the result (a file can come out *larger* than a 4-bit source: SmolLM2's 576-wide
    rows fit no 256-value K-quant block, so Q4_K_M becomes mostly Q5_0)."""
    from ..qtypes import REGISTRY

    n_total = sum(t.n_elements for t in reader.tensors.values())
    src_bytes = sum(t.nbytes for t in reader.tensors.values())
    out_bytes, by_type = 0, {}
    for name, qt in plan.items():
        t, info = reader.tensors[name], REGISTRY[qt]
        nb = t.n_elements // info.block_size * info.type_size
        out_bytes += nb
        c = by_type.setdefault(qt.name, [0, 0])
        c[0], c[1] = c[0] + 1, c[1] + t.n_elements
    mix = ", ".join(f"{k} x{c[0]} ({100 * c[1] / n_total:.0f}% of weights)"
                    for k, c in sorted(by_type.items(), key=lambda kv: -kv[1][1]))
    lines = [f"{ftype}: {mix}"]
    why: dict = {}
    for name, (wanted, used) in fallbacks.items():
        key = (wanted.name, used.name, reader.tensors[name].dims[0], REGISTRY[wanted].block_size)
        why[key] = why.get(key, 0) + 1
    for (wanted, used, ne0, bs), n in sorted(why.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n} tensor(s) {wanted} -> {used}: rows of {ne0} values are not a multiple of "
                     f"{wanted}'s {bs}-value block (llama.cpp's tensor_type_fallback)")
    bpw_in, bpw_out = 8 * src_bytes / n_total, 8 * out_bytes / n_total
    verdict = "larger than" if out_bytes > src_bytes else "smaller than" if out_bytes < src_bytes else "same as"
    lines.append(f"  bits per weight: {bpw_in:.2f} -> {bpw_out:.2f} ({src_bytes / 2**20:.1f} -> "
                 f"{out_bytes / 2**20:.1f} MiB, {verdict} the source)")
    return "\n".join(lines)


def format_plan(reader, plan) -> str:
    lines = [f"{'tensor':40s} {'shape':>16s} {'from':>6s} -> to"]
    for name, qt in plan.items():
        t = reader.tensors[name]
        lines.append(f"{name:40s} {str(t.shape):>16s} {t.qtype.name:>6s} -> {qt.name}")
    return "\n".join(lines)


def tensor_floats(t):
    """float32 values of a GGUF tensor, shape [rows, ne0] (any type pyquant can dequantize)."""
    import torch

    from ..dequant import dequantize
    from ..qtypes import QType

    rows, ne0 = t.n_rows, t.dims[0]
    if t.qtype == QType.F32:
        return torch.from_numpy(t.data.view("<f4").reshape(rows, ne0).copy())
    return dequantize(t.bytes(), t.qtype, (rows, ne0), torch.float32)


def convert_tensor(t, target):
    """Bytes of tensor t in type `target` (a copy of the stored bytes when the type is unchanged,
    as llama.cpp does)."""
    import torch

    from ..qtypes import QType
    from ..quantization import quantize

    if target == t.qtype:
        return t.bytes()
    w = tensor_floats(t)
    if target == QType.F32:
        return w.contiguous().view(torch.uint8)
    if target == QType.F16:
        return w.to(torch.float16).view(torch.uint8)  # round-to-nearest-even, as ggml_fp32_to_fp16_row
    if target == QType.BF16:
        return w.to(torch.bfloat16).view(torch.uint8)
    return quantize(w, target)


def requantize(reader, out_path, ftype: str, plan, progress: bool = True) -> int:
    """Write `out_path`: reader's metadata (file type / quantization version updated in place) and
    its tensors converted per `plan` (recipes.plan_tensors order). Returns the tensor bytes written."""
    from ..formats.gguf import GGUFValueType, GGUFWriter
    from ..formats.gguf.recipes import FTYPES, GGML_QNT_VERSION, resolve_ftype
    from ..qtypes import REGISTRY

    ftype = resolve_ftype(ftype)
    updates = {"general.quantization_version": GGML_QNT_VERSION, "general.file_type": FTYPES[ftype]}
    dropped = {"split.no", "split.count", "split.tensors.count"}
    w = GGUFWriter(out_path)
    for key, field in reader.fields.items():
        if key in dropped:
            continue
        if key in updates:
            w.add_field(key, updates.pop(key), GGUFValueType.UINT32)
        else:
            w.add_field(key, field)
    for key, value in updates.items():  # llama.cpp appends them when the source lacks them
        w.add_field(key, value, GGUFValueType.UINT32)

    total = 0
    for name, target in plan.items():
        t = reader.tensors[name]
        info = REGISTRY[target]
        total += t.n_elements // info.block_size * info.type_size
        w.add_tensor(name, (lambda t=t, target=target: convert_tensor(t, target)), target, t.shape)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc="quantize", file=sys.stderr)
    try:
        w.write(progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return total
