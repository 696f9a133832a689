"""GGUF container: memory-mapped reader and v3 writer (see reader.py / writer.py)."""
from .constants import DEFAULT_ALIGNMENT, GGUFValueType
from .reader import GGUFField, GGUFReader, GGUFTensor
from .writer import GGUFWriter

__all__ = ["GGUFReader", "GGUFWriter", "GGUFTensor", "GGUFField", "GGUFValueType", "DEFAULT_ALIGNMENT"]
