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


class FloatDirectory:
    """A float HF directory as the quantizer's source: config, float32 tensors by name, tokenizer files."""

    def __init__(self, path):
        from ..errors import FormatError
        from ..formats.detect import describe, kind
        from ..formats.hf.checkpoint import SafetensorsDir, read_json

        self.path = Path(path)
        if kind(self.path) != "float":
            raise FormatError(self.path, f"pyquant awq needs a float model; this is {describe(self.path)}")
        self.config = read_json(self.path / "config.json", "config.json")
        self.tensors = SafetensorsDir(self.path)

    def __contains__(self, name):
        return name in self.tensors

    def get(self, name):
        return self.tensors.get(name).float()

    def write_tokenizer(self, out):
        import shutil

        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "generation_config.json", "chat_template.jinja"):
            if (self.path / name).is_file():
                shutil.copyfile(self.path / name, Path(out) / name)

    def close(self):
        pass


def run(args) -> int:
    import torch

    from ..errors import PyquantError
    from ..formats.awq.writer import write_checkpoint
    from ..hub import resolve
    from ..quantizers.awq import AWQOptions, calibration_blocks, quantize_model
    from ..runtime.tokenizer import Tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    src_path = resolve(args.src)
    if src_path.is_dir():
        src = FloatDirectory(src_path)
        tok = Tokenizer.from_hf(src_path, int(src.config.get("vocab_size") or 0))
    else:
        from ..formats.gguf.to_hf import GGUFAsHF

        src = GGUFAsHF(src_path)
        tok = src.tok
    calib = Path(args.calib) if args.calib else Path(__file__).resolve().parent.parent / "data" / "calibration.txt"
    try:
        text = calib.read_text(encoding="utf-8")
    except OSError as e:
        raise PyquantError(f"{calib}: cannot read the calibration text: {e.strerror}") from None
    opt = AWQOptions(group_size=args.group_size, version=args.version, search=not args.no_search,
                     seq_len=args.seq_len, max_blocks=args.blocks, search_tokens=args.search_tokens)
    ids = calibration_blocks(tok.encode, text, opt)
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
    write_checkpoint(out, src.config, tensors, version=opt.version, group_size=opt.group_size,
                     source_dir=src_path if src_path.is_dir() else None)
    if not src_path.is_dir():
        src.write_tokenizer(out)
    src.close()
    size = sum(f.stat().st_size for f in out.iterdir() if f.suffix == ".safetensors")
    print(f"wrote {out} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
