"""The op table: every pyquant op's schema and fake (meta) implementation, in one place.

Device implementations register against these names: the CPU kernels (pyquant._C) here, CUDA
(pyquant.kernels.cuda) and Triton (pyquant.kernels.triton) from their own modules. Layouts:

- ``dequantize(data uint8 [rows, row_bytes] (or flat), qtype, rows, cols, dtype) -> [rows, cols]``
- ``gguf_matmul(x [M, K], w uint8 [N, row_bytes(K)], qtype, N, K, bias [N]?) -> [M, N]`` (x's dtype)
- ``int4_matmul(x [M, K], qweight uint8 [N, K/2], scales f32 [N, K/g], mins f32 [N, K/g], g, bias?)``
  with w[n, k] = q * scale + min; inside each run of 32 consecutive k, byte j holds element j in its
  low nibble and element j+16 in its high nibble (ggml's Q4 order).
- ``int8_matmul(x [M, K], qweight int8 [N, K], scales f32 [N], bias?)`` with w = q * scale.
- ``exl2_matmul(x [M, K], qweight uint8 [N, row_bytes], block_bits uint8 [K/32], bias?, interleave)``: EXL2's
  mixed-width 32-blocks, w = d * (q - 2^(b-1)) at block j's width block_bits[j]
  (pyquant/formats/exl2/native.py; K in the weight's stored, act-order, column order).

gguf_matmul, int4_matmul and exl2_matmul take ``interleave`` last (0, or 8: the weight's rows, and int4's scales
and mins, stored in the CPU kernels' row-interleaved layout, pyquant/kernels/cpu/interleave.py;
what `QuantLinear` keeps on the CPU). The CPU kernels read that layout as it is; any other backend
gets plain rows back, a copy per call.
"""
from __future__ import annotations

import torch

from . import dispatch
from .errors import KernelError
from .qtypes import QType

# Every op body is the default (any-device) implementation: it flattens x to a contiguous [M, K],
# asks pyquant.dispatch for the backend of (op, qtype, device, M) and calls it. A device module may
# still override one device with `<op>.register_kernel("cuda")` (not "cpu": see _direct_cpu_kernels).


_X_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _run(op: str, qtype: int, x: torch.Tensor, n: int, k: int, *args, call=None) -> torch.Tensor:
    """The op on x flattened to a contiguous [M, K]: the dispatched backend's impl with args, or
    call(x2) when given."""
    if x.shape[-1] != k:
        raise KernelError(f"{op}: x has {x.shape[-1]} features in its last dim, the weight expects {k}")
    if x.dtype not in _X_DTYPES:
        raise KernelError(f"{op}: x dtype {x.dtype} not supported (float32, float16, bfloat16)")
    flat = x.dim() == 2 and x.is_contiguous()  # the token-step case: no reshapes (~2 us each)
    x2 = x if flat else x.reshape(-1, k).contiguous()
    if call is None:
        y = dispatch.choose(op, qtype, x.device.type, x2.shape[0]).impl[op](x2, *args)
    else:
        y = call(x2)
    return y if flat else y.reshape(*x.shape[:-1], n)


