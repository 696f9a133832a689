"""The one place that chooses a kernel per (op, format, device, M), and says why.

Backends register themselves with `register_backend(Backend(...))`; every candidate for a device
is asked `supports(op, qtype, m) -> (bool, reason)` in priority order (highest first) and the first
that accepts wins. `explain()` returns the whole verdict list, `describe()` a printable table (for
`pyquant kernels` and `pyquant info --kernels`).

Ops: "dequantize", "gguf_matmul", "int4_matmul", "int8_matmul", "exl2_matmul" (see pyquant.ops for
schemas).
An impl function takes the op's arguments with x already flattened to a contiguous [M, K] and
returns a fresh [M, N] tensor in x's dtype (dequantize: a fresh [rows, cols] tensor).

Built-in backends: "cpu" (pyquant._C, priority 10) and "reference" (pure torch, any device,
priority 0). "cuda" and "triton" register from pyquant.kernels.cuda / pyquant.kernels.triton, which
are imported the first time a CUDA device is dispatched (or any device under TRITON_INTERPRET=1).

Environment:
    PYQUANT_BACKEND=<name>       use only this backend (an error if it cannot run the call)
    PYQUANT_DISABLE=<name,name>  never use these backends

`linear(qt, x, out, bias)` is how models call a quantized weight: the same choice, plus one named
fast path. When the "cpu" backend wins, the call goes straight to its kernels with pre-bound raw
pointers ("cpu-direct": `pyquant.kernels.cpu.matmul.linear_into`, ~4 us of Python at M = 1, no
torch.library round trip and no output allocation); any other backend runs through its op.
"""
from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Callable

from . import qtypes
from .errors import UnsupportedQTypeError

OPS = ("dequantize", "gguf_matmul", "int4_matmul", "int8_matmul", "exl2_matmul")
ANY_DEVICE = "any"


@dataclass
class Backend:
    """A kernel provider.

    name: unique name ("cpu", "cuda", ...); device_type: torch device type it runs on ("cpu",
    "cuda") or "any"; supports(op, qtype: QType, m: int) -> (bool, reason str); impl: op -> fn
    (argument conventions in the module docstring); priority: higher is tried first.
    """
    name: str
    device_type: str
    supports: Callable
    impl: dict = field(default_factory=dict)
    priority: int = 0

    def check(self, op: str, qt: qtypes.QType, m: int) -> tuple[bool, str]:
        if op not in self.impl:
            return False, f"no {op} implementation"
        try:
            ok, reason = self.supports(op, qt, m)
        except Exception as e:  # a broken probe must not take the whole dispatcher down
            return False, f"supports() raised {type(e).__name__}: {e}"
        return bool(ok), str(reason)


_backends: dict[str, Backend] = {}
_cache: dict = {}
_lock = threading.Lock()
_builtin_loaded = False
_lazy_done: set[str] = set()
lazy_errors: dict[str, str] = {}  # registration module -> why it did not load (shown by describe())

# Lazy registration modules per device type; a missing module (ImportError) is simply skipped.
_LAZY_MODULES = {"cuda": ("pyquant.kernels.cuda", "pyquant.kernels.triton")}
_TRITON_INTERPRET_MODULES = ("pyquant.kernels.triton",)


def register_backend(backend: Backend) -> None:
    """Add or replace a backend (by name). Clears the choice cache."""
    if not isinstance(backend, Backend):
        raise TypeError(f"register_backend expects a pyquant.dispatch.Backend, got {type(backend).__name__}")
    with _lock:
        _backends[backend.name] = backend
        _cache.clear()


def unregister_backend(name: str) -> None:
    with _lock:
        _backends.pop(name, None)
        _cache.clear()


