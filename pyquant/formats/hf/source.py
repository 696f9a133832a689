"""A Hugging Face model directory as a model's weight source (the interface is described in
pyquant/formats/gguf/source.py): float safetensors, int4 AWQ / compressed-tensors linears, or EXL2
linears (formats/exl2).

The model asks for GGUF names; they are mapped to the directory's names here (config.py). A linear's
weight is read through the directory's quantization format when it has one (AWQ: formats/awq), as a
float QTensor otherwise (unquantized layers, lm_head, embeddings). Q/K rows are in Hugging Face's
rotate-half ("neox") order for every family, whatever RoPE order the family's GGUF files use.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import FormatError
from ...qtypes import QType
from .checkpoint import SafetensorsDir, read_json
from .config import architecture, gguf_metadata, hf_module, llama3_rope_factors

_FLOAT_QTYPES = {torch.float32: QType.F32, torch.float16: QType.F16, torch.bfloat16: QType.BF16}


class DirectorySource:
    rope_style = "neox"

    def __init__(self, directory):
        from ..detect import describe, kind

        self.path = Path(directory)
        cfg_path = self.path / "config.json"
        if not cfg_path.is_file():
            raise FormatError(self.path, f"no config.json: this is {describe(self.path)}")
        self.hf_config = read_json(cfg_path, "config.json")
        self.architecture = architecture(self.hf_config, cfg_path)
        self.metadata = gguf_metadata(self.hf_config, cfg_path)
        self.tensors = SafetensorsDir(self.path)      # first: a broken shard is named as such
        self.format = kind(self.path, self.tensors.keys())
        if self.format not in ("awq", "compressed-tensors", "exl2", "float"):
            raise FormatError(self.path, f"cannot run {describe(self.path)}: pyquant runs GGUF files and "
                                         "AWQ, compressed-tensors int4, EXL2 and float directories")
        emb = "model.embed_tokens.weight"
        vocab = self.hf_config.get("vocab_size")
        if emb in self.tensors and self.tensors.info(emb)[1][:1] != (vocab,):
            raise FormatError(cfg_path, f"vocab_size = {vocab!r} but '{emb}' has shape "
                                        f"{self.tensors.info(emb)[1]}")
        self.linears = None
        if self.format == "exl2":
            from ..exl2.reader import Exl2Linears

            self.linears = Exl2Linears(self.tensors, self.path, release=self.release)
        elif self.format != "float":
            from ..awq.config import read_awq_config
            from ..awq.reader import AWQLinears

            self.linears = AWQLinears(self.tensors, read_awq_config(self.path, self.hf_config), self.path,
                                      release=self.release)
        self.sampling_defaults = None
        if (self.path / "generation_config.json").is_file():
            from ...runtime.sampling import SamplingDefaults

            gc = read_json(self.path / "generation_config.json", "generation_config.json")
            self.sampling_defaults = SamplingDefaults.from_generation_config(gc)
        heads = self.hf_config.get("num_attention_heads") or 1
        head_dim = self.hf_config.get("head_dim") or (self.hf_config.get("hidden_size", 0) // heads)
        self._rope_factors = llama3_rope_factors(self.hf_config, head_dim)

    # ---- names --------------------------------------------------------------------------------
    def _hf(self, name: str) -> tuple[str, str]:
        m = hf_module(name)
        if m is None:
            raise FormatError(self.path, f"tensor '{name}' has no counterpart in a {self.architecture} directory")
        return m

    def has(self, name: str) -> bool:
        if name == "rope_freqs.weight":
            return self._rope_factors is not None
        if hf_module(name) is None:
            return False
        module, suffix = self._hf(name)
        if suffix == "weight" and self.linears is not None and self.linears.is_quantized(module):
            return True
        if f"{module}.{suffix}" in self.tensors:
            return True
        # a tied lm_head is written by some exporters anyway; absent means tied
        return False

    def _float(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        module, suffix = self._hf(name)
        full = f"{module}.{suffix}"
        if full not in self.tensors:
            raise FormatError(self.path, f"tensor '{full}' is missing")
        dtype, got = self.tensors.info(full)
        if tuple(got) != tuple(shape):
            raise FormatError(self.tensors.file_of(full), f"tensor '{full}' has shape {tuple(got)}, "
                                                          f"expected {tuple(shape)} from config.json")
        t = self.tensors.get(full)
        if t.dtype not in _FLOAT_QTYPES:
            raise FormatError(self.tensors.file_of(full), f"tensor '{full}' has dtype {t.dtype}, expected a float")
        return t

    def vector(self, name: str, length: int) -> torch.Tensor:
        if name == "rope_freqs.weight":
            return torch.tensor(self._rope_factors, dtype=torch.float32)
        return self._float(name, (length,)).to(torch.float32, copy=True)   # never a view of the file

    def qtensor(self, name: str, shape: tuple[int, ...]):
        from ...qtensor import QTensor

        module, suffix = self._hf(name)
        if suffix == "weight" and self.linears is not None and self.linears.is_quantized(module):
            if len(shape) != 2:
                raise FormatError(self.path, f"tensor '{module}' is quantized but is not a matrix")
            return self.linears.qtensor(module, *shape)
        t = self._float(name, shape).contiguous()
        return QTensor(t.view(torch.uint8).reshape(shape[0], -1), _FLOAT_QTYPES[t.dtype], shape)

    def span(self, names):
        return None   # fusing concatenates (quantized linears are repacked copies anyway)

    @staticmethod
    def release(t: torch.Tensor) -> None:
        """Float weights are views of the mapped files: drop the pages of one copied from (re-read
        from the file if touched again)."""
        from ...runtime.memory import release_pages

        release_pages(t)

    def tokenizer(self):
        from ...runtime.tokenizer import Tokenizer

        return Tokenizer.from_hf(self.path, int(self.hf_config.get("vocab_size") or 0))

    def close(self) -> None:
        pass
