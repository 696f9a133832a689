"""Models: `pyquant.load(path_or_alias)` and the architecture registry.

Each architecture family lives in its own file in `pyquant/models/arch/` and registers its class under
the GGUF `general.architecture` names it runs (`@register("llama", "mistral")`); load() imports every
module there and looks the name up. Adding an architecture is adding a file, never a line here.
"""
from __future__ import annotations

import importlib

from ..errors import FormatError, PyquantError
from ..runtime.memory import trim_heap

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


def open_source(path):
    """The weight source of a checkpoint: a GGUF file, or a model directory (AWQ / compressed-tensors
    int4, or float safetensors). Each format's reader lives in pyquant/formats/<format>/."""
    from pathlib import Path

    if Path(path).is_dir():
        from ..formats.hf.source import DirectorySource

        return DirectorySource(path)
    from ..formats.gguf import GGUFReader
    from ..formats.gguf.source import GGUFSource

    return GGUFSource(GGUFReader(path))


def load(path_or_alias, *, max_seq_len: int | None = None, threads: int | None = None, tp: int | None = None,
         split: list[float] | None = None, device=None):
    """Load a model: a GGUF file, an AWQ / compressed-tensors int4 or float safetensors directory
    (Hugging Face layout), or an alias such as "smollm2", with weights kept quantized. Returns a
    DecoderModel: .generate(), .forward(), .tokenizer, .config.

    tp: tensor parallelism over the torch.distributed process group (torchrun, or the caller's
    init_process_group): this process holds its 1/tp share of the weights and every call to the
    model must be made on every rank, in the same order (pyquant/parallel/).
    split: a layer split over the same kind of process group, one fraction of the layers per rank
    ([0.5, 0.5]); the same rules.
    device: "cpu" (default), "cuda", "cuda:1", a torch.device: the weights are uploaded once, in their
    quantized format, with the KV cache; prefill and every token run the model's forward there, each
    linear on the kernels pyquant.dispatch picks for that device (`model.explain()` lists them). On the
    CPU, tokens run on the C++ step instead."""
    from ..hub import resolve

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise PyquantError(f"threads must be a positive integer, got {threads!r}")
        set_threads(threads)
    device = _check_device(device)
    path = resolve(path_or_alias)
    source = open_source(path)
    arch = source.architecture
    _import_families()
    cls = ARCHITECTURES.get(arch)
    try:
        if cls is None:
            raise FormatError(path, f"general.architecture = {arch!r} is not supported "
                                    f"(supported: {', '.join(sorted(ARCHITECTURES))})")
        group = stage = None   # both given: the model refuses the pair
        if tp is not None:
            if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
                raise PyquantError(f"tp must be a positive integer, got {tp!r}")
            from ..parallel import TensorParallel

            group = TensorParallel(tp)
        if split is not None:
            from ..parallel import LayerSplit

            stage = LayerSplit([float(f) for f in split])
        model = cls(source, source.tokenizer(), max_seq_len=max_seq_len, tp=group, split=stage, device=device)
    finally:
        source.close()
    del source
    trim_heap()
    return model


def _check_device(device):
    """A torch.device that exists here, or a PyquantError saying why not (before any file is read)."""
    import torch

    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise PyquantError(f"device {device!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PyquantError(f"device={device!r}: torch sees no CUDA device here (torch {torch.__version__}, "
                           f"CUDA build {torch.version.cuda})")
    if dev.type not in ("cpu", "cuda", "meta"):
        raise PyquantError(f"device={device!r}: pyquant runs models on 'cpu' or 'cuda'")
    return dev


def set_threads(n: int) -> None:
    """Thread count for pyquant's kernels and torch's ops together (they take turns, never overlap)."""
    import torch

    from .._ext import set_num_threads

    set_num_threads(int(n))
    torch.set_num_threads(int(n))
