"""`pyquant kernels`: which kernel runs each op, per quant type, device and M, and why."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("kernels", help="show the kernel dispatch table (what runs, and why)")
    p.add_argument("--device", action="append", help="device type(s) (default: cpu, plus cuda if available)")
    p.add_argument("--op", action="append", help="op(s): dequantize, gguf_matmul, int4_matmul, int8_matmul")
    p.add_argument("--qtype", action="append", help="quant type(s), e.g. Q4_K (default: all weight types)")
    p.add_argument("-m", "--rows", type=int, action="append", help="activation rows M (default: 1, 16, 512)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from .. import dispatch
    from .._ext import _C
    from ..qtypes import qtype

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"pyquant._C: isa={_C.active_isa()} threads={_C.get_num_threads()}  "
          f"backends: {', '.join(f'{b.name}({b.device_type}, prio {b.priority})' for b in dispatch.backends())}")
    qts = [qtype(q) for q in args.qtype] if args.qtype else None
    print(dispatch.describe(device_types=devices, ms=tuple(args.rows or (1, 16, 512)), ops=args.op, qtypes_=qts))
    return 0
