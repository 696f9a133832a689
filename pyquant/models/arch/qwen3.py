"""The `qwen3` GGUF architecture: the qwen2 block without Q/K/V biases, with QK-norm (an RMSNorm over
each query and key head, `attn_q_norm` / `attn_k_norm`, before RoPE) and "neox" RoPE.

How to add an architecture: a file like this one. Subclass DecoderModel, register the GGUF
`general.architecture` names it runs, and state how the family differs from the Llama block with
the named options of DecoderModel (rope_style, qk_norm, ...) or by overriding its small methods
(norm, mlp_activation). Hyper-parameters come from the file's `{arch}.*` metadata; biases are used
when the file has them. The forward, the C++ token step and the tests read the same options.
"""
from __future__ import annotations

from .. import register
from ..decoder import DecoderModel


@register("qwen3")
class Qwen3Model(DecoderModel):
    rope_style = "neox"
    qk_norm = True
