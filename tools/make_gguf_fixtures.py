#!/usr/bin/env python
"""Generate the small GGUF fixtures in tests/data/ from a fixed seed.

They are written with the `gguf` package's writer (an independent producer, not ours), so reader
tests check pyquant against files it did not write itself:

  all_types.gguf    every scalar value type, arrays of each, string arrays, nested arrays,
                    unicode, extreme integers; tensors of 1, 2 and 3 dims in float, integer,
                    legacy, k-quant and i-quant types (random block bytes: the container does not
                    care what they decode to)
  align64.gguf      general.alignment = 64 with tensor sizes that need padding
  v2.gguf           all_types.gguf with the version field set to 2 (v2 and v3 share the layout)
  no_tensors.gguf   metadata only (like a vocab-only file)

Usage: python tools/make_gguf_fixtures.py [outdir]   (default tests/data)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SEED = 20250101


def _quant_bytes(rng, gguf, qtype_name: str, shape) -> tuple[np.ndarray, tuple[int, ...]]:
    qt = gguf.GGMLQuantizationType[qtype_name]
    block, size = gguf.GGML_QUANT_SIZES[qt]
    row = shape[-1] // block * size
    data = rng.integers(0, 256, size=(*shape[:-1], row), dtype=np.uint8)
    return data, qt


def make_all_types(path: Path, rng) -> None:
    import gguf

    V = gguf.GGUFValueType
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_key_value("test.u8", 255, V.UINT8)
    w.add_key_value("test.i8", -128, V.INT8)
    w.add_key_value("test.u16", 65535, V.UINT16)
    w.add_key_value("test.i16", -32768, V.INT16)
    w.add_key_value("test.u32", 4294967295, V.UINT32)
    w.add_key_value("test.i32", -2147483648, V.INT32)
    w.add_key_value("test.f32", 3.5, V.FLOAT32)
    w.add_key_value("test.bool_true", True, V.BOOL)
    w.add_key_value("test.bool_false", False, V.BOOL)
    w.add_key_value("test.string", "héllo wörld ✓ 🦙", V.STRING)
    w.add_key_value("test.empty_string", "", V.STRING)
    w.add_key_value("test.u64", 2**64 - 1, V.UINT64)
    w.add_key_value("test.i64", -(2**63), V.INT64)
    w.add_key_value("test.f64", -1.0e300, V.FLOAT64)
    numeric = {
        V.UINT8: [0, 1, 255], V.INT8: [-128, 0, 127], V.UINT16: [0, 65535],
        V.INT16: [-32768, 32767], V.UINT32: [0, 4294967295], V.INT32: [-5, 7, 2**31 - 1],
        V.FLOAT32: [0.5, -2.25, 1e30], V.BOOL: [True, False, True], V.UINT64: [2**64 - 1, 0],
        V.INT64: [-(2**63), 2**63 - 1], V.FLOAT64: [1e-300, -0.0, 2.5],
    }
    for vt, values in numeric.items():
        w.add_key_value(f"test.array.{vt.name.lower()}", values, V.ARRAY, sub_type=vt)
    w.add_key_value("test.array.string", ["a", "", "ü✓", "<|endoftext|>", "Ġ t"], V.ARRAY,
                    sub_type=V.STRING)
    w.add_key_value("test.array.random_i32", rng.integers(-1000, 1000, 100).tolist(), V.ARRAY,
                    sub_type=V.INT32)
    w.add_key_value("test.array.nested_i32", [[1, 2, 3], [4], [5, 6]], V.ARRAY)
    w.add_key_value("test.array.nested_string", [["x", "yz"], ["ü"]], V.ARRAY)
    w.add_key_value("test.array.nested2", [[[1, 2], [3]], [[4]]], V.ARRAY)
    w.add_uint32("llama.context_length", 256)
    w.add_uint32("llama.embedding_length", 64)
    w.add_uint32("llama.block_count", 1)
    w.add_uint32("llama.attention.head_count", 4)
    w.add_uint32("llama.attention.head_count_kv", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_uint32("general.file_type", 2)

    w.add_tensor("norm.weight", rng.standard_normal(64).astype(np.float32))
    w.add_tensor("f16.weight", rng.standard_normal((5, 64)).astype(np.float16))
    w.add_tensor("bf16.weight", rng.integers(0, 2**16, (3, 64), dtype=np.uint16),
                 raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.add_tensor("ids", rng.integers(-9, 9, 7, dtype=np.int32))
    for name, qname, shape in [("q4_0.weight", "Q4_0", (8, 64)), ("q8_0.3d", "Q8_0", (2, 3, 32)),
                               ("q4_k.weight", "Q4_K", (4, 256)), ("q6_k.weight", "Q6_K", (2, 256)),
                               ("iq4_nl.weight", "IQ4_NL", (3, 32)), ("q5_1.1d", "Q5_1", (96,))]:
        data, qt = _quant_bytes(rng, gguf, qname, shape)
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qt)
    _finish(w)


def make_align64(path: Path, rng) -> None:
    import gguf

    w = gguf.GGUFWriter(path, arch="llama")
    w.add_custom_alignment(64)
    w.add_string("general.name", "alignment test")
    for i, n in enumerate([3, 17, 64, 5]):
        w.add_tensor(f"t{i}", rng.standard_normal(n).astype(np.float32))
    data, qt = _quant_bytes(rng, gguf, "Q4_1", (3, 32))
    w.add_tensor("q", data, raw_shape=data.shape, raw_dtype=qt)
    _finish(w)


def make_no_tensors(path: Path, rng) -> None:
    import gguf

    w = gguf.GGUFWriter(path, arch="llama")
    w.add_key_value("tokenizer.ggml.tokens", [f"tok{i}" for i in range(20)],
                    gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING)
    w.add_key_value("tokenizer.ggml.scores", rng.standard_normal(20).astype(float).tolist(),
                    gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    _finish(w)


def _finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    make_all_types(outdir / "all_types.gguf", rng)
    make_align64(outdir / "align64.gguf", rng)
    make_no_tensors(outdir / "no_tensors.gguf", rng)
    v2 = bytearray((outdir / "all_types.gguf").read_bytes())
    v2[4:8] = (2).to_bytes(4, "little")
    (outdir / "v2.gguf").write_bytes(bytes(v2))
    for p in sorted(outdir.glob("*.gguf")):
        print(f"{p}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests" / "data")
