"""Random GGUF block bytes for kernel tests: raw (every bit pattern, NaN / inf scales included) for
bit-exact decode checks, or with the f16 scale fields replaced by small normal values so that
matmul results are finite and comparable to float64."""
from __future__ import annotations

import numpy as np

# byte offsets of the f16 scale fields inside one block, and (block size, bytes per block)
SCALE_FIELDS = {
    "Q4_0": ((0,), 32, 18), "Q4_1": ((0, 2), 32, 20), "Q5_0": ((0,), 32, 22), "Q5_1": ((0, 2), 32, 24),
    "Q8_0": ((0,), 32, 34), "Q2_K": ((80, 82), 256, 84), "Q3_K": ((108,), 256, 110),
    "Q4_K": ((0, 2), 256, 144), "Q5_K": ((0, 2), 256, 176), "Q6_K": ((208,), 256, 210),
    "IQ4_NL": ((0,), 32, 18), "IQ4_XS": ((0,), 256, 136),
}
TYPES = tuple(SCALE_FIELDS)


def raw_blocks(rng, name, rows, cols):
    _, qk, ts = SCALE_FIELDS[name]
    return rng.integers(0, 256, size=(rows, cols // qk * ts), dtype=np.uint8)


def sane_blocks(rng, name, rows, cols, scale=0.01):
    """Random quants with finite, normal f16 scales in [scale/4, scale] (signs random for mins)."""
    fields, qk, ts = SCALE_FIELDS[name]
    raw = raw_blocks(rng, name, rows, cols)
    blocks = raw.reshape(rows, cols // qk, ts)
    for i, off in enumerate(fields):
        v = rng.uniform(scale / 4, scale, size=blocks.shape[:2])
        if i == 1 and name in ("Q4_1", "Q5_1"):  # the additive min may be negative
            v = v * rng.choice([-1.0, 1.0], size=v.shape)
        h = v.astype(np.float16).view(np.uint8).reshape(*v.shape, 2)
        blocks[:, :, off:off + 2] = h
    return blocks.reshape(rows, -1)


def bound(x64, w64, out_dtype):
    """Per-output error bound for y = x @ w.T computed with w (and x) rounded to out_dtype's mantissa,
    fp32 accumulation and a final rounding to out_dtype: u * sum|x||w| * 2 + u * |y| + fp32 slack."""
    u = {"float32": 2.0 ** -23, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}[out_dtype]
    s = np.abs(x64) @ np.abs(w64).T
    y = x64 @ w64.T
    # 2u per product: the weight rounding (RNE on GPU; the interpreter truncates bf16 -> 2u)
    return 2 * u * s + u * np.abs(y) + 1e-6 * s + 1e-30
