"""A Hugging Face style model directory: config.json, safetensors shards, tokenizer files.

Each shard is opened with the `safetensors` library (which validates its header: dtypes, shapes,
offsets inside the file, no overlaps) and never unpickled: `.bin` / `.pt` checkpoints are refused.
Tensors are then zero-copy views of our own copy-on-write mapping of the file at the offsets the
header gives (checked again here): float weights (embeddings, lm_head, norms) stay file pages, as a
GGUF's do, and a quantized linear's pages can be dropped once it is repacked (`release`). Shards
are found from `model.safetensors.index.json` when it names files that exist, else from every
`*.safetensors` file's own header (EXL2 repos ship a stale index).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from ...errors import FormatError

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}

_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            v = json.load(f)
    except json.JSONDecodeError as e:
        raise FormatError(path, f"{what} is not valid JSON: {e}") from None
    except OSError as e:
        raise FormatError(path, f"cannot read {what}: {e.strerror}") from None
    if not isinstance(v, dict):
        raise FormatError(path, f"{what} must hold a JSON object, got {type(v).__name__}")
    return v


class SafetensorsDir:
    """Name -> tensor over every safetensors shard of a directory (memory-mapped, read-only)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise FormatError(self.dir, "not a directory")
        files = self._shards()
        if not files:
            pickled = sorted(p.name for pat in _PICKLED for p in self.dir.glob(pat))
            if pickled:
                raise FormatError(self.dir, f"only pickled checkpoints ({', '.join(pickled[:3])}): pyquant reads "
                                            "safetensors only and never unpickles a file (convert it with "
                                            "transformers' save_pretrained(safe_serialization=True))")
            raise FormatError(self.dir, "no *.safetensors file")
        from safetensors import safe_open

        self._where = {}   # name -> (file, dtype string, shape, absolute byte offset, nbytes)
        self._maps = {}
        for f in files:
            try:
                with safe_open(str(f), framework="pt") as h:   # the library's own header validation
                    names = list(h.keys())
            except Exception as e:   # safetensors raises its own error types for a bad header
                raise FormatError(f, f"not a valid safetensors file: {e}") from None
            header, base = _header(f)
            for name in names:
                if name in self._where:
                    raise FormatError(f, f"tensor '{name}' is also in {self._where[name][0].name}")
                e = header.get(name)
                if not isinstance(e, dict):
                    raise FormatError(f, f"tensor '{name}': no header entry")
                self._where[name] = (f, *_entry(f, name, e, base))

    def _shards(self) -> list[Path]:
        index = self.dir / "model.safetensors.index.json"
        if index.exists():
            m = read_json(index, "the shard index").get("weight_map")
            if isinstance(m, dict):
                named = sorted({self.dir / str(v) for v in m.values()})
                if named and all(p.is_file() and p.parent == self.dir for p in named):
                    return named
        return sorted(p for p in self.dir.glob("*.safetensors") if p.is_file())

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def keys(self):
        return self._where.keys()

    def file_of(self, name: str) -> Path:
        return self._where[name][0]

    def info(self, name: str) -> tuple[str, tuple[int, ...]]:
        """(safetensors dtype string, shape) from the header, without reading the data."""
        _, dtype, shape, _, _ = self._where[name]
        return dtype, shape

    def get(self, name: str) -> torch.Tensor:
        """The tensor: a zero-copy view of the mapped file (copy-on-write: writing to it never
        reaches the file)."""
        entry = self._where.get(name)
        if entry is None:
            raise FormatError(self.dir, f"tensor '{name}' is missing")
        f, dtype, shape, off, n = entry
        if dtype not in _DTYPES:
            raise FormatError(f, f"tensor '{name}': dtype {dtype} is not supported")
        mm = self._maps.get(f)
        if mm is None:
            mm = self._maps[f] = np.memmap(f, dtype=np.uint8, mode="c")
        raw = torch.from_numpy(mm[off:off + n]) if n else torch.empty(0, dtype=torch.uint8)
        return raw.view(_DTYPES[dtype]).reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in {e[0] for e in self._where.values()})


def _header(f: Path) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the offset where its data starts."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > size - 8:
            raise FormatError(f, f"safetensors header of {n} bytes exceeds the file ({size} bytes)")
        try:
            header = json.loads(fh.read(n))
        except ValueError as e:
            raise FormatError(f, f"safetensors header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise FormatError(f, "safetensors header is not a JSON object")
    return header, 8 + n


def _entry(f: Path, name: str, e: dict, base: int):
    """(dtype, shape, absolute offset, nbytes) of one header entry, every number checked."""
    import math

    dtype, shape, offs = e.get("dtype"), e.get("shape"), e.get("data_offsets")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise FormatError(f, f"tensor '{name}': bad shape {shape!r}")
    if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)
            and 0 <= offs[0] <= offs[1]):
        raise FormatError(f, f"tensor '{name}': bad data_offsets {offs!r}")
    n = offs[1] - offs[0]
    itemsize = _DTYPES[dtype].itemsize if dtype in _DTYPES else None
    if itemsize is not None and n != math.prod(shape) * itemsize:
        raise FormatError(f, f"tensor '{name}': {n} bytes for {dtype} {tuple(shape)}")
    if base + offs[1] > f.stat().st_size:
        raise FormatError(f, f"tensor '{name}' ends past the end of the file")
    return dtype, tuple(shape), base + offs[0], n


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja")


def copy_tokenizer_files(src_dir, out_dir) -> None:
    """The tokenizer / chat template / generation defaults of a model directory, copied beside a new one."""
    import shutil

    for name in TOKENIZER_FILES:
        src = Path(src_dir) / name
        if src.is_file() and src.resolve() != (Path(out_dir) / name).resolve():
            shutil.copyfile(src, Path(out_dir) / name)


def write_directory(out_dir, config: dict, quantization_config: dict, tensors: dict, filename: str,
                    source_dir=None) -> None:
    """A quantized model directory: config.json (with `quantization_config`), one safetensors file of
    `tensors`, and the tokenizer files of source_dir."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {**config, "quantization_config": quantization_config}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / filename), metadata={"format": "pt"})
    if source_dir is not None:
        copy_tokenizer_files(source_dir, out)
