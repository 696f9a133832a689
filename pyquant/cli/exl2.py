"""`pyquant exl2 SRC OUT_DIR --bits 4.0`: convert a model to EXL2 on this machine
(pyquant/quantizers/exl2.py: GPTQ with act-order over mixed-bit layouts, a bit allocation meeting the
target) and write ExLlamaV2's directory layout (config.json quantization_config, output.safetensors,
tokenizer files). SRC: a float Hugging Face directory, or a GGUF file / alias dequantized on the fly."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ._common import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("exl2", help="convert a float directory or a GGUF file to EXL2 (ExLlamaV2)")
    p.add_argument("src", help="float HF directory, GGUF file or model alias (e.g. smollm2)")
    p.add_argument("out", help="output directory (ExLlamaV2 layout)")
    p.add_argument("--bits", type=float, default=4.0, help="target bits per weight of the decoder's linears")
    p.add_argument("--head-bits", type=int, default=6, choices=(2, 3, 4, 5, 6, 8), help="lm_head bits (default 6)")
    p.add_argument("--calib", default=None, help="calibration text (default: pyquant/data/calibration.txt)")
    p.add_argument("--measurement", "-m", default=None,
                   help="reuse a measurement.json (written to OUT_DIR by every conversion): only the "
                        "allocation and the quantization pass run")
    p.add_argument("--seq-len", type=positive_int, default=512, help="calibration block length (tokens)")
    p.add_argument("--blocks", type=positive_int, default=128, help="at most this many calibration blocks")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..errors import PyquantError
    from ..formats.exl2.writer import write_directory
    from ..quantizers.calib import calibration_blocks, calibration_text, open_float_source
    from ..quantizers.exl2 import Exl2Options, convert, load_measurement, option_names

    if not 2.0 <= args.bits <= 8.0:
        raise PyquantError(f"--bits {args.bits}: EXL2 layouts span 2 to 8 bits per weight")
    if args.threads:
        torch.set_num_threads(args.threads)
    src, tok, src_path = open_float_source(args.src)
    calib, text = calibration_text(args.calib)
    opt = Exl2Options(bits=args.bits, head_bits=args.head_bits, seq_len=args.seq_len, max_blocks=args.blocks)
    ids = calibration_blocks(tok.encode, text, opt.seq_len, opt.max_blocks)
    print(f"EXL2: {src_path} -> {args.out}: target {opt.bits} bpw, head {opt.head_bits} bits, calibration "
          f"{ids.shape[0]} x {ids.shape[1]} tokens from {calib.name}, {torch.get_num_threads()} threads",
          file=sys.stderr)
    t0 = time.perf_counter()

    def progress(phase, i, n, elapsed):
        print(f"\r  {phase} layer {i}/{n}  {elapsed:6.1f} s", end="" if i < n else "\n", file=sys.stderr,
              flush=True)

    measurement = load_measurement(args.measurement) if args.measurement else None
    tensors, report, cands = convert(src, ids, opt, progress, measurement)
    config = dict(src.config)
    config["tie_word_embeddings"] = False        # the head is quantized on its own
    write_directory(args.out, config, tensors, bits=opt.bits, head_bits=opt.head_bits,
                    calibration={"rows": int(ids.shape[0]), "length": int(ids.shape[1]), "dataset": calib.name})
    src.write_tokenizer(args.out)     # a directory's files copied, a GGUF's tokenizer exported
    src.close()
    layers = {k: v for k, v in report.items() if k != "lm_head"}
    weights = sum(v[3] for v in layers.values())
    bpw = sum(v[1] * v[3] for v in layers.values()) / max(weights, 1)
    (Path(args.out) / "measurement.json").write_text(json.dumps(
        {"options": option_names(), "linears": {k: [list(p) for p in v] for k, v in cands.items()}}))
    (Path(args.out) / "exl2_report.json").write_text(json.dumps(
        {k: {"bits": v[0][0], "proportions": v[0][1], "group_size": {str(b): g for b, g in v[0][2].items()},
             "bpw": round(v[1], 4), "rel_error": v[2]} for k, v in report.items()}, indent=1))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s ({bpw:.3f} bpw over the {len(layers)} decoder "
          f"linears; per-linear choices in exl2_report.json)", file=sys.stderr)
    return 0
