"""QTensor: a quantized weight matrix -- packed bytes + format + logical shape (out, in).

A plain class holding plain tensors (not a torch.Tensor subclass): the kernels take raw packed
buffers, and nn.Module buffers / state_dict / torch.compile all handle plain tensors without
surprises. Layouts by format (`qtype`):

- ggml types (Q4_0 .. Q6_K, IQ*, F16, BF16, F32): data uint8 [rows, row_bytes(qtype, in)], the bytes
  exactly as in a GGUF file (shape may be N-D for non-matmul tensors; rows = prod(shape[:-1]));
- INT4: data uint8 [N, K/2] + scales, mins float32 [N, K/group_size] (pyquant.formats.generic);
- INT8: data int8 [N, K] + scales float32 [N];
- EXL2: data uint8 [N, row_bytes] + block_bits uint8 [K/32]: each row a run of 32-blocks of the
  given widths (2..8 bits, d * (q - 2^(b-1))), the layout of pyquant/formats/exl2/native.py, read
  by the CPU kernels in place; every other device gets the exact single-type repack (`to`).

A Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q6_K / Q8_0 / INT4 / EXL2 weight may be stored row-interleaved
(`interleave=8`: rows permuted within groups of 8, pyquant/kernels/cpu/interleave.py), the layout
the CPU's small-M kernels read fastest; the
runner packs its weights so at load time. Only the CPU kernels read it as is: every other use
(dequantize, slicing, device moves) goes through `plain()`.

Any format may carry `in_perm` (int64 [K]): the weight's input channels are stored permuted
(EXL2's act-order), column j holding input channel in_perm[j]; every matmul gathers x's columns
once, and dequantize() returns the weight in the original channel order.
"""
from __future__ import annotations

import math

import torch

from . import qtypes
from .errors import UnsupportedQTypeError
from .formats import generic
from .qtypes import QType

_FLOAT_TYPES = {QType.F32: torch.float32, QType.F16: torch.float16, QType.BF16: torch.bfloat16}


