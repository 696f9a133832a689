"""A Hugging Face style model directory: config.json, safetensors shards, tokenizer files.

Tensors are memory-mapped through the `safetensors` library (never loaded whole, never unpickled):
`.bin` / `.pt` checkpoints are refused. Shards are found from `model.safetensors.index.json` when it
names files that exist, else from every `*.safetensors` file's own header (EXL2 repos ship a stale
index). Each tensor's dtype and shape come from the header before any data is touched.
"""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import FormatError

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

        self._handles, self._where = [], {}
        for f in files:
            try:
                h = safe_open(str(f), framework="pt")
            except Exception as e:   # safetensors raises its own error types for a bad header
                raise FormatError(f, f"not a valid safetensors file: {e}") from None
            self._handles.append(h)
            for name in h.keys():
                if name in self._where:
                    raise FormatError(f, f"tensor '{name}' is also in {self._where[name][1].name}")
                self._where[name] = (h, f)

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
        return self._where[name][1]

    def info(self, name: str) -> tuple[str, tuple[int, ...]]:
        """(safetensors dtype string, shape) from the header, without reading the data."""
        h, _ = self._where[name]
        sl = h.get_slice(name)
        return sl.get_dtype(), tuple(sl.get_shape())

    def get(self, name: str):
        """The tensor (a zero-copy view of the mapped file where the dtype allows)."""
        entry = self._where.get(name)
        if entry is None:
            raise FormatError(self.dir, f"tensor '{name}' is missing")
        try:
            return entry[0].get_tensor(name)
        except Exception as e:
            raise FormatError(entry[1], f"tensor '{name}' cannot be read: {e}") from None

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in {f for _, f in self._where.values()})
