"""One-token decode step with every buffer and view preallocated.

A decoded token of a small model is ~30 layers x ~15 tiny ops, so the Python/torch dispatch cost
per op matters as much as the matmuls: no allocations in the loop, `out=` variants, views built once,
fused QKV / gate-up linears (one kernel call each), one in-place complex multiply doing the RoPE of Q
and K together, one index_copy_ writing K and V into the cache.
"""
from __future__ import annotations

import torch

from .decoder import run_linears


class DecodeState:
    def __init__(self, model):
        cfg = model.config
        self.model = model
        d, qd, kvd, ff, hd = cfg.d_model, cfg.q_dim, cfg.kv_dim, cfg.ffn_dim, cfg.head_dim
        H, Hkv = cfg.n_heads, cfg.n_kv_heads
        g = H // Hkv
        T = model.max_seq_len
        self.x = torch.empty((1, d))
        self.tmp = torch.empty((1, d))
        self.qkv = torch.empty((1, qd + 2 * kvd))            # [q | k | v]
        self.attn = torch.empty((1, qd))
        self.gu = torch.empty((1, 2 * ff))                    # [gate | up]
        self.act = torch.empty((1, ff))
        self.logits = torch.empty((1, cfg.vocab_size))
        self.scores = torch.empty((Hkv, g, T))
        self.gate, self.up = self.gu[:, :ff], self.gu[:, ff:]
        # Q heads h*g .. h*g+g-1 share KV head h: q viewed [Hkv, g, hd] feeds one bmm per KV head.
        self.q_grouped = self.qkv[0, :qd].view(Hkv, g, hd)
        self.attn_grouped = self.attn[0].view(Hkv, g, hd)
        # RoPE of Q and K at once: the first qd + kvd values are H + Hkv heads of hd.
        qk = self.qkv[0, :qd + kvd].view(H + Hkv, hd)[:, :cfg.rope_dim]
        self.qk_complex = torch.view_as_complex(qk.unflatten(-1, (cfg.rope_dim // 2, 2)))
        self.k = self.qkv[0, qd:qd + kvd].view(Hkv, 1, hd)
        self.v = self.qkv[0, qd + kvd:].view(Hkv, 1, hd)
        self.pos = torch.zeros(1, dtype=torch.long)
        self.token = torch.zeros(1, dtype=torch.long)
        self.scale = model.attn_scale
        self.eps = cfg.norm_eps
        self.norm_shape = (d,)

    def step(self, token: int, pos: int) -> torch.Tensor:
        m = self.model
        m.cache.check(pos, 1)
        T = pos + 1
        self.token[0] = token
        self.pos[0] = pos
        x = self.x
        x.copy_(m.embed(self.token))
        freqs = m.rope[pos]
        scores = self.scores[:, :, :T]
        cache = m.cache
        for i, L in enumerate(m.layers):
            run_linears(L.qkv, m.norm(x, L.attn_norm), self.qkv)
            self.qk_complex.mul_(freqs)
            Kl, Vl = cache.layer_k[i], cache.layer_v[i]              # [Hkv, Tmax, hd]
            Kl.index_copy_(1, self.pos, self.k)
            Vl.index_copy_(1, self.pos, self.v)
            torch.bmm(self.q_grouped, Kl[:, :T].transpose(1, 2), out=scores)    # [Hkv, g, T]
            probs = torch.softmax(scores.mul_(self.scale), dim=-1)
            torch.bmm(probs, Vl[:, :T], out=self.attn_grouped)                   # [Hkv, g, hd]
            L.wo.into(self.attn, self.tmp)
            x.add_(self.tmp)
            run_linears(L.gate_up, m.norm(x, L.ffn_norm), self.gu)
            m.mlp_activation_into(self.gate, self.up, self.act)
            L.down.into(self.act, self.tmp)
            x.add_(self.tmp)
        m.output.into(m.norm(x, m.output_norm), self.logits)
        return self.logits[0]
