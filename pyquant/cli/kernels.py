"""`pyquant kernels`: which kernel runs each op, per quant type, device and M, and why."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("kernels", help="show the kernel dispatch table (what runs, and why)")
    p.add_argument("--device", action="append", help="device type(s) (default: cpu, plus cuda if available)")
    p.add_argument("--op", action="append", choices=["dequantize", "gguf_matmul", "int4_matmul", "int8_matmul"],
                   help="op(s) to show (default: all)")
    p.add_argument("--qtype", action="append", help="quant type(s), e.g. Q4_K (default: all weight types)")
    p.add_argument("-m", "--rows", type=int, action="append", help="activation rows M (default: 1, 16, 512)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from .. import dispatch
    from .._ext import _C
    from ..qtypes import qtype

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    vnni = " + AVX-512 VNNI builds (PYQUANT_VNNI=0: off)" if _C.get_vnni() else ""
    print(f"pyquant._C: isa={_C.active_isa()}{vnni} threads={_C.get_num_threads()}  "
          f"backends: {', '.join(f'{b.name}({b.device_type}, prio {b.priority})' for b in dispatch.backends())}")
    for name, why in missing_backends():
        print(f"  {name}: not listed: {why}")
    qts = [qtype(q) for q in args.qtype] if args.qtype else None
    print(dispatch.describe(device_types=devices, ms=tuple(args.rows or (1, 16, 512)), ops=args.op, qtypes_=qts))
    return 0


def missing_backends() -> list[tuple[str, str]]:
    """(backend, why it is not in the table) for the GPU backends this machine cannot run."""
    import importlib.util
    import os

    import torch

    from .._ext import _C_cuda

    out = []
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch {torch.__version__}"
        where = ("pyquant._C_cuda is not built either (no GPU at build time: PYQUANT_CUDA_ARCHS=80,... "
                 "builds it)" if _C_cuda is None else "pyquant._C_cuda is built and waits for one")
        out.append(("cuda", f"no CUDA device visible to torch ({build}); {where}"))
    elif _C_cuda is None:
        out.append(("cuda", "pyquant._C_cuda was not built (reinstall on this machine, or set PYQUANT_CUDA_ARCHS)"))
    if importlib.util.find_spec("triton") is None:
        out.append(("triton", "the triton package is not installed (pip install triton)"))
    elif not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        out.append(("triton", "its kernels need a CUDA device (TRITON_INTERPRET=1 runs them on the CPU, "
                              "slowly: for tests)"))
    return out
