"""The `gemma3` GGUF architecture (Gemma 3 text models), as llama.cpp runs it.

Against the Llama block: token embeddings scaled by sqrt(d_model); QK-norm; every sublayer's output
RMS-normed (post_attention_norm / post_ffw_norm) before its residual add; GELU (tanh approximation)
instead of SiLU in the gated MLP; "neox" RoPE; five sliding-window layers for every global one
(layer i is global when (i + 1) % 6 == 0), the local ones with RoPE base 10000 and no scaling, the
global ones with the file's rope.freq_base and rope scaling; logits soft-capped when the file says
so (final_logit_softcapping). The norm weights in a GGUF already include Gemma's "+1" (llama.cpp's
converter adds it), so the plain RMSNorm applies. Tokenizer and chat template come from the file
(SentencePiece vocabulary). The output projection is tied to the token embedding.
"""
from __future__ import annotations

import math

from .. import register
from ..decoder import DecoderModel


@register("gemma3")
class Gemma3Model(DecoderModel):
    rope_style = "neox"
    qk_norm = True
    embed_scale = True
    post_norms = True
    swa_pattern = 6
    local_rope_base = 10000.0
    mlp_act = "gelu_tanh"

    def attention_scale(self) -> float:
        """llama.cpp: 1/sqrt(head_dim), except Gemma 3 27B (62 layers), queries scaled by
        1/sqrt(d_model / n_heads) (its query_pre_attn_scalar)."""
        cfg = self.full_config   # all heads, also when this process holds a tensor-parallel share
        return 1.0 / math.sqrt(cfg.d_model / cfg.n_heads if cfg.n_layers == 62 else cfg.head_dim)
