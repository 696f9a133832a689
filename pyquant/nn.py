"""QuantLinear: an nn.Linear whose weight stays quantized, and quantize_model() to swap them in.

The packed tensors are registered as buffers ("qweight", plus "scales"/"mins" for int4, "scales" for
int8, "block_bits" for EXL2, "in_perm" for act-order weights), so `state_dict()`, `load_state_dict(assign=True)` and `.to()` see plain tensors; the format
(qtype, shape, group_size) is construction-time metadata. `module.qweight_tensor` rebuilds the
QTensor view of the current buffers.

On the CPU the buffers of a Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q6_K / Q8_0 / int4 weight with a multiple of 8
rows hold the row-interleaved layout the CPU's small-M kernels read fastest (the runner's layout,
pyquant/kernels/cpu/interleave.py: same bytes permuted within groups of 8 rows; a forward at M = 1,
4096 x 14336, 1.14-1.41x faster than on plain rows, bench/bench_quantlinear.py): `module.interleave`
is then 8. `state_dict()` still writes plain rows and
`load_state_dict` takes plain rows, so checkpoints do not depend on it; moving the module off the CPU
turns the buffers back into plain rows (the other devices' kernels read those), moving it back
interleaves them again. `QuantLinear(qt, interleave=False)` keeps plain rows.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from . import qtypes
from .errors import UnsupportedQTypeError
from .ops import exl2_matmul, gguf_matmul, int4_matmul, int8_matmul, qmatmul
from .qtensor import QTensor
from .qtypes import QType


class QuantLinear(nn.Module):
    """y = x @ W.T + bias with W a QTensor (out_features, in_features).

    x: float32 / float16 / bfloat16 [..., in_features] -> [..., out_features] in x's dtype.
    bias: float tensor [out_features] or None (kept in its own dtype; added in fp32).
    """

    def __init__(self, qt: QTensor, bias: torch.Tensor | None = None, interleave: bool = True):
        super().__init__()
        if len(qt.shape) != 2:
            raise UnsupportedQTypeError(f"QuantLinear: weight must be 2-D (out, in), got {qt.shape}")
        self.qtype: QType = qt.qtype
        self.out_features, self.in_features = qt.shape
        self.group_size = qt.group_size
        self.prefer_interleave = bool(interleave)   # on the CPU (see the module docstring)
        qt = qt.plain()
        if self._wants_interleave(qt.data.device):
            qt = qt.interleaved()
        self.interleave = qt.interleave
        for name, t in qt.tensors().items():
            self.register_buffer(name, t)
        if bias is not None:
            if tuple(bias.shape) != (self.out_features,):
                raise UnsupportedQTypeError(
                    f"QuantLinear: bias shape {tuple(bias.shape)} != ({self.out_features},)")
            bias = nn.Parameter(bias.detach(), requires_grad=False)
        self.bias = bias

    def _wants_interleave(self, device: torch.device) -> bool:
        from .kernels.cpu import interleave as il

        return (self.prefer_interleave and device.type == "cpu"
                and il.supports(self.qtype, (self.out_features, self.in_features)))

    _LAYOUT = ("qweight", "scales", "mins")   # the buffers the row-interleaved layout permutes

    def _set_layout(self, interleave: int) -> None:
        """Rewrite the weight buffers in the row-interleaved (8) or plain (0) layout, on their device."""
        if interleave == self.interleave:
            return
        qt = self.qweight_tensor
        qt = qt.interleaved() if interleave else qt.plain()
        for name, t in qt.tensors().items():
            if name in self._LAYOUT:
                self._buffers[name] = t
        self.interleave = qt.interleave

    def _layout_for_device(self) -> None:
        """The row-interleaved layout where the buffers are on the CPU (the CPU kernels'), plain rows
        anywhere else."""
        self._set_layout(8 if self._wants_interleave(self.qweight.device) else 0)

    def _apply(self, fn, recurse=True):
        # model.to(torch.bfloat16) / .half() cast every float buffer; the format's scales and mins
        # must stay float32 (the kernels' contract, and a bf16 round-trip would lose precision), so
        # they follow device moves only.
        keep = {n: self._buffers[n] for n in ("scales", "mins") if self._buffers.get(n) is not None}
        super()._apply(fn, recurse)
        for n, old in keep.items():
            new = self._buffers[n]
            if new.dtype != old.dtype:
                self._buffers[n] = old.to(new.device)
        self._layout_for_device()
        return self

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.interleave:   # checkpoints hold plain rows
            for name, t in self.qweight_tensor.plain().tensors().items():
                if name in self._LAYOUT:
                    destination[prefix + name] = t
        return destination

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # a checkpoint's plain rows, loaded (or assigned) into plain buffers, then laid out for the
        # device they are on (a module built on "meta" and assigned CPU tensors gets interleaved here)
        self._set_layout(0)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self._layout_for_device()

    @classmethod
    def from_linear(cls, linear: nn.Linear, qtype, group_size: int = 128) -> "QuantLinear":
        """Quantize an nn.Linear's weight to `qtype` (group_size: int4 only); the bias stays float."""
        qt = QTensor.quantize(linear.weight.detach(), qtype, group_size=group_size)
        return cls(qt, None if linear.bias is None else linear.bias.detach().clone())

    @property
    def qweight_tensor(self) -> QTensor:
        """The weight as a QTensor over the module's current buffers (no copy)."""
        return QTensor(self.qweight, self.qtype, (self.out_features, self.in_features),
                       getattr(self, "scales", None), getattr(self, "mins", None), self.group_size,
                       getattr(self, "in_perm", None), interleave=self.interleave,
                       block_bits=getattr(self, "block_bits", None))

    def _kernel_weight(self) -> QTensor:
        """qweight_tensor, kept while the buffers stay the same tensors (its _C.Weight is bound once);
        load_state_dict(assign=True), .to() and a layout change make new ones."""
        b = self._buffers   # (not the module's __getattr__: ~0.5 us each)
        key = tuple(0 if t is None else t.data_ptr() for t in (b["qweight"], b.get("scales"), b.get("mins"),
                                                                b.get("in_perm"), b.get("block_bits"))) + (self.interleave,)
        cached = self.__dict__.get("_kernel_qt")
        if cached is None or cached[0] != key:
            cached = (key, self.qweight_tensor)
            self.__dict__["_kernel_qt"] = cached
        return cached[1]

    def __getstate__(self):
        # the bound kernel weight (a _C.Weight) is a cache over the buffers: copies and pickles
        # (copy.deepcopy, torch.save of the module) rebuild it on their first call
        state = self.__dict__.copy()
        state.pop("_kernel_qt", None)
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Eager on the CPU: qmatmul over the weight with its _C.Weight bound once; it calls the kernels
        # directly where nothing needs the op (ops.eager_cpu: ~31 -> ~15 us of Python a call,
        # bench/bench_call_overhead.py) and the op otherwise. Compiling or off the CPU: the op on the
        # buffers themselves (torch.compile traces them, not a cached QTensor).
        if self._buffers["qweight"].device.type == "cpu" and not torch.compiler.is_compiling():
            return qmatmul(x, self._kernel_weight(), self._parameters.get("bias"))
        if getattr(self, "in_perm", None) is not None:   # act-order weight (EXL2): gather x's columns
            x = x.index_select(-1, self.in_perm)
        if self.qtype is QType.INT4:
            return int4_matmul(x, self.qweight, self.scales, self.mins, self.group_size, self.bias, self.interleave)
        if self.qtype is QType.INT8:
            return int8_matmul(x, self.qweight, self.scales, self.bias)
        if self.qtype is QType.EXL2:
            return exl2_matmul(x, self.qweight, self.block_bits, self.bias, self.interleave)
        return gguf_matmul(x, self.qweight, int(self.qtype), self.out_features, self.in_features, self.bias,
                           self.interleave)

    def extra_repr(self) -> str:
        g = f", group_size={self.group_size}" if self.group_size else ""
        il = ", rows interleaved by 8" if self.interleave else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"qtype={self.qtype.name}{g}, bias={self.bias is not None}{il}")


