"""`pyquant info DIR`: what a model directory holds (format, quantization, modules, size, bits per
weight), read from config files and safetensors headers only (no tensor data is touched)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from ...errors import FormatError
from ..detect import describe, kind
from .checkpoint import SafetensorsDir, read_json

_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
          "F8_E4M3": 1, "F8_E5M2": 1}
# per-Linear tensors of each quantized layout (their sum is the layer's storage)
_QUANT_SUFFIXES = {"qweight", "qzeros", "scales", "scaled_zeros", "weight_packed", "weight_scale",
                   "weight_zero_point", "weight_shape", "g_idx", "q_weight", "q_invperm", "q_perm", "q_scale",
                   "q_scale_max", "q_groups"}
_PRIMARY = {"qweight", "weight_packed", "q_weight"}


def summarize_directory(path) -> dict:
    d = Path(path)
    fmt = kind(d)
    if fmt in ("gguf", "missing", "unknown", "pickled"):
        raise FormatError(d, f"not a model directory pyquant reads: this is {describe(d)}")
    config = read_json(d / "config.json", "config.json") if (d / "config.json").is_file() else {}
    st = SafetensorsDir(d)
    quant = None
    if fmt in ("awq", "compressed-tensors"):
        from ..awq.config import read_awq_config

        quant = read_awq_config(d, config)
    modules: dict[str, dict] = defaultdict(lambda: {"bytes": 0, "params": 0, "quantized": False})
    total_bytes = 0
    for name in st.keys():
        dtype, shape = st.info(name)
        nbytes = math.prod(shape) * _BYTES.get(dtype, 4)
        total_bytes += nbytes
        module, _, suffix = name.rpartition(".")
        if suffix in _QUANT_SUFFIXES:
            m = modules[module]
            m["bytes"] += nbytes
            if suffix in _PRIMARY:
                m["quantized"] = True
                m["shape"] = shape
        elif suffix == "weight" and len(shape) == 2:
            m = modules[module]
            m["bytes"] += nbytes
            m["params"] = math.prod(shape)
            m["dtype"] = dtype
    h = config.get("hidden_size")
    inter = config.get("intermediate_size")
    heads = config.get("num_attention_heads") or 1
    hd = config.get("head_dim") or (h // heads if h else None)
    kv = config.get("num_key_value_heads") or heads
    # a quantized Linear's [out, in] from the config, by its role's name
    dims = {"q_proj": (heads * (hd or 0), h), "k_proj": (kv * (hd or 0), h), "v_proj": (kv * (hd or 0), h),
            "o_proj": (h, heads * (hd or 0)), "gate_proj": (inter, h), "up_proj": (inter, h),
            "down_proj": (h, inter)}
    q_params = q_bytes = 0
    quantized, float_modules = [], []
    for name, m in sorted(modules.items()):
        if m["quantized"]:
            n, k = dims.get(name.rsplit(".", 1)[-1], (None, None))
            if n and k:
                m["params"] = n * k
            quantized.append(name)
            q_params += m["params"]
            q_bytes += m["bytes"]
        else:
            float_modules.append(f"{name} ({m.get('dtype', '?')})")
    all_params = sum(m["params"] for m in modules.values())
    exl2 = _exl2_layers(d, st, quantized, dims) if fmt == "exl2" else None
    if fmt == "exl2":
        qc = config.get("quantization_config") or {}
        quant_text = (f"exl2, target {qc.get('bits', '?')} bpw, head {qc.get('head_bits', '?')} bits"
                      if qc.get("quant_method") == "exl2" else "exl2 (no quantization_config: an older repo)")
    else:
        quant_text = quant.describe() if quant else None
    return {
        "directory": str(d), "format": fmt, "architecture": config.get("model_type"),
        "quantization": quant_text, "exl2_layers": exl2,
        "layers": config.get("num_hidden_layers"), "hidden_size": h, "vocab_size": config.get("vocab_size"),
        "files": sorted({st.file_of(n).name for n in st.keys()}), "size_bytes": st.nbytes,
        "quantized_modules": len(quantized), "unquantized_matrices": float_modules,
        "quantized_bits_per_weight": 8.0 * q_bytes / q_params if q_params else None,
        "bits_per_weight": 8.0 * total_bytes / all_params if all_params else None,
        "quantized_examples": quantized[:3],
    }


def _exl2_layers(d, st, quantized, dims) -> list[dict]:
    """Per decoder layer (and the head): EXL2 bits per weight, the bits a weight the CPU kernels read in
    the layout PYQUANT_EXL2_LAYOUT picks (reader.read_bits), and the bit widths used, from q_groups."""
    from ..exl2 import layouts, reader

    per: dict = {}
    for name in quantized:
        if f"{name}.q_groups" not in st:
            continue
        n, k = dims.get(name.rsplit(".", 1)[-1], (None, None))
        if name == "lm_head" or not n:
            qw_shape = st.info(f"{name}.q_weight")[1]
            inv_shape = st.info(f"{name}.q_invperm")[1]
            k, n = inv_shape[0], qw_shape[1]   # padded N: close enough for the head's summary
        groups = layouts.parse_groups(d, name, st.get(f"{name}.q_groups"), k, st.info(f"{name}.q_weight")[1][0])
        key = "head" if name == "lm_head" else name.split(".")[2] if name.startswith("model.layers.") else name
        e = per.setdefault(key, {"bits": 0.0, "read": 0.0, "weights": 0, "widths": set()})
        e["bits"] += layouts.bits_per_weight(groups, n, k) * n * k
        e["read"] += reader.read_bits(groups) * n * k
        e["weights"] += n * k
        e["widths"] |= {g.bits for g in groups}
    return [{"layer": key, "bits_per_weight": round(e["bits"] / e["weights"], 3),
             "read_bits_per_weight": round(e["read"] / e["weights"], 3),
             "widths": sorted(e["widths"], reverse=True)} for key, e in per.items()]


def format_directory(s: dict) -> str:
    out = [f"directory {s['directory']}",
           f"          {s['size_bytes'] / 2**20:.1f} MiB in {len(s['files'])} safetensors file(s)",
           f"format    {s['format']}" + (f": {s['quantization']}" if s["quantization"] else ""),
           f"model     {s['architecture']}: {s['layers']} layers, hidden {s['hidden_size']}, "
           f"vocab {s['vocab_size']}"]
    if s["quantized_modules"]:
        bpw = s["quantized_bits_per_weight"]
        out.append(f"quantized {s['quantized_modules']} linears" + (f", {bpw:.3f} bits/weight" if bpw else "")
                   + f" (e.g. {', '.join(s['quantized_examples'])})")
    if s["unquantized_matrices"]:
        fl = s["unquantized_matrices"]
        more = f", ... ({len(fl)} in all)" if len(fl) > 4 else ""
        out.append(f"float     {', '.join(fl[:4])}{more}")
    if s.get("exl2_layers"):
        from ..exl2.reader import layout_choice

        out.append(f"layer     bits/weight  read ({layout_choice()} layout)  widths")
        for e in s["exl2_layers"]:
            out.append(f"  {e['layer']:<7} {e['bits_per_weight']:>10.3f}  {e['read_bits_per_weight']:>19.3f}  "
                       f"{'/'.join(map(str, e['widths']))}")
    if s["bits_per_weight"]:
        out.append(f"total     {s['bits_per_weight']:.3f} bits/weight over every matrix")
    return "\n".join(out)