class QTensor:
    """Quantized weight. `shape` is the logical torch shape, (out_features, in_features) for a matmul.

    data: packed tensor (layout per format, see module docstring); qtype: QType / id / name;
    scales, mins, group_size: only for INT4 (all three) and INT8 (scales); block_bits: only for EXL2.
    """

    __slots__ = ("data", "qtype", "shape", "scales", "mins", "group_size", "in_perm", "interleave", "block_bits",
                 "_kernel")

    def __init__(self, data: torch.Tensor, qtype, shape, scales=None, mins=None, group_size=None, in_perm=None,
                 interleave: int = 0, block_bits=None):
        self.qtype = qtypes.qtype(qtype)
        self.block_bits = block_bits
        self.interleave = int(interleave)
        self.shape = tuple(int(s) for s in shape)
        self.data, self.scales, self.mins = data, scales, mins
        self.group_size = None if group_size is None else int(group_size)
        self.in_perm = in_perm
        self._kernel = ...  # linear_into's (_C function, weight arguments), built on first use
        self._validate()

    def _validate(self) -> None:
        qt, shape, name = self.qtype, self.shape, self.qtype.name
        if not shape or any(s < 0 for s in shape):
            raise UnsupportedQTypeError(f"QTensor {name}: bad shape {shape}")
        if qt is QType.INT4:
            n, k = self._nk()
            generic.check_int4_shape(n, k, self.group_size or 0)
            want = {"data": (self.data, (n, k // 2), torch.uint8),
                    "scales": (self.scales, (n, k // self.group_size), torch.float32),
                    "mins": (self.mins, (n, k // self.group_size), torch.float32)}
        elif qt is QType.INT8:
            n, k = self._nk()
            want = {"data": (self.data, (n, k), torch.int8), "scales": (self.scales, (n,), torch.float32)}
        elif qt is QType.EXL2:
            from .formats.exl2 import native

            n, k = self._nk()
            bb = self.block_bits
            if k % 32 or not isinstance(bb, torch.Tensor) or bb.dtype != torch.uint8 or tuple(bb.shape) != (k // 32,):
                got = f"{bb.dtype} {tuple(bb.shape)}" if isinstance(bb, torch.Tensor) else repr(type(bb).__name__)
                raise UnsupportedQTypeError(f"QTensor EXL2 {shape}: block_bits must be uint8 [{k // 32}] (in "
                                            f"features a multiple of 32), got {got}")
            bad = sorted(set(bb.tolist()) - set(native.BITS))
            if bad:
                raise UnsupportedQTypeError(f"QTensor EXL2 {shape}: block_bits holds widths {bad} (allowed: "
                                            f"{', '.join(map(str, native.BITS))})")
            want = {"data": (self.data, (n, native.row_bytes(bb)), torch.uint8)}
        else:
            info = qtypes.info(qt)
            if info.kind in (qtypes.Kind.INTEGER,) or info.activation_only:
                raise UnsupportedQTypeError(f"QTensor: {name} is not a weight format")
            rows = math.prod(shape[:-1])
            want = {"data": (self.data, (rows, qtypes.row_bytes(qt, shape[-1])), torch.uint8)}
        if self.block_bits is not None and qt is not QType.EXL2:
            raise UnsupportedQTypeError(f"QTensor {name} {shape}: block_bits is EXL2's (this is {name})")
        if self.in_perm is not None:
            k = shape[-1]
            want["in_perm"] = (self.in_perm, (k,), torch.int64)
            p = self.in_perm
            if isinstance(p, torch.Tensor) and p.shape == (k,) and p.dtype == torch.int64 and k and (
                    int(p.min()) < 0 or int(p.max()) >= k or int(torch.bincount(p, minlength=k).max()) != 1):
                raise UnsupportedQTypeError(f"QTensor {name} {shape}: in_perm is not a permutation of 0..{k - 1}")
        for field, (t, shp, dt) in want.items():
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shp or t.dtype != dt:
                got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else repr(type(t).__name__)
                raise UnsupportedQTypeError(
                    f"QTensor {name} {shape}: {field} must be {dt} {shp}, got {got}")
        if self.interleave:
            from .kernels.cpu import interleave as il

            if self.interleave != 8 or not il.supports(qt, shape):
                raise UnsupportedQTypeError(
                    f"QTensor {name} {shape}: interleave={self.interleave} needs 8, {il.NAMES} and "
                    f"(out, in) with out % 8 == 0")

    def _nk(self) -> tuple[int, int]:
        if len(self.shape) != 2:
            raise UnsupportedQTypeError(f"QTensor {self.qtype.name}: shape must be (out, in), got {self.shape}")
        return self.shape

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, tensor) -> "QTensor":
        """From a pyquant.formats.gguf.GGUFTensor, sharing the file's mmap (no copy)."""
        data = tensor.bytes()
        rows = math.prod(tensor.shape[:-1]) if len(tensor.shape) > 1 else 1
        return cls(data.reshape(rows, -1), tensor.qtype, tuple(tensor.shape))

    @classmethod
    def quantize(cls, w: torch.Tensor, qtype, group_size: int = 128) -> "QTensor":
        """Quantize a float weight w [out, in] (any float dtype) to `qtype`.

        INT4 (group_size 32/64/128) and INT8 are packed here (pyquant.formats.generic, on w's
        device); F32/F16/BF16 are cast; ggml quant types go through pyquant.quantize (CPU).
        """
        qt = qtypes.qtype(qtype)
        if w.dim() != 2:
            raise UnsupportedQTypeError(f"QTensor.quantize: weight must be 2-D [out, in], got {tuple(w.shape)}")
        shape = tuple(w.shape)
        if qt is QType.INT4:
            p = generic.pack_int4(w, group_size)
            return cls(p.qweight, qt, shape, p.scales, p.mins, p.group_size)
        if qt is QType.INT8:
            p = generic.pack_int8(w)
            return cls(p.qweight, qt, shape, p.scales)
        if qt is QType.EXL2:
            raise UnsupportedQTypeError("QTensor.quantize: EXL2 weights come from an EXL2 directory "
                                        "(pyquant.load) or from `pyquant exl2` (its GPTQ needs calibration)")
        if qt in _FLOAT_TYPES:
            data = w.detach().to(_FLOAT_TYPES[qt]).contiguous().view(torch.uint8)
            return cls(data.reshape(shape[0], -1).clone(), qt, shape)
        from .quantization import quantize as quantize_ggml

        data = quantize_ggml(w.detach().to("cpu", torch.float32).contiguous(), qt)
        return cls(data.reshape(shape[0], -1), qt, shape)

    @classmethod
    def from_int4(cls, stored: generic.Int4Stored) -> "QTensor":
        """From int4 "as stored" (q codes, scales, zeros; e.g. an AWQ reader's output): repacks."""
        p = generic.repack_int4(stored)
        n, k = stored.q.shape
        return cls(p.qweight, QType.INT4, (n, k), p.scales, p.mins, p.group_size)

    # ---- properties ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def out_features(self) -> int:
        return math.prod(self.shape[:-1])

    @property
    def in_features(self) -> int:
        return self.shape[-1]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor the kernels read (packed codes + scales + mins)."""
        return sum(t.nbytes for t in self.tensors().values())

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.numel if self.numel else 0.0

    def plain(self) -> "QTensor":
        """This weight with its rows stored one after another (self unless interleaved: then a copy)."""
        if not self.interleave:
            return self
        from .kernels.cpu.interleave import convert

        data, scales, mins = convert(self, to_interleaved=False)
        return QTensor(data, self.qtype, self.shape, scales, mins, self.group_size, self.in_perm,
                       block_bits=self.block_bits)

    def interleaved(self) -> "QTensor":
        """This weight in the row-interleaved layout (a copy; self when it already is one)."""
        if self.interleave:
            return self
        from .kernels.cpu.interleave import NAMES, convert, supports

        if not supports(self.qtype, self.shape):
            raise UnsupportedQTypeError(f"QTensor {self.qtype.name} {self.shape}: no row-interleaved layout "
                                        f"({NAMES} with out % 8 == 0)")
        data, scales, mins = convert(self, to_interleaved=True)
        return QTensor(data, self.qtype, self.shape, scales, mins, self.group_size, self.in_perm, interleave=8,
                       block_bits=self.block_bits)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The packed tensors by name ("qweight", "scales", "mins", "in_perm", "block_bits"), e.g. to
        register as buffers."""
        out = {"qweight": self.data}
        if self.scales is not None:
            out["scales"] = self.scales
        if self.mins is not None:
            out["mins"] = self.mins
        if self.in_perm is not None:
            out["in_perm"] = self.in_perm
        if self.block_bits is not None:
            out["block_bits"] = self.block_bits
        return out

    def __getstate__(self):
        # the cached _C.Weight points into this object's buffers: a copy or an unpickled QTensor
        # (copy.deepcopy, torch.save) binds its own on first use
        return {s: getattr(self, s) for s in self.__slots__ if s != "_kernel"}

    def __setstate__(self, state):
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_kernel", ...)

    def __setattr__(self, name, value):
        if name in ("data", "scales", "mins", "shape", "qtype", "group_size", "in_perm", "interleave", "block_bits"):
            object.__setattr__(self, "_kernel", ...)  # the cached _C.Weight would describe the old tensors
        object.__setattr__(self, name, value)

    @property
    def cpu_call(self):
        """This weight's _C.Weight (format, shape and buffers, validated once) for
        pyquant.kernels.cpu.matmul.linear_into and the C++ token step, or None when it takes the
        fallback path; built once."""
        key = self._storage_key()
        if self._kernel is ... or self._kernel[0] != key:
            # first use, or a tensor's storage changed in place (qt.data.set_(...), resize_): the
            # old Weight would still read the old storage
            from .kernels.cpu.matmul import cpu_call_for

            object.__setattr__(self, "_kernel", (key, cpu_call_for(self)))
        return self._kernel[1]

    def _storage_key(self) -> tuple:
        return tuple((t.data_ptr(), t.nbytes) if t is not None else None
                     for t in (self.data, self.scales, self.mins, self.block_bits))

    # ---- conversions --------------------------------------------------------------------------
    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Dense weight of `shape` in `dtype`, on this QTensor's device (input channels in their
        original order when the weight stores them permuted)."""
        w = self.plain()._dequantize_stored(dtype)
        if self.in_perm is None:
            return w
        out = torch.empty_like(w)
        out[..., self.in_perm] = w
        return out

    def _dequantize_stored(self, dtype):
        if self.qtype is QType.INT4:
            from .kernels.reference.matmul import dequantize_int4

            return dequantize_int4(self.data, self.scales, self.mins, self.group_size, dtype)
        if self.qtype is QType.INT8:
            from .kernels.reference.matmul import dequantize_int8

            return dequantize_int8(self.data, self.scales, dtype)
        if self.qtype is QType.EXL2:
            from .formats.exl2.native import dequantize

            return dequantize(self.data, self.block_bits, dtype)
        from .ops import dequantize_op

        k = self.shape[-1]
        return dequantize_op(self.data, int(self.qtype), self.out_features, k, dtype).reshape(self.shape)

    # ---- slicing (tensor parallelism: pyquant/parallel/) ---------------------------------------
    @property
    def column_block(self) -> int:
        """The fewest input columns that can be cut out of this format's rows: a ggml block (32, a
        K-quant super-block 256), an int4 group, 1 for int8 and float weights."""
        if self.qtype is QType.INT4:
            return max(self.group_size, 32)
        if self.qtype is QType.INT8:
            return 1
        return qtypes.info(self.qtype).block_size   # EXL2: 32

    def take_rows(self, rows) -> "QTensor":
        """Output rows `rows` (a range: views of the same bytes; or an index tensor: a copy). Exact in
        every format: a row carries its own blocks, scales and mins."""
        if self.interleave:
            return self.plain().take_rows(rows)
        n, k = self._nk()
        if isinstance(rows, range):
            if rows.step != 1 or not 0 <= rows.start <= rows.stop <= n:
                raise UnsupportedQTypeError(f"QTensor {self.shape}: rows {rows} out of [0, {n})")
            pick = lambda t: t[rows.start:rows.stop]   # noqa: E731
            count = len(rows)
        else:
            index = torch.as_tensor(rows, dtype=torch.int64)
            pick = lambda t: t.index_select(0, index)   # noqa: E731
            count = index.numel()
        opt = lambda t: None if t is None else pick(t)   # noqa: E731
        return QTensor(pick(self.data), self.qtype, (count, k), opt(self.scales), opt(self.mins),
                       self.group_size, self.in_perm, block_bits=self.block_bits)

    def take_columns(self, k0: int, k1: int) -> "QTensor":
        """Stored input columns [k0, k1) as a new contiguous QTensor. Both ends must fall on
        `column_block` boundaries: a cut inside a block would split codes from their scale. The
        slice has no in_perm: its columns read input channels in_perm[k0:k1] of the full weight,
        which the caller maps to its own input (pyquant/parallel/shard.py)."""
        if self.interleave:
            return self.plain().take_columns(k0, k1)
        n, k = self._nk()
        blk = self.column_block
        if not (0 <= k0 < k1 <= k) or k0 % blk or k1 % blk:
            raise UnsupportedQTypeError(
                f"QTensor {self.qtype.name} {self.shape}: columns [{k0}, {k1}) do not fall on its "
                f"{blk}-column block boundaries")
        if self.qtype is QType.INT4:
            g = self.group_size
            data = self.data[:, k0 // 2:k1 // 2]
            extra = dict(scales=self.scales[:, k0 // g:k1 // g].contiguous(),
                         mins=self.mins[:, k0 // g:k1 // g].contiguous(), group_size=g)
        elif self.qtype is QType.INT8:
            data, extra = self.data[:, k0:k1], dict(scales=self.scales)
        elif self.qtype is QType.EXL2:
            from .formats.exl2.native import block_offsets

            off = block_offsets(self.block_bits)
            data = self.data[:, int(off[k0 // 32]):int(off[k1 // 32])]
            extra = dict(block_bits=self.block_bits[k0 // 32:k1 // 32].clone())
        else:
            per = qtypes.row_bytes(self.qtype, blk)
            data, extra = self.data[:, k0 // blk * per:k1 // blk * per], {}
        return QTensor(data.contiguous(), self.qtype, (n, k1 - k0), **extra)

    def to(self, device) -> "QTensor":
        """A QTensor on `device` (self when already there). Only the device changes, never the format."""
        device = torch.device(device)
        if device == self.device:
            return self
        if self.interleave:   # a CPU kernels' layout: other devices get plain rows
            return self.plain().to(device)
        if self.qtype is QType.EXL2 and not _reads_exl2_widths(device.type):
            return self.single_type().to(device)
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return QTensor(mv(self.data), self.qtype, self.shape, mv(self.scales), mv(self.mins), self.group_size,
                       mv(self.in_perm), block_bits=mv(self.block_bits))

    def single_type(self) -> "QTensor":
        """An EXL2 weight as the one ggml type that holds all its blocks exactly (<= 4 bits Q4_0,
        5 Q5_0, 6 and 8 Q8_0: pyquant/formats/exl2/native.py), which every backend has kernels for
        (`to` gives it to a device whose backends have no kernel for the mixed widths); self for any
        other format."""
        if self.qtype is not QType.EXL2:
            return self
        from .formats.exl2.native import to_single_type

        data, qt = to_single_type(self.plain().data, self.block_bits)
        return QTensor(data, qt, self.shape, in_perm=self.in_perm)

    def __repr__(self) -> str:
        g = f", group_size={self.group_size}" if self.group_size else ""
        g += ", act-order" if self.in_perm is not None else ""
        g += ", rows interleaved by 8" if self.interleave else ""
        return (f"QTensor({self.qtype.name}, shape={self.shape}{g}, {self.bits_per_weight:.2f} bpw, "
                f"{self.nbytes / 2**20:.2f} MiB, device={self.device})")


def _reads_exl2_widths(device_type: str) -> bool:
    """Whether a kernel backend of this device type (not the dequantizing reference) runs EXL2 in its
    own widths: the CPU's, and CUDA's or Triton's on a GPU."""
    from . import dispatch

    try:
        return dispatch.choose("exl2_matmul", QType.EXL2, device_type, 1).name != "reference"
    except UnsupportedQTypeError:
        return False
