"""config.json of a Hugging Face model -> the GGUF-style hyper-parameters pyquant's models read.

The model code reads one vocabulary of hyper-parameters and tensor names, GGUF's (`{arch}.*` keys,
`blk.N.attn_q.weight`); a directory checkpoint is translated into it here, in one place, so the
architecture files, the config validation (models/config.py) and the C++ step never learn a second one.
"""
from __future__ import annotations

import math

from ...errors import FormatError

# config.json model_type -> the architecture name pyquant registers it under
MODEL_TYPES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}

# GGUF tensor name (per block: "blk.N." prefix) -> Hugging Face name, for the families above
_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
          "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
          "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
          "ffn_down": "mlp.down_proj"}


def hf_module(gguf_name: str) -> tuple[str, str] | None:
    """'blk.3.attn_q.weight' -> ('model.layers.3.self_attn.q_proj', 'weight'); None if unknown."""
    base, _, suffix = gguf_name.rpartition(".")
    if base in _GLOBAL:
        return _GLOBAL[base], suffix
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _BLOCK:
        return f"model.layers.{parts[1]}.{_BLOCK[parts[2]]}", suffix
    return None


def architecture(config: dict, path) -> str:
    mt = config.get("model_type")
    if mt not in MODEL_TYPES:
        raise FormatError(path, f"model_type {mt!r} is not supported for directory checkpoints "
                                f"(supported: {', '.join(sorted(MODEL_TYPES))})")
    return MODEL_TYPES[mt]


def gguf_metadata(config: dict, path) -> dict:
    """The `{arch}.*` metadata a GGUF converter would have written for this config.json."""
    arch = architecture(config, path)
    if "text_config" in config:
        raise FormatError(path, "multimodal config (text_config): not supported")

    def need(key):
        if config.get(key) is None:
            raise FormatError(path, f"config.json has no '{key}'")
        return config[key]

    rope = dict(config.get("rope_parameters") or {})          # transformers >= 5
    scaling = config.get("rope_scaling") or {}
    if scaling:
        rope.update(scaling)
    md = {
        "general.architecture": arch,
        f"{arch}.embedding_length": need("hidden_size"),
        f"{arch}.attention.head_count": need("num_attention_heads"),
        f"{arch}.attention.head_count_kv": config.get("num_key_value_heads") or need("num_attention_heads"),
        f"{arch}.block_count": need("num_hidden_layers"),
        f"{arch}.feed_forward_length": need("intermediate_size"),
        f"{arch}.context_length": config.get("max_position_embeddings") or 4096,
        f"{arch}.attention.layer_norm_rms_epsilon": config.get("rms_norm_eps", 1e-6),
        f"{arch}.rope.freq_base": rope.get("rope_theta", config.get("rope_theta", 10000.0)),
        f"{arch}.vocab_size": need("vocab_size"),
    }
    if config.get("head_dim"):
        md[f"{arch}.attention.key_length"] = config["head_dim"]
    rtype = rope.get("rope_type", rope.get("type", "default"))
    if rtype == "linear":
        md[f"{arch}.rope.scaling.type"] = "linear"
        md[f"{arch}.rope.scaling.factor"] = rope.get("factor", 1.0)
    elif rtype not in ("default", "llama3", None):
        raise FormatError(path, f"config.json rope scaling type {rtype!r} is not supported (linear, llama3)")
    if config.get("hidden_act", "silu") != "silu":
        raise FormatError(path, f"config.json hidden_act {config.get('hidden_act')!r}: this family uses silu")
    if config.get("attention_bias") and arch == "llama":
        pass   # biases are picked up from the tensors when present
    window = config.get("sliding_window")
    if arch in ("qwen2", "qwen3") and not config.get("use_sliding_window", False):
        window = None
    elif arch in ("qwen2", "qwen3") and window:
        raise FormatError(path, "qwen use_sliding_window = true (per-layer windows) is not supported")
    if window:
        md[f"{arch}.attention.sliding_window"] = window
    return md


def llama3_rope_factors(config: dict, head_dim: int) -> list[float] | None:
    """Llama 3.1's per-frequency RoPE divisors (what llama.cpp's converter stores as rope_freqs)."""
    rope = dict(config.get("rope_parameters") or {})
    rope.update(config.get("rope_scaling") or {})
    if rope.get("rope_type", rope.get("type")) != "llama3":
        return None
    base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old = float(rope.get("original_max_position_embeddings", 8192))
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * base ** (i / head_dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out