def backends(device_type: str | None = None) -> list[Backend]:
    """Registered backends (for a device type, "any" ones included), highest priority first."""
    _load_builtin()
    if device_type is not None:
        _load_lazy(device_type)
    out = [b for b in _backends.values()
           if device_type is None or b.device_type in (device_type, ANY_DEVICE)]
    return sorted(out, key=lambda b: -b.priority)


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    from .kernels.cpu import matmul as cpu_matmul
    from .kernels.reference import matmul as ref_matmul

    register_backend(Backend("reference", ANY_DEVICE, _reference_supports, {
        "dequantize": ref_matmul.dequantize, "gguf_matmul": ref_matmul.gguf_matmul,
        "int4_matmul": ref_matmul.int4_matmul, "int8_matmul": ref_matmul.int8_matmul,
        "exl2_matmul": ref_matmul.exl2_matmul}, priority=0))
    register_backend(Backend("cpu", "cpu", cpu_matmul.supports, cpu_matmul.IMPL, priority=10))


def _load_lazy(device_type: str) -> None:
    modules = list(_LAZY_MODULES.get(device_type, ()))
    if os.environ.get("TRITON_INTERPRET") == "1":
        modules += _TRITON_INTERPRET_MODULES
    for mod in modules:
        if mod in _lazy_done:
            continue
        _lazy_done.add(mod)
        try:
            importlib.import_module(mod)  # registers its backends on import
        except Exception as e:  # not built, triton missing, no driver: the other backends still serve
            lazy_errors[mod] = f"{type(e).__name__}: {e}"


def _reference_supports(op, qt, m):
    from .kernels.reference.matmul import gguf_supported

    if op in ("dequantize", "gguf_matmul"):
        return gguf_supported(qt, matmul=op == "gguf_matmul")
    return True, "torch: dequantize to float32, then torch matmul"


def _env_names(var: str) -> set[str]:
    return {s.strip() for s in os.environ.get(var, "").split(",") if s.strip()}


