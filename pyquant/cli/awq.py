"""`pyquant awq SRC OUT_DIR`: AWQ-quantize a model on this machine (pyquant/quantizers/awq.py) and
write an AutoAWQ-compatible checkpoint (gemm layout by default) that pyquant, transformers, AutoAWQ
and vLLM load. SRC: a float Hugging Face directory (safetensors) or a GGUF file / alias, dequantized
on the fly (e.g. smollm2: its Q4_1 weights as the float model)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ._common import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("awq", help="AWQ-quantize a float directory or a GGUF file to an AWQ checkpoint")
    p.add_argument("src", help="float HF directory, GGUF file or model alias (e.g. smollm2)")
    p.add_argument("out", help="output directory (AutoAWQ layout: config.json, model.safetensors, tokenizer)")
    p.add_argument("--group-size", type=int, default=128, choices=(32, 64, 128))
    p.add_argument("--version", default="gemm", choices=("gemm", "gemv_fast"),
                   help="on-disk layout (default gemm: what transformers / vLLM expect)")
    p.add_argument("--calib", default=None,
                   help="calibration text file (default: the text shipped in pyquant/data/calibration.txt)")
    p.add_argument("--seq-len", type=positive_int, default=512, help="calibration block length (tokens)")
    p.add_argument("--blocks", type=positive_int, default=128, help="at most this many calibration blocks")
    p.add_argument("--search-tokens", type=positive_int, default=2048,
                   help="tokens each scale-search loss is measured on (default 2048; SmolLM2 g64: "
                        "PPL 20.38 in 2.1 min, 4096: 20.11 in 3.4 min)")
    p.add_argument("--no-search", action="store_true",
                   help="round to nearest without the AWQ searches (the baseline, same output format)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..formats.awq.writer import write_checkpoint
    from ..quantizers.awq import AWQOptions, quantize_model
    from ..quantizers.calib import calibration_blocks, calibration_text, open_float_source

    if args.threads:
        torch.set_num_threads(args.threads)
    src, tok, src_path = open_float_source(args.src)
    calib, text = calibration_text(args.calib)
    opt = AWQOptions(group_size=args.group_size, version=args.version, search=not args.no_search,
                     seq_len=args.seq_len, max_blocks=args.blocks, search_tokens=args.search_tokens)
    ids = calibration_blocks(tok.encode, text, opt.seq_len, opt.max_blocks)
    what = "AWQ" if opt.search else "round-to-nearest"
    print(f"{what}: {src_path} -> {args.out}: group {opt.group_size}, {opt.version}, calibration "
          f"{ids.shape[0]} x {ids.shape[1]} tokens from {calib.name}, {torch.get_num_threads()} threads",
          file=sys.stderr)
    t0 = time.perf_counter()

    def progress(i, n, elapsed):
        print(f"\r  layer {i}/{n}  {elapsed:6.1f} s", end="" if i < n else "\n", file=sys.stderr, flush=True)

    tensors = quantize_model(src, ids, opt, progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, src.config, tensors, version=opt.version, group_size=opt.group_size)
    src.write_tokenizer(out)          # a directory's files copied, a GGUF's tokenizer exported
    src.close()
    size = sum(f.stat().st_size for f in out.iterdir() if f.suffix == ".safetensors")
    print(f"wrote {out} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
