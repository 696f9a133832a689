"""Model hyper-parameters, read from GGUF metadata only (`{arch}.*` keys), never from names."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    norm_eps: float
    rope_base: float
    rope_dim: int            # leading dims of each head that RoPE rotates
    rope_linear_scale: float  # positions are divided by this (rope.scaling.type = linear)
    sliding_window: int = 0   # attention.sliding_window: a query sees the last W positions (0: all)
    final_logit_softcap: float = 0.0   # final_logit_softcapping: logits = c * tanh(logits / c) (0: none)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


def read_config(metadata: dict, arch: str, n_vocab: int, path=None) -> ModelConfig:
    """ModelConfig from GGUF metadata; missing or inconsistent keys raise FormatError naming them."""

    def get(key, default=None, required=True):
        v = metadata.get(f"{arch}.{key}", default)
        if v is None and required:
            raise FormatError(path, f"metadata key '{arch}.{key}' is missing")
        return v

    def positive_int(key, default=None):
        v = get(key, default)
        try:
            if hasattr(v, "__len__") and not isinstance(v, str):  # per-layer arrays (head_count_kv): uniform
                vals = {int(x) for x in v}
                if len(vals) != 1:
                    raise FormatError(path, f"'{arch}.{key}' varies per layer ({sorted(vals)}): not supported")
                v = vals.pop()
            if isinstance(v, (str, bool)) or (isinstance(v, float) and v != int(v)):
                raise TypeError
            v = int(v)
        except (TypeError, ValueError, OverflowError):
            raise FormatError(path, f"'{arch}.{key}' = {v!r} is not an integer") from None
        if v <= 0:
            raise FormatError(path, f"'{arch}.{key}' = {v} must be positive")
        return v

    if int(get("expert_count", 0, required=False) or 0) > 0:
        raise FormatError(path, f"'{arch}.expert_count' > 0: mixture-of-experts models are not supported")
    d = positive_int("embedding_length")
    n_heads = positive_int("attention.head_count")
    n_kv = positive_int("attention.head_count_kv", n_heads)
    head_dim = positive_int("attention.key_length", d // n_heads)
    if int(get("attention.value_length", head_dim, required=False)) != head_dim:
        raise FormatError(path, f"'{arch}.attention.value_length' != key_length: not supported")
    if n_heads % n_kv:
        raise FormatError(path, f"head_count {n_heads} is not a multiple of head_count_kv {n_kv}")
    rope_dim = positive_int("rope.dimension_count", head_dim)
    if rope_dim > head_dim or rope_dim % 2:
        raise FormatError(path, f"'{arch}.rope.dimension_count' = {rope_dim} must be even and <= {head_dim}")
    scaling = get("rope.scaling.type", "none", required=False)
    factor = _positive_float(get("rope.scaling.factor", 1.0, required=False), arch, "rope.scaling.factor", path)
    if scaling in ("none", None) or factor == 1.0:
        linear_scale = 1.0
    elif scaling == "linear":
        linear_scale = factor
    else:
        raise FormatError(path, f"'{arch}.rope.scaling.type' = {scaling!r} is not supported (none, linear)")
    vocab = int(get("vocab_size", n_vocab, required=False))
    return ModelConfig(
        arch=arch, n_layers=positive_int("block_count"), d_model=d, n_heads=n_heads, n_kv_heads=n_kv,
        head_dim=head_dim, ffn_dim=positive_int("feed_forward_length"), vocab_size=vocab,
        context_length=positive_int("context_length", 4096),
        norm_eps=_non_negative(get("attention.layer_norm_rms_epsilon"), arch, "attention.layer_norm_rms_epsilon", path),
        rope_base=_positive_float(get("rope.freq_base", 10000.0), arch, "rope.freq_base", path),
        rope_dim=rope_dim, rope_linear_scale=linear_scale,
        sliding_window=_sliding_window(get("attention.sliding_window", 0, required=False), arch, path),
        final_logit_softcap=_non_negative(get("final_logit_softcapping", 0.0, required=False), arch,
                                          "final_logit_softcapping", path))


def _positive_float(v, arch, key, path) -> float:
    """A finite number > 0 (RoPE base and scaling factor: 0, negative or NaN made every logit NaN
    or was silently read as 1.0)."""
    return _finite(v, arch, key, path, strict=True)


def _non_negative(v, arch, key, path) -> float:
    return _finite(v if v is not None else 0.0, arch, key, path, strict=False)


def _finite(v, arch, key, path, strict: bool) -> float:
    """float(v), finite and > 0 (strict) or >= 0, else a FormatError naming the key and the file."""
    import math

    try:
        f = float(v)
    except (TypeError, ValueError):
        raise FormatError(path, f"'{arch}.{key}' = {v!r} is not a number") from None
    if not (math.isfinite(f) and (f > 0 if strict else f >= 0)):
        raise FormatError(path, f"'{arch}.{key}' = {f} must be finite and {'>' if strict else '>='} 0")
    return f


def _sliding_window(v, arch, path) -> int:
    try:
        w = int(v or 0)
    except (TypeError, ValueError):
        raise FormatError(path, f"'{arch}.attention.sliding_window' = {v!r} is not an integer") from None
    if w < 0:
        raise FormatError(path, f"'{arch}.attention.sliding_window' = {w} must be >= 0")
    return w
