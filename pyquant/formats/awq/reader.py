"""AWQ-family linears of a model directory -> int4 QTensors in the kernels' layout.

One call per Linear: its tensors are checked against the config's shape (dtype, shape, finite
scales; a forged file raises FormatError naming the tensor), unpacked from the version's layout
(layouts.py) and repacked once into pyquant's int4 layout, which every backend's int4 kernel reads
(CPU, CUDA, Triton): AWQ brings no kernel of its own.
"""
from __future__ import annotations

from ...errors import FormatError
from ..generic import pack_int4_codes
from . import layouts
from .config import AWQConfig

# the tensors each layout stores per Linear, after "<prefix>."
LAYOUT_TENSORS = {
    "gemm": ("qweight", "qzeros", "scales"),
    "gemv": ("qweight", "qzeros", "scales"),
    "gemv_fast": ("qweight", "qzeros", "scales"),
    "pack-quantized": ("weight_packed", "weight_scale"),
}


class AWQLinears:
    """Reads the quantized linears of an AWQ / compressed-tensors directory (tensors: SafetensorsDir)."""

    def __init__(self, tensors, quant: AWQConfig, path, release=None):
        self.tensors, self.quant, self.path = tensors, quant, path
        self.release = release   # drops a file-backed tensor's pages once it has been repacked

    def is_quantized(self, prefix: str) -> bool:
        return f"{prefix}.{LAYOUT_TENSORS[self.quant.version][0]}" in self.tensors

    def group_size(self, k: int) -> int:
        return k if self.quant.group_size == -1 else self.quant.group_size

    def canonical(self, prefix: str, n: int, k: int) -> layouts.Int4Canonical:
        """The Linear `prefix` ([n out, k in]) as codes, scales and mins, in its own group size."""
        q, where = self.quant, layouts.Where(self.path, prefix)
        g = self.group_size(k)
        if k % g:
            where.fail(LAYOUT_TENSORS[q.version][0], f"in_features {k} is not a multiple of group_size {g}")
        if n % 8 and q.version == "gemm":
            where.fail("qweight", f"out_features {n} is not a multiple of 8 (gemm packs 8 columns per word)")
        get = lambda name: self.tensors.get(f"{prefix}.{name}")  # noqa: E731
        if q.version == "gemm":
            return layouts.unpack_gemm(where, n, k, g, get("qweight"), get("qzeros"), get("scales"))
        if q.version == "gemv":
            return layouts.unpack_gemv(where, n, k, g, get("qweight"), get("qzeros"), get("scales"))
        if q.version == "gemv_fast":
            zname = "qzeros" if f"{prefix}.qzeros" in self.tensors else "scaled_zeros"
            return layouts.unpack_gemv_fast(where, n, k, g, get("qweight"), get(zname), get("scales"), zname)
        if q.version == "pack-quantized":
            shape_name = f"{prefix}.weight_shape"
            if shape_name in self.tensors:
                ws = [int(v) for v in self.tensors.get(shape_name).reshape(-1).tolist()]
                if ws != [n, k]:
                    where.fail("weight_shape", f"{ws} (expected {[n, k]} from the config)")
            zp = get("weight_zero_point") if f"{prefix}.weight_zero_point" in self.tensors else None
            if q.zero_point and zp is None:
                where.fail("weight_zero_point", "missing (the config says asymmetric)")
            return layouts.unpack_pack_quantized(where, n, k, g, get("weight_packed"), get("weight_scale"), zp)
        raise FormatError(self.path, f"AWQ version {q.version!r} has no reader")

    def qtensor(self, prefix: str, n: int, k: int):
        from ...qtensor import QTensor
        from ...qtypes import QType

        c = layouts.to_kernel_groups(self.canonical(prefix, n, k), layouts.Where(self.path, prefix))
        if k % 32:
            raise FormatError(self.path, f"tensor '{prefix}': in_features {k} is not a multiple of 32")
        qt = QTensor(pack_int4_codes(c.codes), QType.INT4, (n, k), c.scales, c.mins, c.group_size)
        if self.release is not None:   # the packed tensors were read once: their file pages can go
            for name in LAYOUT_TENSORS[self.quant.version] + ("scaled_zeros", "weight_zero_point"):
                if f"{prefix}.{name}" in self.tensors:
                    self.release(self.tensors.get(f"{prefix}.{name}"))
        return qt
