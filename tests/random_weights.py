"""Random *valid* ggml weights for kernel tests, and the float64 oracle they are checked against.

Every bit pattern of a ggml block's quant fields is valid; only the fp16 block scales must be finite
and of a sane size. So a random block = random bytes with its fp16 scale fields overwritten. This
exercises every code (including the extremes a quantizer rarely emits) and needs no quantizer.
The oracle decode is the `gguf` package (llama.cpp's gguf-py), independent of pyquant.
"""
from __future__ import annotations

import numpy as np
import torch

from pyquant import qtypes
from pyquant.qtypes import QType

# byte offsets of the fp16 scale fields inside one block ("d" first, then "dmin"/"m" if any)
FP16_FIELDS = {
    QType.Q4_0: (0,), QType.Q4_1: (0, 2), QType.Q5_0: (0,), QType.Q5_1: (0, 2), QType.Q8_0: (0,),
    QType.Q2_K: (80, 82), QType.Q3_K: (108,), QType.Q4_K: (0, 2), QType.Q5_K: (0, 2), QType.Q6_K: (208,),
    QType.IQ4_NL: (0,), QType.IQ4_XS: (0,), QType.IQ2_XXS: (0,), QType.IQ2_XS: (0,), QType.IQ2_S: (0,),
    QType.IQ3_XXS: (0,), QType.IQ3_S: (0,), QType.IQ1_S: (0,), QType.TQ1_0: (52,), QType.TQ2_0: (64,),
    QType.IQ1_M: (), QType.MXFP4: (), QType.NVFP4: (),
}
FLOAT_TYPES = {QType.F32: np.float32, QType.F16: np.float16, QType.BF16: None}

# the GGUF weight types the CPU engine supports (issue #3)
OTHER_TYPES = [QType.IQ2_XXS, QType.IQ2_XS, QType.IQ2_S, QType.IQ3_XXS, QType.IQ3_S, QType.IQ1_S, QType.IQ1_M,
               QType.TQ1_0, QType.TQ2_0, QType.MXFP4, QType.NVFP4]
ENGINE_TYPES = [QType.Q4_0, QType.Q4_1, QType.Q5_0, QType.Q5_1, QType.Q8_0, QType.Q2_K, QType.Q3_K,
                QType.Q4_K, QType.Q5_K, QType.Q6_K, QType.IQ4_NL, QType.IQ4_XS, QType.F16, QType.BF16,
                QType.F32]


def random_gguf_weight(qt, n: int, k: int, seed: int = 0) -> torch.Tensor:
    """uint8 [n, row_bytes(qt, k)]: random valid blocks whose dequantized values are O(0.1)."""
    qt = qtypes.qtype(qt)
    rng = np.random.default_rng(seed)
    if qt in FLOAT_TYPES:
        w = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32) * 0.1)
        dt = {QType.F32: torch.float32, QType.F16: torch.float16, QType.BF16: torch.bfloat16}[qt]
        return w.to(dt).view(torch.uint8).reshape(n, -1).clone()
    info = qtypes.info(qt)
    nb = n * k // info.block_size
    blocks = rng.integers(0, 256, size=(nb, info.type_size), dtype=np.uint8)
    # d: both signs (kernels must not assume d > 0); dmin / m positive as quantizers emit.
    # K-quant sub-scales multiply d by up to 63, legacy codes by up to 16: keep products ~0.1.
    dmax = 0.1 / (63 * 16) if info.kind is qtypes.Kind.KQUANT else 0.1 / 16
    for i, off in enumerate(FP16_FIELDS[qt]):
        vals = rng.uniform(0.2, 1.0, nb) * dmax
        if i == 0:
            vals *= rng.choice([-1.0, 1.0], nb)
        blocks[:, off:off + 2] = vals.astype(np.float16).view(np.uint8).reshape(nb, 2)
    if qt is QType.IQ1_M:  # fp16 d spread over the top nibbles of the four u16 scales (bytes 49, 51, 53, 55)
        bits = (rng.uniform(0.2, 1.0, nb) * dmax).astype(np.float16).view(np.uint16).astype(np.int64)
        for i in range(4):
            top = ((bits >> (4 * i)) & 0xF).astype(np.uint8)
            blocks[:, 49 + 2 * i] = (blocks[:, 49 + 2 * i] & 0x0F) | (top << 4)
    elif qt is QType.MXFP4:  # e8m0 shared exponent: 2^(e-127), keep values ~0.1 (e2m1 codes reach 6)
        blocks[:, 0] = rng.integers(120, 124, nb)
    elif qt is QType.NVFP4:  # four ue4m3 sub-block scales; exponent field 1..4 keeps values < 1
        blocks[:, 0:4] = (rng.integers(1, 5, (nb, 4)) << 3 | rng.integers(0, 8, (nb, 4))).astype(np.uint8)
    return torch.from_numpy(blocks.reshape(n, -1))