def explain(op: str, qtype, device_type: str, m: int = 1) -> list[tuple[str, bool, str]]:
    """Every candidate backend for this call, in the order tried: (name, chosen, reason)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; ops: {', '.join(OPS)}")
    qt = qtypes.qtype(qtype)
    forced = os.environ.get("PYQUANT_BACKEND", "").strip()
    disabled = _env_names("PYQUANT_DISABLE")
    verdicts, chosen = [], False
    for b in backends(device_type):
        if b.name in disabled:
            verdicts.append((b.name, False, "disabled by PYQUANT_DISABLE"))
            continue
        if forced and b.name != forced:
            verdicts.append((b.name, False, f"PYQUANT_BACKEND={forced} forces another backend"))
            continue
        ok, reason = b.check(op, qt, m)
        if ok and not chosen:
            chosen = True
            verdicts.append((b.name, True, reason))
        elif ok:
            verdicts.append((b.name, False, f"a higher-priority backend was chosen (would: {reason})"))
        else:
            verdicts.append((b.name, False, reason))
    return verdicts


def _env_reader():
    """A fast reader of (PYQUANT_BACKEND, PYQUANT_DISABLE) for the per-call cache key.

    os.environ.get costs ~0.5-1.3 us per key here (it encodes the key each time); choose() runs on
    every op call, so read os.environ's backing dict with pre-encoded keys where CPython has one.
    Changes made through os.environ (monkeypatch.setenv included) are seen immediately either way.
    """
    names = ("PYQUANT_BACKEND", "PYQUANT_DISABLE")
    data, encode = getattr(os.environ, "_data", None), getattr(os.environ, "encodekey", None)
    if isinstance(data, dict) and encode is not None:
        k1, k2 = (encode(n) for n in names)
        return lambda: (data.get(k1), data.get(k2))
    return lambda: (os.environ.get(names[0]), os.environ.get(names[1]))


_read_env = _env_reader()


def choose(op: str, qtype, device_type: str, m: int = 1) -> Backend:
    """The backend that runs `op` for this quant type, device and number of activation rows M."""
    key = (op, qtype, device_type, m, _read_env())
    hit = _cache.get(key)
    if hit is not None:
        return hit
    verdicts = explain(op, qtype, device_type, m)
    name = next((n for n, ok, _ in verdicts if ok), None)
    if name is None:
        qt = qtypes.qtype(qtype)
        lines = "; ".join(f"{n}: {r}" for n, _, r in verdicts) or "no backend registered"
        forced = os.environ.get("PYQUANT_BACKEND", "").strip()
        if forced and forced not in _backends:
            lines += f" (PYQUANT_BACKEND={forced} is not a registered backend: {', '.join(sorted(_backends))})"
        raise UnsupportedQTypeError(
            f"no kernel for {op} on {qt.name} / {device_type} (M={m}): {lines}")
    backend = _backends[name]
    with _lock:
        if len(_cache) > 4096:  # M varies per call in serving; keep the cache bounded
            _cache.clear()
        _cache[key] = backend
    return backend


def describe(device_types=("cpu",), ms=(1, 16, 512), ops=None, qtypes_=None) -> str:
    """A printable table: for every op x quant type x device x M, the backend chosen and why."""
    ops = ops or OPS
    rows = []
    for dev in device_types:
        for op in ops:
            allowed = _op_qtypes(op)
            for qt in [q for q in qtypes_ if qtypes.qtype(q) in allowed] if qtypes_ else allowed:
                for m in (ms if op != "dequantize" else (0,)):
                    verdicts = explain(op, qt, dev, m)
                    win = next(((n, r) for n, ok, r in verdicts if ok), ("-", "no backend"))
                    rejected = "; ".join(f"{n}: {r}" for n, ok, r in verdicts if not ok)
                    rows.append((dev, op, qtypes.qtype(qt).name, "-" if op == "dequantize" else str(m),
                                 win[0], win[1], rejected))
    head = ("device", "op", "type", "M", "backend", "why", "rejected")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [f"# {mod} not loaded ({why})" for mod, why in lazy_errors.items()]
    lines.append(fmt.format(*head[:5]) + "  why  [rejected]")
    for r in rows:
        lines.append(fmt.format(*r[:5]) + f"  {r[5]}" + (f"  [{r[6]}]" if r[6] else ""))
    return "\n".join(lines)


def _op_qtypes(op: str) -> list[qtypes.QType]:
    if op == "int4_matmul":
        return [qtypes.QType.INT4]
    if op == "int8_matmul":
        return [qtypes.QType.INT8]
    if op == "exl2_matmul":
        return [qtypes.QType.EXL2]
    return [t for t in qtypes.GGML_TYPES if qtypes.info(t).kind not in (qtypes.Kind.INTEGER,)
            and not qtypes.info(t).activation_only and t != qtypes.QType.F64]


def op_for(qt) -> str:
    """The matmul op of a weight format: int4_matmul, int8_matmul, exl2_matmul or gguf_matmul."""
    q = qtypes.qtype(qt)
    return {qtypes.QType.INT4: "int4_matmul", qtypes.QType.INT8: "int8_matmul",
            qtypes.QType.EXL2: "exl2_matmul"}.get(q, "gguf_matmul")


def linear_backend(qt, device_type: str, m: int) -> str:
    """Name of what `linear` runs for this weight, device and M: "cpu-direct" or a backend's name."""
    name = choose(op_for(qt), qt, device_type, m).name
    return "cpu-direct" if name == "cpu" else name


def takes_direct(qt, device_type: str, m: int) -> bool:
    """Whether `linear` runs this weight straight on the CPU kernels (the named "cpu-direct" path):
    the cpu backend wins and has a kernel bound for it. (A row-interleaved weight given to another
    backend, PYQUANT_BACKEND=reference say, reaches it as plain rows: pyquant.ops.)"""
    return linear_backend(qt.qtype, device_type, m) == "cpu-direct" and qt.cpu_call is not None


def linear(qt, x, out, bias=None):
    """out[M, N] = x[M, K] @ W.T (+ bias) for a QTensor W, by the backend `choose` picks for x's
    device and M (the named "cpu-direct" path when that is the cpu backend). Returns out."""
    m = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if takes_direct(qt, x.device.type, m):
        from .kernels.cpu.matmul import linear_into

        return linear_into(x, qt, out, bias)
    from .ops import qmatmul

    return out.copy_(qmatmul(x, qt, bias))
