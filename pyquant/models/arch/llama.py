"""The `llama` GGUF architecture: Llama 1/2/3, Mistral, SmolLM2, ... (RMSNorm, SwiGLU, GQA, RoPE).

llama.cpp's converter permutes the Q/K rows of these models so ggml's "normal" (adjacent-pair) RoPE
applies; the rows are used as stored. Llama 3 frequency factors (`rope_freqs.weight`) and linear
rope scaling are read by the shared decoder."""
from __future__ import annotations

from .. import register
from ..decoder import DecoderModel


@register("llama", "mistral")
class LlamaModel(DecoderModel):
    rope_style = "normal"
