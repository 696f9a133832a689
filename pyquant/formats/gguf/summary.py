"""What is in a GGUF file, as one JSON-able dict: key model metadata, the tensor table, bytes and
bits per weight by type, and the memory a run needs (weights + KV cache). Used by `pyquant info`."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ...qtypes import REGISTRY
from .reader import GGUFReader

# llama.cpp's llama_ftype (general.file_type): the quantization *recipe* the file was made with
FILE_TYPES = {
    0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 7: "MOSTLY_Q8_0",
    8: "MOSTLY_Q5_0", 9: "MOSTLY_Q5_1", 10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M",
    13: "MOSTLY_Q3_K_L", 14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M", 16: "MOSTLY_Q5_K_S",
    17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K", 19: "MOSTLY_IQ2_XXS", 20: "MOSTLY_IQ2_XS",
    21: "MOSTLY_Q2_K_S", 22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS", 24: "MOSTLY_IQ1_S",
    25: "MOSTLY_IQ4_NL", 26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M", 28: "MOSTLY_IQ2_S",
    29: "MOSTLY_IQ2_M", 30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M", 32: "MOSTLY_BF16",
    36: "MOSTLY_TQ1_0", 37: "MOSTLY_TQ2_0", 38: "MOSTLY_MXFP4_MOE", 39: "MOSTLY_NVFP4",
    1024: "GUESSED",
}

KV_CACHE_BYTES_PER_ELEMENT = 2   # f16 K and V, as llama.cpp allocates by default


_MAX_COUNT = 1 << 40   # larger "counts" in metadata are forged or broken: reported, never used


def _count(value, key: str, problems: list):
    """A non-negative integer metadata value, or None (with a note in `problems`) when the file has
    something else there: a string, an array, a float, a negative or absurd number."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        problems.append(f"{key}: expected an integer, found {type(value).__name__} {_brief(value)}")
        return None
    v = int(value)
    if not 0 <= v <= _MAX_COUNT:
        problems.append(f"{key}: {v} is out of range")
        return None
    return v