def oracle_dequantize(data: torch.Tensor, qt, n: int, k: int) -> torch.Tensor:
    """float64 [n, k] decoded by the gguf package (external oracle)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    qt = qtypes.qtype(qt)
    raw = data.contiguous().cpu().numpy().reshape(n, -1)
    w = dequantize(raw, GGMLQuantizationType(int(qt)))
    return torch.from_numpy(np.asarray(w, dtype=np.float64).reshape(n, k))


def fp32_matmul_bound(x64: torch.Tensor, w64: torch.Tensor, out_dtype: torch.dtype, b64=None) -> torch.Tensor:
    """Error bound [M, N] of an fp32-accumulated x @ w.T (+ b) rounded to out_dtype.

    Deterministic worst case of recursive fp32 summation: gamma_K * (|x| @ |w|.T + |b|), gamma_K ~
    K * 2^-24 (times 2 for the product rounding), plus the final rounding to out_dtype (half an ulp,
    relative; fp16's subnormals add an absolute 2^-25).
    """
    k = x64.shape[-1]
    mag = x64.abs() @ w64.abs().T
    y = x64 @ w64.T
    if b64 is not None:
        mag, y = mag + b64.abs(), y + b64
    out_eps = {torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}[out_dtype]
    return 2 * (k + 3) * 2.0 ** -24 * mag + out_eps * y.abs() * 1.01 + 2.0 ** -25


def int8_activation_bound(x64: torch.Tensor, w64: torch.Tensor, block: int, passes: int = 1) -> torch.Tensor:
    """Extra error [M, N] when x is quantized to int8 per `block` values (llama.cpp's Q8_0 / Q8_K role):
    each element moves by at most d/2 with d = amax(block)/127, so |dy| <= (d/2) @ |W|.T. With two
    passes (int8x2: the residual, |r| <= d/2, on the grid d2 = d/256) the error is <= d2/2, or d2
    where a residual of exactly d/2 clips at 127: bound d/256."""
    m, k = x64.shape
    pad = (-k) % block
    xb = torch.nn.functional.pad(x64.abs(), (0, pad)).reshape(m, -1, block)
    half_step = (xb.amax(dim=-1, keepdim=True) / 127 / 2).expand_as(xb).reshape(m, -1)[:, :k]
    if passes == 2:
        half_step = half_step / 128
    return 1.01 * (half_step @ w64.abs().T)


def cpu_path(qt: QType, m: int) -> str:
    """The kernel path _C takes (its own words), "" before the fused kernels exist."""
    from pyquant._ext import _C

    if not hasattr(_C, "matmul_path"):
        return ""
    kind = {QType.INT4: "int4", QType.INT8: "int8"}.get(qt, "gguf")
    return _C.matmul_path(kind, int(qt), m)


def assert_within_bound(y, x, w64, what, bias=None, path=""):
    """|y - float64 reference| within the bound of the path taken: fp32 accumulation everywhere, plus
    the activation rounding when the path quantizes x to int8 (per 32 or per 256 values)."""
    x64 = x.to(torch.float64).reshape(-1, x.shape[-1])
    y64 = y.to(torch.float64).reshape(-1, w64.shape[0])
    b64 = None if bias is None else bias.to(torch.float64)
    ref = x64 @ w64.T + (0 if b64 is None else b64)
    bound = fp32_matmul_bound(x64, w64, y.dtype, b64)
    if "-int8" in path:   # gemv-int8(x2) / gemm-int8(x2)
        passes = 2 if "-int8x2" in path else 1
        bound = bound + int8_activation_bound(x64, w64, 256 if "per 256" in path else 32, passes)
    what = f"{what} [{path}]" if path else what
    err = (y64 - ref).abs()
    worst = (err / bound).max().item()
    assert worst <= 1.0, f"{what}: error {err.max().item():.3g} exceeds the bound by x{worst:.3g}"
