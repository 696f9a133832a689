"""A GGUF file as a model's weight source: the interface every checkpoint format gives the model code
(pyquant/models/decoder.py), so the model never learns which format it was loaded from.

    source.path, .metadata ({arch}.* hyper-parameters), .architecture, .rope_style (None: the family's)
    source.has(name)                   a tensor by GGUF name ("blk.0.attn_q.weight") exists
    source.qtensor(name, shape)        the weight as a QTensor (here: a zero-copy view of the file)
    source.vector(name, length)        a 1-D float32 tensor (norm weights, biases)
    source.span(names)                 a zero-copy view spanning tensors stored back to back, or None
    source.release(t)                  drop the pages of a weight the model has just copied from
    source.tokenizer()                 the Tokenizer
"""
from __future__ import annotations

import torch

from ...errors import FormatError
from ...qtypes import QType


class GGUFSource:
    rope_style = None   # llama.cpp's converter already permuted the Q/K rows for the family's RoPE

    def __init__(self, reader):
        self.reader = reader
        self.path = reader.path
        self.metadata = reader.metadata
        self.architecture = reader.architecture

    def has(self, name: str) -> bool:
        return name in self.reader.tensors

    def _tensor(self, name: str):
        t = self.reader.tensors.get(name)
        if t is None:
            raise FormatError(self.path, f"tensor '{name}' is missing")
        return t

    def vector(self, name: str, length: int) -> torch.Tensor:
        """A 1-D float tensor as float32, copied: the model keeps no view of the file (a file
        replaced under a loaded model must not end it with SIGBUS)."""
        t = self._tensor(name)
        if t.n_elements != length:
            raise FormatError(self.path, f"tensor '{name}' has {t.n_elements} elements, expected {length}")
        if t.qtype == QType.F32:
            return t.bytes().reshape(-1).view(torch.float32).clone()
        from ...dequant import dequantize

        return dequantize(t.bytes(), t.qtype, (length,))

    def qtensor(self, name: str, shape: tuple[int, ...]):
        from ...qtensor import QTensor

        t = self._tensor(name)
        if tuple(t.shape) != tuple(shape):
            raise FormatError(self.path, f"tensor '{name}' has shape {tuple(t.shape)}, expected {tuple(shape)}")
        return QTensor.from_gguf(t)

    def span(self, names: list[str]):
        """A zero-copy uint8 [rows, row_bytes] view spanning tensors stored back to back in the file
        (same type and row length), or None. llama.cpp's converter writes ffn_gate right before ffn_up,
        so fusing them needs no copy (33 MB of SmolLM2's 98)."""
        ts = [self._tensor(n) for n in names]
        if len({(t.qtype, t.row_bytes) for t in ts}) != 1 or int(ts[0].qtype) >= 1000:
            return None
        if any(a.offset + a.nbytes != b.offset for a, b in zip(ts, ts[1:])):
            return None
        rows = sum(t.n_rows for t in ts)
        # our own copy-on-write mapping of just this range: the reader's pages for it are never touched
        import numpy as np

        mm = np.memmap(self.path, dtype=np.uint8, mode="c", offset=ts[0].offset, shape=(rows, ts[0].row_bytes))
        return torch.from_numpy(mm)

    def release(self, t: torch.Tensor) -> None:
        """Weights are views of the file: the pages of one we copied from are dropped (re-read from
        the file if touched again), so they do not count in RSS for nothing; and with them whatever
        else of the reader's mapping the reads faulted in (reader.drop_pages)."""
        from ...runtime.memory import release_pages

        release_pages(t)   # t may be another mapping of the file (a span)
        self.reader.drop_pages()

    def tokenizer(self):
        from ...runtime.tokenizer import Tokenizer

        return Tokenizer.from_gguf(self.metadata, self.path)

    def close(self) -> None:
        # The weight tensors hold their own exports of the mmap, so the mapping outlives the reader;
        # closing it frees the parsed metadata (tokens, merges: ~11 MB for SmolLM2).
        self.reader.close()
