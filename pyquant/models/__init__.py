"""Models: `pyquant.load(path_or_alias)` and the architecture registry.

Each architecture family lives in its own file in `pyquant/models/arch/` and registers its class under
the GGUF `general.architecture` names it runs (`@register("llama", "mistral")`); load() imports every
module there and looks the name up. Adding an architecture is adding a file, never a line here.
"""
from __future__ import annotations

import importlib

from ..errors import FormatError, PyquantError

ARCHITECTURES: dict[str, type] = {}


def register(*names: str):
    def deco(cls):
        for name in names:
            ARCHITECTURES[name] = cls
        return cls
    return deco


def _import_families():
    """Import every module of pyquant.models.arch (once) so their @register calls run."""
    import pkgutil

    from . import arch

    for info in pkgutil.iter_modules(arch.__path__):
        importlib.import_module(f"{arch.__name__}.{info.name}")


def load(path_or_alias, *, max_seq_len: int | None = None, threads: int | None = None):
    """Load a GGUF model (a path, or an alias such as "smollm2") with weights kept quantized and
    memory-mapped. Returns a DecoderModel: .generate(), .forward(), .tokenizer, .config."""
    from ..formats.gguf import GGUFReader
    from ..hub import resolve
    from ..runtime.tokenizer import Tokenizer

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise PyquantError(f"threads must be a positive integer, got {threads!r}")
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
    try:
        tokenizer = Tokenizer.from_gguf(reader.metadata, path)
        model = cls(reader, tokenizer, max_seq_len=max_seq_len)
    finally:
        # The weight tensors hold their own exports of the mmap, so the mapping outlives the reader;
        # closing it frees the parsed metadata (tokens, merges: ~11 MB for SmolLM2).
        reader.close()
    del reader
    trim_heap()
    return model


def trim_heap() -> None:
    """Give the heap freed while loading (tokenizer construction, metadata) back to the OS, so the
    file pages touched later do not stack on top of it in peak RSS. glibc only; else a no-op."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def set_threads(n: int) -> None:
    """Thread count for pyquant's kernels and torch's ops together (they take turns, never overlap)."""
    import torch

    from .._ext import set_num_threads

    set_num_threads(int(n))
    torch.set_num_threads(int(n))