def _dequantize_body(data: torch.Tensor, qtype: int, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    fn = dispatch.choose("dequantize", qtype, data.device.type, 0).impl["dequantize"]
    return fn(data, qtype, rows, cols, dtype)


def _run_interleaved(op: str, qtype: int, x: torch.Tensor, n: int, k: int, w: torch.Tensor, scales, mins,
                     group_size: int, bias, interleave: int) -> torch.Tensor:
    """An op on a row-interleaved weight: the CPU kernels read it in place (a _C.Weight with
    interleave=8); another backend (a device, PYQUANT_BACKEND, the reference) gets plain rows."""
    from .kernels.cpu import interleave as il

    if interleave != 8 or not il.supports(qtype, (n, k)):
        raise KernelError(f"{op}: interleave={interleave}: the row-interleaved layout is 8 rows of "
                          f"{il.NAMES} with a multiple of 8 rows, got {QType(qtype).name} [{n}, {k}]")
    m = x.numel() // k if k else 0
    if dispatch.choose(op, qtype, x.device.type, m).name == "cpu":
        from .kernels.cpu.matmul import interleaved_matmul

        return _run(op, qtype, x, n, k, call=lambda x2: interleaved_matmul(x2, qtype, w, n, k, scales, mins,
                                                                            group_size, bias))
    rows, side = il.deinterleave(w.view(torch.uint8), qtype), il.deinterleave_side
    if op == "int4_matmul":
        return _int4_matmul_body(x, rows, side(scales), side(mins), group_size, bias)
    return _gguf_matmul_body(x, rows, qtype, n, k, bias)


def _gguf_matmul_body(x: torch.Tensor, w: torch.Tensor, qtype: int, n: int, k: int,
                      bias: torch.Tensor | None = None, interleave: int = 0) -> torch.Tensor:
    if interleave:
        return _run_interleaved("gguf_matmul", qtype, x, n, k, w, None, None, 0, bias, interleave)
    return _run("gguf_matmul", qtype, x, n, k, w, qtype, n, k, bias)


def _int4_matmul_body(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor,
                      group_size: int, bias: torch.Tensor | None = None, interleave: int = 0) -> torch.Tensor:
    n, k = qweight.shape[0], qweight.shape[1] * 2
    if interleave:
        return _run_interleaved("int4_matmul", QType.INT4, x, n, k, qweight, scales, mins, group_size, bias,
                                interleave)
    return _run("int4_matmul", QType.INT4, x, n, k, qweight, scales, mins, group_size, bias)


def _int8_matmul_body(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                      bias: torch.Tensor | None = None) -> torch.Tensor:
    n, k = qweight.shape
    return _run("int8_matmul", QType.INT8, x, n, k, qweight, scales, bias)


def _exl2_matmul_body(x: torch.Tensor, qweight: torch.Tensor, block_bits: torch.Tensor,
                      bias: torch.Tensor | None = None, interleave: int = 0) -> torch.Tensor:
    n, k = qweight.shape[0], 32 * block_bits.shape[0]
    if interleave and dispatch.choose("exl2_matmul", QType.EXL2, x.device.type, x.numel() // max(k, 1)).name != "cpu":
        from .formats.exl2.native import interleave as exl2_interleave   # others read plain rows

        qweight, interleave = exl2_interleave(qweight, block_bits, inverse=True), 0
    return _run("exl2_matmul", QType.EXL2, x, n, k, qweight, block_bits, bias, interleave)


@torch.library.custom_op("pyquant::dequantize", mutates_args=())
def dequantize_op(data: torch.Tensor, qtype: int, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    return _dequantize_body(data, qtype, rows, cols, dtype)


@dequantize_op.register_fake
def _(data, qtype, rows, cols, dtype):
    return data.new_empty((rows, cols), dtype=dtype)


@torch.library.custom_op("pyquant::gguf_matmul", mutates_args=())
def gguf_matmul(x: torch.Tensor, w: torch.Tensor, qtype: int, n: int, k: int,
                bias: torch.Tensor | None = None, interleave: int = 0) -> torch.Tensor:
    return _gguf_matmul_body(x, w, qtype, n, k, bias, interleave)


@gguf_matmul.register_fake
def _(x, w, qtype, n, k, bias=None, interleave=0):
    return x.new_empty((*x.shape[:-1], n))


@torch.library.custom_op("pyquant::int4_matmul", mutates_args=())
def int4_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor,
                group_size: int, bias: torch.Tensor | None = None, interleave: int = 0) -> torch.Tensor:
    return _int4_matmul_body(x, qweight, scales, mins, group_size, bias, interleave)


@int4_matmul.register_fake
def _(x, qweight, scales, mins, group_size, bias=None, interleave=0):
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))