def _number(value, key: str, problems: list):
    """A finite float metadata value, or None (noted) for anything else."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        problems.append(f"{key}: expected a number, found {type(value).__name__} {_brief(value)}")
        return None
    v = float(value)
    if not np.isfinite(v):
        problems.append(f"{key}: {v} is not finite")
        return None
    return v


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _heads(value, key: str, n_layers, problems: list):
    """(max heads, sum of heads over the layers) from a scalar or a per-layer array (e.g. OpenELM),
    without expanding a scalar into n_layers entries (a forged block_count of 2^29 did)."""
    if value is None:
        return None, None
    if isinstance(value, (list, np.ndarray)):
        vals = [_count(v, key, problems) for v in value]
        if any(v is None for v in vals) or not vals:
            return None, None
        return max(vals), sum(vals)
    v = _count(value, key, problems)
    if v is None:
        return None, None
    return v, (v * n_layers if n_layers is not None else None)


def model_info(r: GGUFReader) -> dict:
    """Key architecture metadata (None where the file does not say, or says something unusable:
    then `problems` says what)."""
    g = r.arch_get
    problems: list = []
    n_layers = _count(g("block_count"), "block_count", problems)
    heads_max, _ = _heads(g("attention.head_count"), "attention.head_count", n_layers, problems)
    kv_max, kv_sum = _heads(g("attention.head_count_kv"), "attention.head_count_kv", n_layers, problems)
    if kv_max is None:
        kv_max, kv_sum = _heads(g("attention.head_count"), "attention.head_count", n_layers, [])
    emb = _count(g("embedding_length"), "embedding_length", problems)
    head_dim = _count(g("attention.key_length"), "attention.key_length", problems) or (
        emb // heads_max if emb and heads_max else None)
    tokens = r.get("tokenizer.ggml.tokens")
    ftype = _count(r.get("general.file_type"), "general.file_type", problems)
    name = r.get("general.name")
    tok_model = r.get("tokenizer.ggml.model")
    info = {
        "architecture": r.architecture if isinstance(r.architecture, str) else None,
        "name": name if isinstance(name, str) else None,
        "context_length": _count(g("context_length"), "context_length", problems),
        "embedding_length": emb,
        "feed_forward_length": _count(g("feed_forward_length"), "feed_forward_length", problems),
        "block_count": n_layers,
        "head_count": heads_max,
        "head_count_kv": kv_max,
        "head_dim": head_dim,
        "vocab_size": _count(g("vocab_size"), "vocab_size", problems) or (
            len(tokens) if isinstance(tokens, (list, np.ndarray)) else None),
        "rope_freq_base": _number(g("rope.freq_base"), "rope.freq_base", problems),
        "rope_dimension_count": _count(g("rope.dimension_count"), "rope.dimension_count", problems),
        "rms_norm_eps": _number(g("attention.layer_norm_rms_epsilon"), "attention.layer_norm_rms_epsilon", problems),
        "tokenizer": tok_model if isinstance(tok_model, str) else None,
        "file_type": None if ftype is None else FILE_TYPES.get(ftype, f"unknown ({ftype})"),
        "quantization_version": _count(r.get("general.quantization_version"), "general.quantization_version",
                                       problems),
        "_kv_heads_total": kv_sum,
    }
    if problems:
        info["problems"] = problems
    return info


def kv_cache_bytes(r: GGUFReader, info: dict, n_ctx: int) -> int | None:
    """K and V caches for n_ctx tokens: n_ctx * sum over layers (kv_heads * (k_dim + v_dim)) * 2."""
    kv = info["_kv_heads_total"]
    k_dim = info["head_dim"]
    v_dim = _count(r.arch_get("attention.value_length"), "attention.value_length", []) or k_dim
    if not kv or not k_dim:
        return None
    return n_ctx * kv * (k_dim + v_dim) * KV_CACHE_BYTES_PER_ELEMENT


def summarize(r: GGUFReader, ctx: int | None = None) -> dict:
    info = model_info(r)
    tensors = [{"name": t.name, "type": t.qtype.name, "shape": list(t.shape), "nbytes": t.nbytes}
               for t in r.tensors.values()]
    by_type = defaultdict(lambda: {"tensors": 0, "elements": 0, "bytes": 0})
    for t in r.tensors.values():
        b = by_type[t.qtype.name]
        b["tensors"] += 1
        b["elements"] += t.n_elements
        b["bytes"] += t.nbytes
    for name, b in by_type.items():
        b["bits_per_weight"] = 8 * b["bytes"] / b["elements"] if b["elements"] else 0.0
        b["nominal_bits_per_weight"] = REGISTRY[next(t.qtype for t in r.tensors.values()
                                                     if t.qtype.name == name)].bits_per_weight
    n_params = sum(t.n_elements for t in r.tensors.values())
    weight_bytes = sum(t.nbytes for t in r.tensors.values())
    n_ctx = ctx or info["context_length"]
    kv = kv_cache_bytes(r, info, n_ctx) if n_ctx else None
    info.pop("_kv_heads_total")
    return {
        "file": str(r.path),
        "file_size": r.file_size,
        "gguf_version": r.version,
        "alignment": r.alignment,
        "metadata_keys": len(r.fields),
        "model": info,
        "tensors": tensors,
        "by_type": dict(sorted(by_type.items(), key=lambda kv_: -kv_[1]["bytes"])),
        "totals": {"tensors": len(tensors), "parameters": n_params, "bytes": weight_bytes,
                   "bits_per_weight": 8 * weight_bytes / n_params if n_params else 0.0},
        "memory": {"weights_bytes": weight_bytes, "kv_cache_context": n_ctx,
                   "kv_cache_bytes": kv, "kv_cache_dtype": "f16",
                   "total_bytes": weight_bytes + (kv or 0)},
    }
