"""QuantLinear: an nn.Linear whose weight stays quantized, and quantize_model() to swap them in.

The packed tensors are registered as buffers ("qweight", plus "scales"/"mins" for int4, "scales" for
int8), so `state_dict()`, `load_state_dict(assign=True)` and `.to()` see plain tensors; the format
(qtype, shape, group_size) is construction-time metadata. `module.qweight_tensor` rebuilds the
QTensor view of the current buffers.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from . import qtypes
from .errors import UnsupportedQTypeError
from .ops import gguf_matmul, int4_matmul, int8_matmul
from .qtensor import QTensor
from .qtypes import QType


class QuantLinear(nn.Module):
    """y = x @ W.T + bias with W a QTensor (out_features, in_features).

    x: float32 / float16 / bfloat16 [..., in_features] -> [..., out_features] in x's dtype.
    bias: float tensor [out_features] or None (kept in its own dtype; added in fp32).
    """

    def __init__(self, qt: QTensor, bias: torch.Tensor | None = None):
        super().__init__()
        if len(qt.shape) != 2:
            raise UnsupportedQTypeError(f"QuantLinear: weight must be 2-D (out, in), got {qt.shape}")
        qt = qt.plain()   # buffers (and so state_dicts) always hold plain rows, whatever the runner packs
        self.qtype: QType = qt.qtype
        self.out_features, self.in_features = qt.shape
        self.group_size = qt.group_size
        for name, t in qt.tensors().items():
            self.register_buffer(name, t)
        if bias is not None:
            if tuple(bias.shape) != (self.out_features,):
                raise UnsupportedQTypeError(
                    f"QuantLinear: bias shape {tuple(bias.shape)} != ({self.out_features},)")
            bias = nn.Parameter(bias.detach(), requires_grad=False)
        self.bias = bias

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
        return self

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
                       getattr(self, "in_perm", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, "in_perm", None) is not None:   # act-order weight (EXL2): gather x's columns
            x = x.index_select(-1, self.in_perm)
        if self.qtype is QType.INT4:
            return int4_matmul(x, self.qweight, self.scales, self.mins, self.group_size, self.bias)
        if self.qtype is QType.INT8:
            return int8_matmul(x, self.qweight, self.scales, self.bias)
        return gguf_matmul(x, self.qweight, int(self.qtype), self.out_features, self.in_features, self.bias)

    def extra_repr(self) -> str:
        g = f", group_size={self.group_size}" if self.group_size else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"qtype={self.qtype.name}{g}, bias={self.bias is not None}")


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
