"""What a path holds, in words: a user's most common mistake is handing one format's files to
another's loader, so every "not an X" error names what the path really is."""
from __future__ import annotations

import json
from pathlib import Path


def _quant_config(d: Path) -> dict:
    for name, key in (("config.json", "quantization_config"), ("quant_config.json", None),
                      ("quantize_config.json", None)):
        try:
            with open(d / name, encoding="utf-8") as f:
                v = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(v, dict):
            v = v.get(key) if key else v
            if isinstance(v, dict):
                return v
    return {}


def _tensor_names(d: Path) -> set[str]:
    from safetensors import safe_open

    names: set[str] = set()
    for f in sorted(d.glob("*.safetensors"))[:2]:
        try:
            with safe_open(str(f), framework="pt") as h:
                names |= set(h.keys())
        except Exception:
            continue
    return names


def kind(path, tensor_names=None) -> str:
    """One of: gguf, awq, compressed-tensors, gptq, exl2, bitsandbytes, float, pickled, unknown,
    missing. tensor_names: the directory's tensor names when the caller has already read the headers
    (else the first two shards' headers are read here)."""
    p = Path(path)
    if not p.exists():
        return "missing"
    if p.is_file():
        with open(p, "rb") as f:
            return "gguf" if f.read(4) == b"GGUF" else "unknown"
    q = _quant_config(p)
    method = str(q.get("quant_method", "")).lower()
    if method in ("awq", "gptq", "exl2", "bitsandbytes", "compressed-tensors"):
        return method
    if "w_bit" in q or "q_group_size" in q:
        return "awq"
    if "desc_act" in q or "damp_percent" in q:
        return "gptq"
    names = _tensor_names(p) if tensor_names is None else set(tensor_names)
    suffixes = {n.rsplit(".", 1)[-1] for n in names}
    if {"q_weight", "q_groups"} <= suffixes:
        return "exl2"
    if "g_idx" in suffixes:
        return "gptq"
    if {"qweight", "qzeros", "scales"} <= suffixes or "scaled_zeros" in suffixes:
        return "awq"
    if "weight_packed" in suffixes:
        return "compressed-tensors"
    if any(s in suffixes for s in ("SCB", "absmax", "quant_map")) or any("quant_state" in n for n in names):
        return "bitsandbytes"
    if names:
        return "float"
    if any(next(p.glob(pat), None) is not None for pat in ("*.bin", "*.pt", "*.pth")):
        return "pickled"
    return "unknown"


_WORDS = {
    "gguf": "a GGUF file (load it with pyquant.load(path) / pyquant run FILE)",
    "awq": "an AWQ checkpoint directory",
    "compressed-tensors": "a compressed-tensors (llm-compressor) checkpoint directory",
    "gptq": "a GPTQ checkpoint directory (qweight/qzeros/scales with g_idx: GPTQ packs along K, not AWQ); "
            "pyquant does not read GPTQ: quantize the float model with `pyquant awq` or `pyquant exl2`",
    "exl2": "an EXL2 (ExLlamaV2) checkpoint directory (q_weight / q_groups tensors)",
    "bitsandbytes": "a bitsandbytes checkpoint directory (quantized for bitsandbytes' own kernels); quantize "
                    "the float model with `pyquant awq` or `pyquant exl2` instead",
    "float": "an unquantized float checkpoint directory (quantize it: pyquant awq DIR OUT_DIR)",
    "pickled": "a pickled (.bin / .pt) checkpoint: pyquant reads safetensors only (transformers' "
               "save_pretrained(safe_serialization=True) converts it)",
    "unknown": "neither a GGUF file nor a model directory pyquant recognizes",
    "missing": "a path that does not exist",
}


def describe(path) -> str:
    return _WORDS[kind(path)]
