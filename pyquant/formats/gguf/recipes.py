"""llama.cpp's per-tensor quantization mixtures ("Q4_K_M" & co.), restated from src/llama-quant.cpp
(llama_ftype_get_default_type, tensor_allows_quantization, tensor_get_category,
llama_tensor_get_type_impl, tensor_type_fallback) at ggml-org/llama.cpp 0c1e570.

A mixture name (the file type, `general.file_type`) is not one tensor type: llama.cpp bumps the
sensitive tensors (attn_v, ffn_down on a layer pattern, the output / tied embedding) to more bits
and falls back to 32-element types when a row length is not a multiple of 256. Only what applies
without an importance matrix is implemented; the i-quant mixtures that need one are refused.

    plan = plan_tensors(tensors, "Q4_K_M", arch="llama", n_layer=30, n_head=9, n_head_kv=3)
    # -> {name: QType} in llama.cpp's processing order (by layer, then name)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import UnsupportedQTypeError
from ...qtypes import REGISTRY, QType

# llama_ftype values (include/llama.h) written to general.file_type
FTYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
    "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17,
    "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30, "BF16": 32,
}
FTYPE_ALIASES = {"Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "Q3_K": "Q3_K_M"}  # as llama-quantize accepts

_DEFAULT_TYPE = {
    "F32": QType.F32, "F16": QType.F16, "BF16": QType.BF16, "Q4_0": QType.Q4_0, "Q4_1": QType.Q4_1,
    "Q5_0": QType.Q5_0, "Q5_1": QType.Q5_1, "Q8_0": QType.Q8_0, "Q2_K": QType.Q2_K, "Q3_K_S": QType.Q3_K,
    "Q3_K_M": QType.Q3_K, "Q3_K_L": QType.Q3_K, "Q4_K_S": QType.Q4_K, "Q4_K_M": QType.Q4_K,
    "Q5_K_S": QType.Q5_K, "Q5_K_M": QType.Q5_K, "Q6_K": QType.Q6_K, "IQ4_NL": QType.IQ4_NL,
    "IQ4_XS": QType.IQ4_XS,
}
GGML_QNT_VERSION = 2  # general.quantization_version written by llama.cpp

# Where a 256-block type goes when ne0 % 256 != 0 (tensor_type_fallback).
_FALLBACK = {QType.Q2_K: QType.Q4_0, QType.Q3_K: QType.Q4_0, QType.Q4_K: QType.Q5_0,
             QType.Q5_K: QType.Q5_1, QType.Q6_K: QType.Q8_0, QType.IQ4_XS: QType.IQ4_NL}

# Substrings of tensor names llama.cpp never quantizes (tensor_allows_quantization), besides
# norms, 1-D tensors and names not ending in "weight".
_NEVER_QUANTIZED = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
    "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
    ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)
_NEVER_QUANTIZED_EXACT = ("position_embd.weight", "token_types.weight")


@dataclass
class ModelInfo:
    arch: str = "llama"
    n_layer: int = 0
    n_head: int = 1
    n_head_kv: int = 1
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @classmethod
    def from_metadata(cls, md: dict) -> "ModelInfo":
        arch = str(md.get("general.architecture", "llama"))

        def first(key, default):
            v = md.get(f"{arch}.{key}", default)
            if hasattr(v, "__len__") and not isinstance(v, str):  # per-layer arrays: llama.cpp uses layer 0
                v = v[0] if len(v) else default
            return int(v)

        n_head = first("attention.head_count", 1)
        return cls(arch=arch, n_layer=first("block_count", 0), n_head=n_head,
                   n_head_kv=first("attention.head_count_kv", n_head), n_expert=first("expert_count", 0))


def resolve_ftype(name: str) -> str:
    key = name.strip().upper()
    key = FTYPE_ALIASES.get(key, key)
    if key not in FTYPES:
        raise UnsupportedQTypeError(
            f"unknown or unsupported file type {name!r}; supported: {', '.join(FTYPES)} "
            "(i-quant mixtures below 4 bits need an importance matrix)")
    return key


def processing_order(names) -> list[str]:
    """llama.cpp's weights_map order: by block number (non-block tensors first), then by name."""
    def key(n):
        m = re.match(r"blk\.(\d+)\.", n)
        return (int(m.group(1)) if m else -1, n)
    return sorted(names, key=key)


def tensor_category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for sub, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                     ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                     ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                     ("ffn_down", "ffn_down")):
        if sub in name:
            return cat
    return "other"


def allows_quantization(name: str, n_dims: int) -> bool:
    if n_dims < 2 or not name.endswith("weight"):
        return False
    if name in _NEVER_QUANTIZED_EXACT:
        return False
    return not any(s in name for s in _NEVER_QUANTIZED)


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


