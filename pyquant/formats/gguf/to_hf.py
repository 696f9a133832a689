"""A GGUF model seen as a Hugging Face float checkpoint: config.json, HF-named float32 weights
(dequantized on demand, one tensor at a time) and tokenizer files. What `pyquant awq` quantizes
when handed a GGUF file (e.g. SmolLM2's Q4_1: its dequantized weights are the float model)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import FormatError
from ..hf.config import MODEL_TYPES, hf_module

_HF_CLASS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


class GGUFAsHF:
    def __init__(self, path):
        from ...models import _import_families
        from ...models.config import read_config
        from ...runtime.tokenizer import Tokenizer
        from . import GGUFReader

        self.path = Path(path)
        self.reader = GGUFReader(path)
        arch = self.reader.architecture
        if arch not in set(MODEL_TYPES.values()):
            raise FormatError(path, f"architecture {arch!r}: pyquant awq takes {', '.join(sorted(_HF_CLASS))}")
        self.tok = Tokenizer.from_gguf(self.reader.metadata, path)
        self.cfg = read_config(self.reader.metadata, arch, self.tok.n_vocab, path)
        _import_families()
        self.config = self._config()
        # llama.cpp's converter permuted llama's Q/K rows to adjacent RoPE pairs; HF keeps rotate-half
        self._unpermute = arch == "llama"
        self._names = {}
        for name in self.reader.tensors:
            m = hf_module(name)
            if m is not None:
                self._names[f"{m[0]}.{m[1]}"] = name

    def _config(self) -> dict:
        c, md = self.cfg, self.reader.metadata
        out = {"architectures": [_HF_CLASS[c.arch]], "model_type": c.arch, "hidden_size": c.d_model,
               "intermediate_size": c.ffn_dim, "num_hidden_layers": c.n_layers,
               "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim,
               "max_position_embeddings": c.context_length, "rms_norm_eps": c.norm_eps,
               "rope_theta": c.rope_base, "vocab_size": c.vocab_size, "hidden_act": "silu",
               "tie_word_embeddings": "output.weight" not in self.reader.tensors, "torch_dtype": "float16",
               "bos_token_id": md.get("tokenizer.ggml.bos_token_id"),
               "eos_token_id": md.get("tokenizer.ggml.eos_token_id")}
        if c.rope_linear_scale != 1.0:
            out["rope_scaling"] = {"type": "linear", "factor": c.rope_linear_scale}
        if "rope_freqs.weight" in self.reader.tensors:
            raise FormatError(self.path, "rope_freqs (Llama 3.1 RoPE scaling) is not exported to config.json yet")
        if c.arch == "qwen2":
            out["attention_bias"] = True
        return out

    def __contains__(self, hf_name: str) -> bool:
        return hf_name in self._names

    def get(self, hf_name: str) -> torch.Tensor:
        """The float32 tensor (HF name and row order)."""
        from ...dequant import dequantize

        gguf = self._names.get(hf_name)
        if gguf is None:
            raise FormatError(self.path, f"no tensor for '{hf_name}'")
        t = self.reader.tensors[gguf]
        w = dequantize(t.bytes(), t.qtype, tuple(t.shape))
        if self._unpermute and (".q_proj." in hf_name or ".k_proj." in hf_name):
            from ...models.rope import neox_to_normal_rows

            heads = self.cfg.n_heads if ".q_proj." in hf_name else self.cfg.n_kv_heads
            perm = neox_to_normal_rows(heads, self.cfg.head_dim, self.cfg.rope_dim)
            w = w[torch.argsort(perm)]
        return w.contiguous()

    def write_tokenizer(self, out_dir) -> None:
        """tokenizer.json (the same tokenizers pipeline pyquant runs for this GGUF, with a decoder),
        tokenizer_config.json (BOS/EOS, add_bos_token, chat template), generation_config.json."""
        from tokenizers import decoders

        tok, out = self.tok, Path(out_dir)
        backend = tok.backend
        if tok.model == "gpt2":
            backend.decoder = decoders.ByteLevel()
        else:
            backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                                 decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        backend.save(str(out / "tokenizer.json"))
        text = lambda i: None if i is None else tok.token_text(i)  # noqa: E731
        tc = {"bos_token": text(tok.bos_id), "eos_token": text(tok.eos_id), "add_bos_token": tok.add_bos,
              "add_eos_token": False, "tokenizer_class": "PreTrainedTokenizerFast",
              "model_max_length": self.cfg.context_length}
        if tok.chat_template:
            tc["chat_template"] = tok.chat_template
        (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
        gc = {"bos_token_id": tok.bos_id, "eos_token_id": sorted(tok.eog_ids) or tok.eos_id}
        (out / "generation_config.json").write_text(json.dumps(gc, indent=2) + "\n", encoding="utf-8")

    def close(self) -> None:
        self.reader.close()
