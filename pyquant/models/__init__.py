"""Models: `pyquant.load(path_or_alias)` and the architecture registry.

Each architecture family lives in its own file and registers its class under the GGUF
`general.architecture` names it runs (`@register("llama", "mistral")`); load() looks the name up.
Adding an architecture is adding a file, never a branch here.
"""
from __future__ import annotations

import importlib

from ..errors import FormatError

ARCHITECTURES: dict[str, type] = {}
_FAMILY_MODULES = ["llama", "qwen2"]  # imported on first load() so their @register calls run


def register(*names: str):
    def deco(cls):
        for name in names:
            ARCHITECTURES[name] = cls
        return cls
    return deco


def _import_families():
    for mod in _FAMILY_MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def load(path_or_alias, *, max_seq_len: int | None = None, threads: int | None = None):
    """Load a GGUF model (a path, or an alias such as "smollm2") with weights kept quantized and
    memory-mapped. Returns a DecoderModel: .generate(), .forward(), .tokenizer, .config."""
    from ..formats.gguf import GGUFReader
    from ..hub import resolve
    from ..runtime.tokenizer import Tokenizer

    if threads:
        set_threads(threads)
    path = resolve(path_or_alias)
    reader = GGUFReader(path)
    arch = reader.metadata.get("general.architecture")
    _import_families()
    cls = ARCHITECTURES.get(arch)
    if cls is None:
        reader.close()
        raise FormatError(path, f"general.architecture = {arch!r} is not supported "
                                f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    tokenizer = Tokenizer.from_gguf(reader.metadata, path)
    return cls(reader, tokenizer, max_seq_len=max_seq_len)


def set_threads(n: int) -> None:
    """Thread count for pyquant's kernels and torch's ops together (they take turns, never overlap)."""
    import torch

    from .._ext import set_num_threads

    set_num_threads(int(n))
    torch.set_num_threads(int(n))