class _Planner:
    """llama_tensor_get_type_impl with its running counters (quantize_state_impl)."""

    def __init__(self, ftype: str, model: ModelInfo, names):
        self.ftype, self.m = ftype, model
        cats = [tensor_category(n) for n in names]
        self.n_attention_wv = sum(c in ("attn_v", "attn_qkv", "attn_kv_b") for c in cats)
        self.has_tied_embeddings = "output" not in cats
        self.n_ffn = model.n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0

    def _layer(self, counter: int, name: str) -> int:
        if max(1, self.m.n_expert) > 1:  # experts are not consecutive: take the layer from the name
            m = re.match(r"blk\.(\d+)\.", name)
            if not m:
                raise UnsupportedQTypeError(f"cannot determine the layer of tensor {name!r}")
            return int(m.group(1))
        return counter

    def mixture_type(self, name: str, ne0: int, new: QType) -> QType:
        f, m, cat = self.ftype, self.m, tensor_category(name)
        falcon = m.arch == "falcon"
        if cat == "output" or (self.has_tied_embeddings and cat == "token_embd"):
            if falcon or ne0 % REGISTRY[new].block_size:
                return QType.Q8_0
            return new if new == QType.Q8_0 else QType.Q6_K
        if cat == "token_embd":
            return new
        if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
            if f == "Q2_K":
                new = QType.Q4_K if m.n_gqa >= 4 else QType.Q3_K
            elif f == "Q3_K_M":
                new = QType.Q5_K if self.i_attention_wv < 2 else QType.Q4_K
            elif f == "Q3_K_L":
                new = QType.Q5_K
            elif f in ("IQ4_NL", "IQ4_XS") and m.n_gqa >= 4:
                new = QType.Q5_K
            elif f in ("Q4_K_M", "Q5_K_M") and _use_more_bits(self.i_attention_wv, self.n_attention_wv):
                new = QType.Q6_K
            elif f == "Q4_K_S" and self.i_attention_wv < 4:
                new = QType.Q5_K
            # (llama.cpp also bumps Q3_K/Q4_K to Q5_K for its "70B" model type; not detected here)
            if m.n_expert == 8:
                new = QType.Q8_0
            self.i_attention_wv += 1
        elif cat == "attn_k":
            if m.n_expert == 8:
                new = QType.Q8_0
        elif cat == "ffn_down":
            i, n = self._layer(self.i_ffn_down, name), self.n_ffn
            if f == "Q2_K":
                new = QType.Q3_K
            elif f == "Q3_K_M":
                new = (QType.Q5_K if i < n // 16 else
                       QType.Q4_K if not falcon or _use_more_bits(i, n) else QType.Q3_K)
            elif f == "Q3_K_L":
                new = QType.Q4_K if falcon else QType.Q5_K
            elif f == "Q4_K_M":
                if falcon:
                    new = (QType.Q6_K if i < n // 16 else QType.Q5_K if _use_more_bits(i, n) else QType.Q4_K)
                elif _use_more_bits(i, n):
                    new = QType.Q6_K
            elif i < n // 8 and f in ("IQ4_NL", "IQ4_XS"):  # (only without an imatrix, as here)
                new = QType.Q5_K
            elif f == "Q5_K_M" and _use_more_bits(i, n):
                new = QType.Q6_K
            elif f == "Q4_K_S" and not falcon and i < n // 8:
                new = QType.Q5_K
            self.i_ffn_down += 1
        elif cat == "attn_output":
            if not falcon:
                if m.n_expert == 8:
                    if f in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                        new = QType.Q5_K
                else:
                    if f == "Q2_K":
                        new = QType.Q3_K
                    elif f == "Q3_K_M":
                        new = QType.Q4_K
                    elif f == "Q3_K_L":
                        new = QType.Q5_K
            elif f == "Q3_K_L":
                new = QType.Q4_K
        elif cat == "ffn_gate":
            self.i_ffn_gate += 1
        elif cat == "ffn_up":
            self.i_ffn_up += 1
        return new


def fallback_type(qt: QType, ne0: int) -> QType:
    """tensor_type_fallback: a type whose block fits the row length ne0 (F16 if none does)."""
    if ne0 % REGISTRY[qt].block_size == 0:
        return qt
    new = _FALLBACK.get(qt, qt)
    return new if ne0 % REGISTRY[new].block_size == 0 else QType.F16


def plan_tensors(tensors: dict[str, tuple[int, ...]], ftype: str, model: ModelInfo, source_types=None,
                 pure: bool = False, fallbacks: dict | None = None) -> dict[str, QType]:
    """Target type of every tensor. tensors: name -> dims as stored (ne0 first), in any order.
    source_types: name -> current QType (tensors llama.cpp does not quantize keep it; default F32).
    pure: no mixture rules, only the file type's default (llama-quantize --pure).
    fallbacks: if given, filled with {name: (wanted QType, QType used)} for the tensors whose row
    length does not fit the wanted type's block (tensor_type_fallback).
    Returns {name: QType} in llama.cpp's processing order (also the order it writes tensors)."""
    ftype = resolve_ftype(ftype)
    default = _DEFAULT_TYPE[ftype]
    names = processing_order(tensors)
    planner = _Planner(ftype, model, names)
    quantized_default = REGISTRY[default].block_size > 1
    plan = {}
    for name in names:
        dims = tensors[name]
        src = (source_types or {}).get(name, QType.F32)
        if not allows_quantization(name, len(dims)):
            plan[name] = src
            continue
        new = default
        if quantized_default:
            if not pure:
                new = planner.mixture_type(name, dims[0], new)
            wanted, new = new, fallback_type(new, dims[0])
            if fallbacks is not None and new != wanted:
                fallbacks[name] = (wanted, new)
        plan[name] = new
    return plan
