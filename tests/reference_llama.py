"""An independent float implementation of the llama / qwen2 / qwen3 / gemma3 GGUF forward pass, for tests
only.

Written separately from pyquant.models: weights are read and dequantized by the `gguf` package
(not pyquant's reader or dequantizers), RoPE is applied in each architecture's own pairing (no row
permutation), GQA by repeating K/V heads, attention as a plain masked softmax over the whole
sequence (no KV cache). Every value in float64 unless `dtype` says otherwise.
"""
from __future__ import annotations

import math

import numpy as np
import torch

ROPE_NEOX_ARCHS = {"qwen2", "qwen3", "gemma3"}


class ReferenceLlama:
    def __init__(self, path, dtype=torch.float64):
        import gguf

        r = gguf.GGUFReader(str(path))
        md = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.ggml.")}
        self.arch = a = md["general.architecture"]
        self.dtype = dtype
        self.n_layers = md[f"{a}.block_count"]
        self.d = md[f"{a}.embedding_length"]
        self.n_heads = md[f"{a}.attention.head_count"]
        self.n_kv = md.get(f"{a}.attention.head_count_kv", self.n_heads)
        self.head_dim = md.get(f"{a}.attention.key_length", self.d // self.n_heads)
        self.rope_dim = md.get(f"{a}.rope.dimension_count", self.head_dim)
        self.base = md.get(f"{a}.rope.freq_base", 10000.0)
        self.eps = md[f"{a}.attention.layer_norm_rms_epsilon"]
        self.window = int(md.get(f"{a}.attention.sliding_window", 0) or 0)
        self.softcap = float(md.get(f"{a}.final_logit_softcapping", 0.0) or 0.0)
        self.gemma3 = a == "gemma3"   # llama.cpp's gemma3 graph (src/models/gemma3.cpp), read from its source
        self.w = {}
        for t in r.tensors:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
            self.w[t.name] = torch.from_numpy(np.array(arr, dtype=np.float32)).to(dtype).reshape(
                tuple(int(x) for x in reversed(t.shape)) if len(t.shape) > 1 else (-1,))
        if "output.weight" not in self.w:
            self.w["output.weight"] = self.w["token_embd.weight"]

    def rms_norm(self, x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, positions, base=None):
        """x [S, heads, hd]; rotate the first rope_dim dims with this architecture's pairing."""
        r = self.rope_dim
        theta = (base or self.base) ** (-torch.arange(0, r, 2, dtype=torch.float64) / r)
        ang = positions[:, None].double() * theta[None, :]                 # [S, r/2]
        cos, sin = torch.cos(ang)[:, None, :].to(x.dtype), torch.sin(ang)[:, None, :].to(x.dtype)
        out = x.clone()
        if self.arch in ROPE_NEOX_ARCHS:
            a, b = x[..., : r // 2], x[..., r // 2: r]
            out[..., : r // 2] = a * cos - b * sin
            out[..., r // 2: r] = a * sin + b * cos
        else:
            a, b = x[..., 0:r:2], x[..., 1:r:2]
            out[..., 0:r:2] = a * cos - b * sin
            out[..., 1:r:2] = a * sin + b * cos
        return out

    def lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        if name + ".bias" in self.w:
            y = y + self.w[name + ".bias"]
        return y

    @torch.no_grad()
    def forward(self, ids) -> torch.Tensor:
        """Logits [S, vocab] for the whole sequence ids (positions 0..S-1)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        S, H, Hkv, hd = ids.numel(), self.n_heads, self.n_kv, self.head_dim
        pos = torch.arange(S)
        x = self.w["token_embd.weight"][ids]
        if self.gemma3:
            x = x * math.sqrt(self.d)
        causal = torch.ones(S, S, dtype=torch.bool).tril()
        windowed = causal & torch.ones(S, S, dtype=torch.bool).triu(-(self.window - 1)) if self.window else causal
        for i in range(self.n_layers):
            p = f"blk.{i}."
            # gemma3: five sliding-window layers (RoPE base 10000) for each global one
            local = (i + 1) % 6 != 0 if self.gemma3 else bool(self.window)
            mask = windowed if local else causal                  # query s sees s - W < t <= s
            base = 10000.0 if (self.gemma3 and local) else None
            h = self.rms_norm(x, self.w[p + "attn_norm.weight"])
            q = self.lin(h, p + "attn_q").view(S, H, hd)
            k = self.lin(h, p + "attn_k").view(S, Hkv, hd)
            if p + "attn_q_norm.weight" in self.w:     # qwen3 / gemma3: RMSNorm of every head before RoPE
                q = self.rms_norm(q, self.w[p + "attn_q_norm.weight"])
                k = self.rms_norm(k, self.w[p + "attn_k_norm.weight"])
            q, k = self.rope(q, pos, base), self.rope(k, pos, base)
            v = self.lin(h, p + "attn_v").view(S, Hkv, hd)
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
            att = torch.einsum("shd,thd->hst", q, k) / math.sqrt(hd)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            o = self.lin(torch.einsum("hst,thd->shd", att, v).reshape(S, H * hd), p + "attn_output")
            if self.gemma3:
                o = self.rms_norm(o, self.w[p + "post_attention_norm.weight"])
            x = x + o
            h = self.rms_norm(x, self.w[p + "ffn_norm.weight"])
            g = self.lin(h, p + "ffn_gate")
            act = (torch.nn.functional.gelu(g, approximate="tanh") if self.gemma3
                   else torch.nn.functional.silu(g))
            f = self.lin(act * self.lin(h, p + "ffn_up"), p + "ffn_down")
            if self.gemma3:
                f = self.rms_norm(f, self.w[p + "post_ffw_norm.weight"])
            x = x + f
        logits = self.lin(self.rms_norm(x, self.w["output_norm.weight"]), "output")
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits
