"""The `qwen2` GGUF architecture: the Llama block plus Q/K/V biases (picked up from the file by the
shared loader) and "neox" RoPE (rotating the two halves of each head), which the decoder turns into
adjacent pairs by permuting the Q/K rows (and biases) once at load."""
from __future__ import annotations

from .. import register
from ..decoder import DecoderModel


@register("qwen2")
class Qwen2Model(DecoderModel):
    rope_style = "neox"
