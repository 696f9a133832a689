"""What the calibrating quantizers (awq.py, exl2.py) share: calibration text cut into blocks, and one
decoder layer of the Llama family in float32 that they run the calibration states through, whose
weights they edit in place (HF names, rotate-half RoPE, grouped-query attention through
torch's scaled_dot_product_attention). The runner's own block (models/decoder.py) works on quantized
weights with a KV cache; this one on float tensors over whole calibration sequences.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import PyquantError

DEFAULT_TEXT = "calibration.txt"   # in pyquant/data: the GPL-3.0 and MPL-2.0 texts (not any evaluation text)


class FloatLayer:
    """One decoder layer of the Llama family in float32 (HF names and rotate-half RoPE): the model
    the searches measure against. Weights are plain tensors, edited in place by the searches."""

    LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def __init__(self, get, has, prefix: str, cfg: dict):
        self.cfg, self.prefix = cfg, prefix
        self.w = {}
        for name in self.LINEARS:
            sub = "self_attn" if name[0] in "qkvo" else "mlp"
            self.w[name] = get(f"{prefix}.{sub}.{name}.weight").float()
            b = f"{prefix}.{sub}.{name}.bias"
            self.w[name + ".bias"] = get(b).float() if has(b) else None
        self.w["ln1"] = get(f"{prefix}.input_layernorm.weight").float()
        self.w["ln2"] = get(f"{prefix}.post_attention_layernorm.weight").float()
        for n in ("q_norm", "k_norm"):
            name = f"{prefix}.self_attn.{n}.weight"
            self.w[n] = get(name).float() if has(name) else None

    def lin(self, name, x, weight=None):
        return F.linear(x, self.w[name] if weight is None else weight, self.w[name + ".bias"])

    def norm(self, x, w):
        return torch.rms_norm(x, (x.shape[-1],), w, self.cfg["eps"])

    def attention(self, h, rope, wq=None, wk=None, wv=None):
        """h [B, T, d] -> attention output before o_proj [B, T, H hd]."""
        c = self.cfg
        B, T, _ = h.shape
        H, Hkv, hd = c["heads"], c["kv_heads"], c["head_dim"]
        q = self.lin("q_proj", h, wq).view(B, T, H, hd)
        k = self.lin("k_proj", h, wk).view(B, T, Hkv, hd)
        v = self.lin("v_proj", h, wv).view(B, T, Hkv, hd)
        if self.w["q_norm"] is not None:
            q, k = self.norm(q, self.w["q_norm"]), self.norm(k, self.w["k_norm"])
        cos, sin = rope
        q, k = _rotate(q, cos[:T], sin[:T]), _rotate(k, cos[:T], sin[:T])
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if Hkv != H:
            k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return o.transpose(1, 2).reshape(B, T, H * hd)

    def mlp_hidden(self, h, wg=None, wu=None):
        return F.silu(self.lin("gate_proj", h, wg)) * self.lin("up_proj", h, wu)

    def forward(self, x, rope, keep: bool = False):
        """x [B, T, d] -> (output, inputs of each linear when keep)."""
        h1 = self.norm(x, self.w["ln1"])
        a = self.attention(h1, rope)
        x2 = x + self.lin("o_proj", a)
        h2 = self.norm(x2, self.w["ln2"])
        m = self.mlp_hidden(h2)
        out = x2 + self.lin("down_proj", m)
        return out, ({"qkv": h1, "o": a, "gate_up": h2, "down": m} if keep else None)


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos[:, None, :] + torch.cat([-x2, x1], dim=-1) * sin[:, None, :]


def layer_setup(config: dict, seq_len: int) -> tuple[dict, tuple]:
    """(FloatLayer's cfg, RoPE tables for seq_len) from a float checkpoint's config.json."""
    heads = config["num_attention_heads"]
    hd = config.get("head_dim") or config["hidden_size"] // heads
    cfg = {"heads": heads, "kv_heads": config.get("num_key_value_heads") or heads, "head_dim": hd,
           "eps": config.get("rms_norm_eps", 1e-6)}
    return cfg, rope_tables(seq_len, hd, config.get("rope_theta", 10000.0))


def rope_tables(T: int, head_dim: int, base: float):
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().float(), emb.sin().float()



def calibration_blocks(tokenizer_encode, text: str, seq_len: int, max_blocks: int) -> torch.Tensor:
    """The text's tokens as [n, seq_len] blocks (at most max_blocks; the remainder dropped)."""
    ids = tokenizer_encode(text)
    n = min(len(ids) // seq_len, max_blocks)
    if n == 0:
        raise PyquantError(f"calibration text has {len(ids)} tokens: at least seq_len = {seq_len} needed")
    return torch.tensor(ids[:n * seq_len]).view(n, seq_len)




def calibration_text(path=None):
    """(path, text) of a calibration text file, pyquant's shipped one when path is None."""
    p = Path(path) if path else Path(__file__).resolve().parent.parent / "data" / DEFAULT_TEXT
    try:
        return p, p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PyquantError(f"{p}: cannot read the calibration text: {e}") from None


class FloatDirectory:
    """A float HF directory as the quantizer's source: config, float32 tensors by name, tokenizer files."""

    def __init__(self, path):
        from ..errors import FormatError
        from ..formats.detect import describe, kind
        from ..formats.hf.checkpoint import SafetensorsDir, read_json

        self.path = Path(path)
        if kind(self.path) != "float":
            raise FormatError(self.path, f"a quantizer needs a float model; this is {describe(self.path)}")
        self.config = read_json(self.path / "config.json", "config.json")
        self.tensors = SafetensorsDir(self.path)

    def __contains__(self, name):
        return name in self.tensors

    def get(self, name):
        return self.tensors.get(name).float()

    def write_tokenizer(self, out):
        from ..formats.hf.checkpoint import copy_tokenizer_files

        copy_tokenizer_files(self.path, out)

    def close(self):
        pass



def open_float_source(path_or_alias):
    """(source, tokenizer, path) of the float model a quantizer reads: a float HF directory, or a GGUF
    file / alias dequantized tensor by tensor (formats/gguf/to_hf.py)."""
    from ..hub import resolve
    from ..runtime.tokenizer import Tokenizer

    p = resolve(path_or_alias)
    if p.is_dir():
        src = FloatDirectory(p)
        return src, Tokenizer.from_hf(p, int(src.config.get("vocab_size") or 0)), p
    from ..formats.gguf.to_hf import GGUFAsHF

    src = GGUFAsHF(p)
    return src, src.tok, p
