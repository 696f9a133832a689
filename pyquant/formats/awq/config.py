"""Which AWQ-family checkpoint a directory holds, read from its config files (never from names).

- AutoAWQ >= 0.2 / transformers: config.json `quantization_config` {quant_method: awq, bits, group_size,
  zero_point, version: gemm | gemv | gemv_fast | marlin (any case), modules_to_not_convert};
- older AutoAWQ / TheBloke repos: `quant_config.json` or `quantize_config.json` beside it, keys
  `w_bit` / `q_group_size` (or bits / group_size), version upper-case or absent (= gemm);
- llm-compressor W4A16: `quant_method: compressed-tensors`, `format: pack-quantized`, one config group
  of 4-bit int weights, strategy group or channel, symmetric or not, `ignore` list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import FormatError
from ..hf.checkpoint import read_json

VERSIONS = ("gemm", "gemv", "gemv_fast", "marlin")


@dataclass(frozen=True)
class AWQConfig:
    method: str                 # "awq" (AutoAWQ / llm-awq layouts) or "compressed-tensors"
    version: str                # gemm | gemv | gemv_fast | marlin | pack-quantized
    bits: int
    group_size: int             # -1: one group per row
    zero_point: bool
    not_converted: tuple = field(default_factory=tuple)   # module-name substrings left in float

    def skips(self, module: str) -> bool:
        """True when `module` (e.g. 'model.layers.0.mlp.gate') stays unquantized."""
        return any(s and s in module for s in self.not_converted)

    def describe(self) -> str:
        g = "per row" if self.group_size == -1 else f"group {self.group_size}"
        zp = "zero point" if self.zero_point else "symmetric"
        return f"{self.method} {self.version}, {self.bits}-bit, {g}, {zp}"


def _int(path, q: dict, keys, what: str, default=None) -> int:
    for key in keys:
        if key in q:
            v = q[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise FormatError(path, f"quantization config '{key}' = {v!r} is not an integer")
            return v
    if default is None:
        raise FormatError(path, f"quantization config has no {what} ({' / '.join(keys)})")
    return default


def _awq(path, q: dict) -> AWQConfig:
    bits = _int(path, q, ("bits", "w_bit"), "bit width")
    gs = _int(path, q, ("group_size", "q_group_size"), "group size")
    version = str(q.get("version") or "gemm").lower()
    if version not in VERSIONS:
        raise FormatError(path, f"AWQ version {q.get('version')!r} is unknown (known: {', '.join(VERSIONS)})")
    if version == "marlin":
        raise FormatError(path, "AWQ version 'marlin' (AutoAWQ's Marlin tile layout, no zero points) is not "
                                "supported: re-export the model with version gemm")
    if bits != 4:
        raise FormatError(path, f"AWQ bits = {bits}: only 4-bit AWQ checkpoints exist for these layouts")
    if gs != -1 and (gs <= 0 or gs % 32):
        raise FormatError(path, f"AWQ group_size = {gs}: must be -1 or a positive multiple of 32")
    zp = q.get("zero_point", True)
    if zp is not True:
        raise FormatError(path, f"AWQ zero_point = {zp!r}: the {version} layout always has zero points")
    skip = q.get("modules_to_not_convert") or ()
    if not isinstance(skip, (list, tuple)) or not all(isinstance(s, str) for s in skip):
        raise FormatError(path, f"'modules_to_not_convert' must be a list of strings, got {skip!r}")
    return AWQConfig("awq", version, bits, gs, True, tuple(skip))


def _compressed(path, q: dict) -> AWQConfig:
    fmt = q.get("format")
    groups = q.get("config_groups")
    if not isinstance(groups, dict) or len(groups) != 1:
        raise FormatError(path, "compressed-tensors: exactly one entry in 'config_groups' is supported")
    group = next(iter(groups.values()))
    w = group.get("weights") if isinstance(group, dict) else None
    if not isinstance(w, dict):
        raise FormatError(path, "compressed-tensors: the config group has no 'weights' scheme")
    fmt = group.get("format") or fmt
    if fmt != "pack-quantized":
        raise FormatError(path, f"compressed-tensors format {fmt!r}: only 'pack-quantized' (W4A16) is supported")
    if group.get("input_activations"):
        raise FormatError(path, "compressed-tensors: quantized activations (W4A4 / W8A8) are not supported")
    bits = _int(path, w, ("num_bits",), "num_bits")
    if bits != 4 or w.get("type", "int") != "int":
        raise FormatError(path, f"compressed-tensors: {bits}-bit {w.get('type')!r} weights (only 4-bit int)")
    strategy = w.get("strategy")
    if strategy == "group":
        gs = _int(path, w, ("group_size",), "group_size")
        if gs <= 0 or gs % 32:
            raise FormatError(path, f"compressed-tensors group_size = {gs}: must be a positive multiple of 32")
    elif strategy == "channel":
        gs = -1
    else:
        raise FormatError(path, f"compressed-tensors strategy {strategy!r}: only 'group' and 'channel'")
    if w.get("actorder") not in (None, False, "static"):
        raise FormatError(path, f"compressed-tensors actorder {w.get('actorder')!r} (g_idx) is not supported")
    ignore = q.get("ignore") or ()
    return AWQConfig("compressed-tensors", "pack-quantized", 4, gs, not w.get("symmetric", True),
                     tuple(s for s in ignore if isinstance(s, str)))


def read_awq_config(directory, config: dict) -> AWQConfig:
    """AWQConfig of a directory whose config.json is `config`; FormatError when it is not AWQ."""
    d = Path(directory)
    q = config.get("quantization_config")
    if isinstance(q, dict):
        method = str(q.get("quant_method", "")).lower()
        if method == "awq":
            return _awq(d / "config.json", q)
        if method == "compressed-tensors":
            return _compressed(d / "config.json", q)
    for name in ("quant_config.json", "quantize_config.json"):
        legacy = d / name
        if legacy.exists():
            q = read_json(legacy, name)
            if "w_bit" in q or "q_group_size" in q or str(q.get("quant_method", "awq")).lower() == "awq" \
                    and "desc_act" not in q:
                return _awq(legacy, q)
    from ..detect import describe

    raise FormatError(d, f"not an AWQ checkpoint: this is {describe(d)}")