def _compatible(linear: nn.Linear, qt: QType, group_size: int) -> str | None:
    """None if `linear` can be quantized to qt, else why not."""
    k = linear.in_features
    if qt is QType.INT4:
        if group_size not in (32, 64, 128) or k % group_size:
            return f"in_features {k} is not a multiple of group_size {group_size}"
        return None
    if qt is QType.INT8:
        return None
    block = qtypes.info(qt).block_size
    return None if k % block == 0 else f"in_features {k} is not a multiple of {qt.name}'s block size {block}"


def quantize_model(model: nn.Module, qtype, group_size: int = 128,
                   skip: Callable[[str, nn.Linear], bool] | None = None) -> nn.Module:
    """Replace (in place) every nn.Linear of `model` with a QuantLinear of `qtype`; returns model.

    skip(name, linear) -> True keeps that layer in float (e.g. `lambda n, m: n == "lm_head"`).
    Layers whose in_features do not fit the format's block / group size stay float too, with one
    warning listing them. Weights are quantized on their current device (ggml types on CPU).
    """
    qt = qtypes.qtype(qtype)
    kept = []
    for name, linear in [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear and n]:
        if skip is not None and skip(name, linear):
            continue
        why = _compatible(linear, qt, group_size)
        if why:
            kept.append(f"{name} ({why})")
            continue
        q = QuantLinear.from_linear(linear, qt, group_size=group_size)
        q = q.to(linear.weight.device)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, q)
    if kept:
        warnings.warn(f"quantize_model({qt.name}): kept in float: {', '.join(kept)}", stacklevel=2)
    return model
