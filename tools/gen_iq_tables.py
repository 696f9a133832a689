#!/usr/bin/env python3
"""Generate csrc/common/iq_tables.h: the lookup tables of the ggml i-quant formats.

The tables are format constants (facts), not code: the lattice grids of IQ2_XXS/IQ2_XS/IQ2_S,
IQ3_XXS/IQ3_S and IQ1_S/IQ1_M, the 7-bit -> 8-bit even-parity sign table and the IQ4_NL codebook.
llama.cpp defines them in ggml/src/ggml-common.h. We take the values from the `gguf` package (PyPI,
0.19), which carries each grid in `gguf.quants.<TYPE>.grid_hex` packed at 2 or 3 bits per element
(an index into `grid_map`), and unpack them here into ggml's in-memory representation:

  * iq2xxs/iq2xs/iq2s grids: uint64 per entry, byte j = element j, values 0x08 / 0x19 / 0x2b;
  * iq3xxs/iq3s grids:      uint32 per entry, byte j = element j, values from grid_map;
  * iq1s grid:              uint64 per entry, byte j = element j as int8 -1 / 0 / +1.

gguf is a dev-time dependency of this script only; the generated header is committed and pyquant
never imports gguf at run time. The decode tests check every table entry indirectly (bit-exact decode
against gguf.quants.dequantize), and this script checks a few entries against ggml-common.h values.

It also writes pyquant/kernels/reference/iq_tables.py: the same tables for the torch reference.

Usage: python tools/gen_iq_tables.py [--check]   (--check: fail if a committed file is stale)
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from gguf import quants

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "csrc" / "common" / "iq_tables.h"
# The same tables for the plain torch reference decoders (pyquant/kernels/reference/decode_iq.py).
OUT_PY = ROOT / "pyquant" / "kernels" / "reference" / "iq_tables.py"


def unpack_grid(cls) -> np.ndarray:
    """Entries of cls.grid_hex as grid_map indices, shape grid_shape.

    grid_hex is ASCII hex; each decoded byte holds 8 // bits elements, lowest bits first, where
    bits = ceil(log2(len(grid_map))) (2 for 3-value maps, 3 -> stored one per nibble for 8-value maps)."""
    n_values = len(cls.grid_map)
    bits = max(1, (n_values - 1).bit_length())
    per_byte = 8 // bits
    step = 8 // per_byte
    raw = bytes.fromhex(cls.grid_hex.decode("ascii"))
    idx = [(b >> (step * k)) & ((1 << bits) - 1) for b in raw for k in range(per_byte)]
    return np.array(idx, dtype=np.int64).reshape(cls.grid_shape)


def grid_words(cls, as_int8: bool = False) -> list[int]:
    """One little-endian word per grid entry: byte j = grid_map[index of element j]."""
    idx = unpack_grid(cls)
    gmap = [int(v) for v in cls.grid_map]
    words = []
    for row in idx:
        w = 0
        for j, k in enumerate(row):
            w |= (gmap[k] & 0xFF) << (8 * j)
        words.append(w)
    return words


def ksigns_iq2xs() -> list[int]:
    """7 stored sign bits -> 8 sign bits; bit 7 makes the number of minus signs even."""
    table = list(quants.IQ2_XXS.ksigns)
    derived = [i | (0x80 if bin(i).count("1") % 2 else 0) for i in range(128)]
    assert table == derived, "gguf's ksigns differ from the even-parity rule"
    return table


def ksigns64(signs: list[int]) -> list[int]:
    """ksigns_iq2xs expanded to one byte mask (0xff = negate) per element: for SIMD sign application."""
    return [sum((0xFF << (8 * j)) for j in range(8) if (s >> j) & 1) for s in signs]


def fmt_table(ctype: str, name: str, values: list[int], width: int, per_line: int) -> str:
    if width:
        items = [f"0x{v:0{width}x}" for v in values]
    else:
        items = [str(v) for v in values]
    lines = [", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line)]
    body = "\n".join("    " + ln for ln in lines)
    return f"PQ_TABLE {ctype} {name}[{len(values)}] = {{\n{body}\n}};\n"


# A few entries as printed in llama.cpp's ggml-common.h, to catch a wrong unpacking here.
KNOWN = {
    "iq2xxs_grid": {0: 0x0808080808080808, 1: 0x080808080808082B, 255: 0x2B2B2B1908081908},
    "iq2xs_grid": {0: 0x0808080808080808, 7: 0x080808080819192B},
    "iq1s_grid": {0: 0xFFFFFFFFFFFFFFFF},
    "iq3xxs_grid": {0: 0x04040404},
}


def grid_tables() -> dict:
    return {
        "iq2xxs_grid": ("uint64_t", grid_words(quants.IQ2_XXS), 16, 4),
        "iq2xs_grid": ("uint64_t", grid_words(quants.IQ2_XS), 16, 4),
        "iq2s_grid": ("uint64_t", grid_words(quants.IQ2_S), 16, 4),
        "iq3xxs_grid": ("uint32_t", grid_words(quants.IQ3_XXS), 8, 8),
        "iq3s_grid": ("uint32_t", grid_words(quants.IQ3_S), 8, 8),
        "iq1s_grid": ("uint64_t", grid_words(quants.IQ1_S), 16, 4),
    }


def build() -> str:
    signs = ksigns_iq2xs()
    tables = grid_tables()
    for name, known in KNOWN.items():
        for i, v in known.items():
            got = tables[name][1][i]
            assert got == v, f"{name}[{i}] = {got:#x}, ggml-common.h has {v:#x}"
    assert list(quants.IQ4_NL.kvalues) == [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
    assert float(quants.IQ1_S.delta) == 0.125 and quants.IQ1_M.grid_hex == quants.IQ1_S.grid_hex

    out = [
        "// GENERATED by tools/gen_iq_tables.py from the `gguf` package's grid data (0.19); do not edit.\n"
        "// Lookup tables of the ggml i-quant formats (values as in llama.cpp's ggml-common.h).\n"
        "// Grids: one little-endian word per entry, byte j = element j of the entry.\n"
        "#pragma once\n#include <cstdint>\n#include \"common/macros.h\"\n\nnamespace pq {\n\n",
        "// IQ4_NL / IQ4_XS non-linear 4-bit codebook.\n",
        fmt_table("int8_t", "kvalues_iq4nl", list(quants.IQ4_NL.kvalues), 0, 16),
        "\n// IQ1_S / IQ1_M: each value is dl * (grid + delta), delta = +-IQ1S_DELTA.\n",
        "constexpr float IQ1S_DELTA = 0.125f;\n\n",
        "// kmask_iq2xs[j]: the bit of sign-byte element j.\n",
        fmt_table("uint8_t", "kmask_iq2xs", [1 << j for j in range(8)], 0, 8),
        "\n// 7 stored sign bits -> 8 (bit 7 restores even parity); bit j set = element j negative.\n",
        fmt_table("uint8_t", "ksigns_iq2xs", signs, 0, 16),
        "\n// ksigns_iq2xs as byte masks: byte j = 0xff when element j is negative (for SIMD).\n",
        fmt_table("uint64_t", "ksigns64", ksigns64(signs), 16, 4),
    ]
    notes = {
        "iq2xxs_grid": "IQ2_XXS: 256 entries of 8 magnitudes in {8, 25, 43}.",
        "iq2xs_grid": "IQ2_XS: 512 entries of 8 magnitudes in {8, 25, 43}.",
        "iq2s_grid": "IQ2_S: 1024 entries of 8 magnitudes in {8, 25, 43}.",
        "iq3xxs_grid": "IQ3_XXS: 256 entries of 4 magnitudes in {4, 12, ..., 52, 62}.",
        "iq3s_grid": "IQ3_S: 512 entries of 4 magnitudes in {1, 3, ..., 15}.",
        "iq1s_grid": "IQ1_S / IQ1_M: 2048 entries of 8 int8 values in {-1, 0, +1}.",
    }
    for name, (ctype, vals, width, per_line) in tables.items():
        out.append(f"\n// {notes[name]}\n")
        out.append(fmt_table(ctype, name, vals, width, per_line))
    out.append("\n}  // namespace pq\n")
    return "".join(out)


def build_py() -> str:
    """Python module: each table as little-endian bytes in hex (entry-major, byte j = element j)."""
    out = [
        '"""GENERATED by tools/gen_iq_tables.py from the `gguf` package\'s grid data (0.19); do not edit.\n\n'
        "The ggml i-quant lookup tables for the torch reference decoders, identical to\n"
        "csrc/common/iq_tables.h: each grid is `entries x elements` bytes (uint8 magnitudes, or int8\n"
        'for IQ1S_GRID), stored as hex."""\n\n',
        f"KVALUES_IQ4NL = {tuple(quants.IQ4_NL.kvalues)}\n",
        "IQ1S_DELTA = 0.125\n",
        f"KSIGNS_IQ2XS = bytes.fromhex(\n    \"{bytes(ksigns_iq2xs()).hex()}\"\n)\n",
    ]
    for name, (ctype, vals, width, _) in grid_tables().items():
        nbytes = width // 2
        data = b"".join(v.to_bytes(nbytes, "little") for v in vals).hex()
        lines = "\n".join(f'    "{data[i:i + 96]}"' for i in range(0, len(data), 96))
        out.append(f"\n# {name}: {len(vals)} entries x {nbytes} elements\n")
        out.append(f"{name.upper()} = ({len(vals)}, {nbytes}, bytes.fromhex(\n{lines}\n))\n")
    return "".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed header differs")
    args = ap.parse_args()
    stale = 0
    for path, text in ((OUT, build()), (OUT_PY, build_py())):
        if args.check:
            same = path.exists() and path.read_text() == text
            print(f"{path}: {'up to date' if same else 'STALE'}")
            stale += not same
        else:
            path.write_text(text)
            print(f"wrote {path} ({len(text)} bytes)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