@torch.library.custom_op("pyquant::int8_matmul", mutates_args=())
def int8_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    return _int8_matmul_body(x, qweight, scales, bias)


@int8_matmul.register_fake
def _(x, qweight, scales, bias=None):
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))


@torch.library.custom_op("pyquant::exl2_matmul", mutates_args=())
def exl2_matmul(x: torch.Tensor, qweight: torch.Tensor, block_bits: torch.Tensor,
                bias: torch.Tensor | None = None, interleave: int = 0) -> torch.Tensor:
    return _exl2_matmul_body(x, qweight, block_bits, bias, interleave)


@exl2_matmul.register_fake
def _(x, qweight, block_bits, bias=None, interleave=0):
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))


def _direct_cpu_kernels() -> torch.library.Library:
    """Put the op bodies on the dispatcher's CPU key too.

    custom_op serves every device through one generic Python wrapper (a dynamo-disable guard and a
    redispatch): ~15-20 us per call here, against ~5 us for a kernel registered on the CPU key
    itself (measured with a clone() body, this machine). The body is the same, so dispatch, the
    fake impls, autograd and opcheck all behave as before; only `<op>.register_kernel("cpu")` would
    now be shadowed (nobody uses it: CPU backends register with pyquant.dispatch).
    """
    lib = torch.library.Library("pyquant", "IMPL")
    for name, body in (("dequantize", _dequantize_body), ("gguf_matmul", _gguf_matmul_body),
                       ("int4_matmul", _int4_matmul_body), ("int8_matmul", _int8_matmul_body),
                       ("exl2_matmul", _exl2_matmul_body)):
        lib.impl(name, body, "CPU")
    return lib


_cpu_lib = _direct_cpu_kernels()


# ---- autograd: gradients for x and bias (the packed weight is frozen) -----------------------------
def _dense_weight(op: str, inputs: tuple) -> torch.Tensor:
    from .kernels.reference.matmul import dequantize_int4, dequantize_int8

    from .kernels.cpu import interleave as il

    if op == "gguf_matmul":
        x, w, qtype, n, k, _, interleave = inputs
        if interleave:
            w = il.deinterleave(w.view(torch.uint8), qtype)
        return dequantize_op(w, qtype, n, k, torch.float32)
    if op == "int4_matmul":
        qweight, scales, mins, group_size, _, interleave = inputs[1:]
        if interleave:
            qweight, scales, mins = (il.deinterleave(qweight, QType.INT4), il.deinterleave_side(scales),
                                     il.deinterleave_side(mins))
        return dequantize_int4(qweight, scales, mins, group_size)
    if op == "exl2_matmul":
        from .formats.exl2.native import dequantize, interleave

        qweight, block_bits, _, il8 = inputs[1:5]
        return dequantize(interleave(qweight, block_bits, inverse=True) if il8 else qweight, block_bits)
    return dequantize_int8(*inputs[1:3])


_BIAS_INDEX = {"gguf_matmul": 5, "int4_matmul": 5, "int8_matmul": 3, "exl2_matmul": 3}   # where each op's bias sits


