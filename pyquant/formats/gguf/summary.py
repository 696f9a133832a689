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


def _per_layer(value, n_layers: int) -> list[int]:
    """head counts are a scalar, or (in some architectures, e.g. OpenELM) one value per layer."""
    if value is None:
        return []
    if isinstance(value, (list, np.ndarray)):
        return [int(v) for v in value]
    return [int(value)] * n_layers


def model_info(r: GGUFReader) -> dict:
    """Key architecture metadata (None where the file does not say)."""
    g = r.arch_get
    n_layers = g("block_count")
    heads = _per_layer(g("attention.head_count"), n_layers or 0)
    kv_heads = _per_layer(g("attention.head_count_kv"), n_layers or 0) or heads
    emb = g("embedding_length")
    head_dim = g("attention.key_length") or (emb // heads[0] if emb and heads and heads[0] else None)
    tokens = r.get("tokenizer.ggml.tokens")
    ftype = r.get("general.file_type")
    return {
        "architecture": r.architecture,
        "name": r.get("general.name"),
        "context_length": g("context_length"),
        "embedding_length": emb,
        "feed_forward_length": g("feed_forward_length"),
        "block_count": n_layers,
        "head_count": max(heads) if heads else None,
        "head_count_kv": max(kv_heads) if kv_heads else None,
        "head_dim": head_dim,
        "vocab_size": g("vocab_size") or (len(tokens) if tokens is not None else None),
        "rope_freq_base": g("rope.freq_base"),
        "rope_dimension_count": g("rope.dimension_count"),
        "rms_norm_eps": g("attention.layer_norm_rms_epsilon"),
        "tokenizer": r.get("tokenizer.ggml.model"),
        "file_type": None if ftype is None else FILE_TYPES.get(int(ftype), f"unknown ({ftype})"),
        "quantization_version": r.get("general.quantization_version"),
        "_kv_heads_per_layer": kv_heads,
    }


def kv_cache_bytes(r: GGUFReader, info: dict, n_ctx: int) -> int | None:
    """K and V caches for n_ctx tokens: n_ctx * sum over layers (kv_heads * (k_dim + v_dim)) * 2."""
    kv = info["_kv_heads_per_layer"]
    k_dim = info["head_dim"]
    v_dim = r.arch_get("attention.value_length") or k_dim
    if not kv or not k_dim:
        return None
    return n_ctx * sum(kv) * (k_dim + v_dim) * KV_CACHE_BYTES_PER_ELEMENT


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
    info.pop("_kv_heads_per_layer")
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
