"""How far each activation mode of the CPU kernels moves a model from its float forward, side by
side with llama.cpp's own distance on the same file (issue #9: choose defaults from fidelity).

    python bench/fidelity.py smollm2 [--text tests/data/apache-2.0.txt] [--ctx 128]
                             [--llama-bin DIR]   # a llama.cpp build with llama-perplexity
                             [--prefill]         # whole chunks through the prompt path instead

pyquant: each chunk of `ctx` tokens (llama-perplexity's chunking, pyquant/runtime/perplexity.py) runs
through the token step one token at a time, the path generation takes (a whole-chunk prefill of
> 48-96 rows would take the float GEMM and measure nothing), once per mode: float (weights decoded
to float, the reference), int8 (one pass, llama.cpp's Q8 activations), int8x2 (the default: int8 +
its int8 residual). Scored like llama-perplexity: positions ctx/2 .. ctx-2 of every chunk.
--prefill runs each chunk as one prompt (`model.forward`, all logits): the prompt-processing path,
where the int8 / int8x2 GEMM takes m = ctx rows (int8x2 up to ctx 64, then the float GEMM).

llama.cpp: the same file dequantized to F32 (`pyquant quantize FILE F32.gguf F32`) is its float
forward (F32 weights are dotted with F32 activations); `llama-perplexity --kl-divergence` of the
quantized file against it gives its distance with Q8 activations. Prints one table, JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import torch

import pyquant
from pyquant._ext import _C


def step_logits(model, chunk: list[int]) -> torch.Tensor:
    """[len(chunk), vocab] float64 logits, one token step per token from an empty cache."""
    out = [model.step(t, p).double().clone() for p, t in enumerate(chunk)]
    return torch.stack(out)


def prefill_logits(model, chunk: list[int]) -> torch.Tensor:
    """[len(chunk), vocab] float64 logits of the chunk run as one prompt."""
    return model.forward(chunk, 0, all_logits=True).double()


def pyquant_modes(model, text: str, ctx: int, modes: list[str], max_chunks: int | None, logits=step_logits) -> dict:
    tok = model.tokenizer
    ids = tok.encode(text, parse_special=False)
    n_chunks = len(ids) // ctx if max_chunks is None else min(len(ids) // ctx, max_chunks)
    first = ctx // 2
    before = _C.get_matmul_act()
    stats = {m: {"nll": 0.0, "kl": [], "same_top": 0} for m in modes}
    n = 0
    try:
        for c in range(n_chunks):
            chunk = ids[c * ctx:(c + 1) * ctx]
            if tok.add_bos and tok.bos_id is not None:
                chunk = [tok.bos_id] + chunk[1:]
            target = torch.tensor(chunk[first + 1:ctx])
            ref = None
            for mode in ["float"] + [m for m in modes if m != "float"]:
                _C.set_matmul_act(mode)
                lp = torch.log_softmax(logits(model, chunk)[first:ctx - 1], -1)
                if ref is None:
                    ref = lp
                s = stats.setdefault(mode, {"nll": 0.0, "kl": [], "same_top": 0})
                s["nll"] -= float(lp.gather(1, target[:, None]).sum())
                s["kl"].append((ref.exp() * (ref - lp)).sum(-1))
                s["same_top"] += int((lp.argmax(-1) == ref.argmax(-1)).sum())
            n += ctx - 1 - first
    finally:
        _C.set_matmul_act(before)
    rows = {}
    for mode, s in stats.items():
        kl = torch.cat(s["kl"])
        rows[f"pyquant {mode}"] = {"ppl": math.exp(s["nll"] / n), "kl_mean": float(kl.mean()),
                                   "kl_p99": float(kl.quantile(0.99)), "kl_max": float(kl.max()),
                                   "same_top1": s["same_top"] / n, "tokens": n}
    return rows


def llama_cpp(bin_dir: str, gguf: str, text_path: str, ctx: int, threads: int) -> dict:
    exe = os.path.join(bin_dir, "llama-perplexity")
    with tempfile.TemporaryDirectory() as tmp:
        f32, base = os.path.join(tmp, "f32.gguf"), os.path.join(tmp, "base.kld")
        subprocess.run([sys.executable, "-m", "pyquant", "quantize", gguf, f32, "F32"], check=True,
                       capture_output=True)
        common = ["-f", text_path, "-c", str(ctx), "-t", str(threads)]
        subprocess.run([exe, "-m", f32, *common, "--kl-divergence-base", base], check=True, capture_output=True)
        r = subprocess.run([exe, "-m", gguf, *common, "--kl-divergence-base", base, "--kl-divergence"],
                           check=True, capture_output=True, text=True)
    log = r.stdout + r.stderr

    def grab(label):
        m = re.findall(re.escape(label) + r"\s*:\s*(-?[\d.]+)", log)
        return float(m[-1]) if m else float("nan")

    return {"llama.cpp F32 file": {"ppl": grab("Mean PPL(base)"), "kl_mean": 0.0, "kl_p99": 0.0, "kl_max": 0.0,
                                   "same_top1": 1.0},
            "llama.cpp Q8 activations": {"ppl": grab("Mean PPL(Q)"), "kl_mean": grab("Mean    KLD"),
                                         "kl_p99": grab("99.0%   KLD"), "kl_max": grab("Maximum KLD"),
                                         "same_top1": grab("Same top p") / 100}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="GGUF path or a hub name (smollm2)")
    ap.add_argument("--text", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                   "apache-2.0.txt"))
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=None, help="at most this many chunks")
    ap.add_argument("--modes", default="float,int8,int8x2")
    ap.add_argument("--llama-bin", help="directory with llama.cpp's llama-perplexity")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--prefill", action="store_true", help="each chunk as one prompt (the prompt path)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    pyquant.set_num_threads(a.threads)
    model = pyquant.load(a.model, max_seq_len=a.ctx)
    text = open(a.text, encoding="utf-8").read()
    rows = pyquant_modes(model, text, a.ctx, a.modes.split(","), a.chunks,
                         prefill_logits if a.prefill else step_logits)
    if a.llama_bin:
        rows.update(llama_cpp(a.llama_bin, model.path, a.text, a.ctx, a.threads))
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    # which pyquant ran: `python bench/fidelity.py` imports an installed copy before a checkout's
    # (PYTHONPATH=. for the checkout), and a stale install measures old kernels without a word
    print(f"pyquant {os.path.dirname(pyquant.__file__)} (isa {_C.active_isa()}"
          f"{', AVX-512 VNNI builds' if getattr(_C, 'get_vnni', lambda: False)() else ''})")
    print(f"{os.path.basename(model.path)}, ctx {a.ctx}, {next(iter(rows.values()))['tokens']} scored tokens; "
          "distance from the same tool's float forward")
    print(f"{'':28s} {'PPL':>8s} {'mean KL':>10s} {'p99 KL':>9s} {'max KL':>8s} {'same top-1':>10s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['ppl']:8.4f} {r['kl_mean']:10.2e} {r['kl_p99']:9.2e} {r['kl_max']:8.4f} "
              f"{100 * r['same_top1']:9.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