def _make_autograd(op_obj, op: str):
    def setup_context(ctx, inputs, output):
        # tensors through save_for_backward (what torch.compile traces), the rest as attributes
        slots = [i for i, v in enumerate(inputs) if isinstance(v, torch.Tensor)]
        ctx.save_for_backward(*(inputs[i] for i in slots))
        ctx.slots, ctx.consts = slots, [None if isinstance(v, torch.Tensor) else v for v in inputs]
        ctx.x_dtype = inputs[0].dtype
        ctx.bias_index = _BIAS_INDEX[op]
        bias = inputs[ctx.bias_index] if len(inputs) > ctx.bias_index else None
        ctx.bias_dtype = bias.dtype if isinstance(bias, torch.Tensor) else None
        ctx.set_materialize_grads(False)

    def backward(ctx, grad):
        inputs = list(ctx.consts)
        for i, t in zip(ctx.slots, ctx.saved_tensors):
            inputs[i] = t
        grads = [None] * len(inputs)
        if grad is None:
            return tuple(grads)
        if ctx.needs_input_grad[0]:  # dL/dx = dL/dy @ W, in fp32 then x's dtype
            w = _dense_weight(op, tuple(inputs))
            grads[0] = (grad.to(torch.float32) @ w.to(grad.device)).to(ctx.x_dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[ctx.bias_index]:
            grads[ctx.bias_index] = grad.reshape(-1, grad.shape[-1]).to(torch.float32).sum(0).to(ctx.bias_dtype)
        return tuple(grads)

    op_obj.register_autograd(backward, setup_context=setup_context)


_make_autograd(gguf_matmul, "gguf_matmul")
_make_autograd(int4_matmul, "int4_matmul")
_make_autograd(int8_matmul, "int8_matmul")
_make_autograd(exl2_matmul, "exl2_matmul")


# ---- public entry -------------------------------------------------------------------------------
def _linear_into():
    """pyquant.kernels.cpu.matmul.linear_into, imported once (an import statement per call: ~1 us)."""
    global _LINEAR_INTO
    if _LINEAR_INTO is None:
        from .kernels.cpu.matmul import linear_into

        _LINEAR_INTO = linear_into
    return _LINEAR_INTO


_LINEAR_INTO = None


def eager_cpu(x: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether a matmul of x may skip the torch.library op for the runner's named direct CPU path
    (pyquant.dispatch.linear): eager (not compiling), nothing needing a gradient, a float CPU x.
    The op runs the same kernel with the same arithmetic; the direct call saves ~20 us of Python
    and dispatch a call (bench/bench_call_overhead.py)."""
    if x.device.type != "cpu" or x.dtype not in _X_DTYPES or torch.compiler.is_compiling():
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)))


def qmatmul(x: torch.Tensor, w, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ W.T (+ bias) with a quantized W.

    x: float32 / float16 / bfloat16 [..., K], any layout, on w's device; w: pyquant.QTensor (N, K);
    bias: [N] or None. Returns [..., N] in x's dtype; accumulation is fp32 on every backend.
    Eager CPU inference calls the kernels directly (eager_cpu), everything else the op.
    """
    qt = w.qtype
    if x.device != w.data.device:
        raise KernelError(f"qmatmul: x is on {x.device}, the weight {w.qtype.name} {w.shape} on {w.data.device}")
    if (eager_cpu(x, bias) and len(w.shape) == 2 and x.dim() >= 1 and x.shape[-1] == w.shape[1]
            and dispatch.takes_direct(w, "cpu", x.numel() // max(1, x.shape[-1]))):
        flat = x.dim() == 2 and x.is_contiguous()   # no reshapes (~1 us each)
        x2 = x if flat else x.reshape(-1, w.shape[1]).contiguous()
        out = _linear_into()(x2, w, x2.new_empty((x2.shape[0], w.shape[0])), bias)
        return out if flat else out.reshape(*x.shape[:-1], w.shape[0])
    if getattr(w, "in_perm", None) is not None:   # input channels stored permuted (EXL2 act-order)
        x = x.index_select(-1, w.in_perm)
    interleave = getattr(w, "interleave", 0)   # the CPU kernels' row-interleaved layout (ops docstring)
    if qt is QType.INT4:
        return int4_matmul(x, w.data, w.scales, w.mins, w.group_size, bias, interleave)
    if qt is QType.INT8:
        return int8_matmul(x, w.data, w.scales, bias)
    if qt is QType.EXL2:
        return exl2_matmul(x, w.data, w.block_bits, bias, interleave)
    if len(w.shape) != 2:
        raise ValueError(f"qmatmul: weight must be 2-D (out, in), got {w.shape}")
    return gguf_matmul(x, w.data, int(qt), w.shape[0], w.shape[1], bias, interleave)
