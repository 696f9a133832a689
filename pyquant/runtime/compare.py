"""`pyquant compare`: what each quantized version of a model loses against a base, measured on the
user's own text, side by side across GGUF, AWQ and EXL2 checkpoints.

Per model: perplexity by llama-perplexity's procedure (runtime/perplexity.py) and, at every scored
position, the KL divergence of its next-token distribution from the base model's and whether both
pick the same top token (llama.cpp's --kl-divergence statistics: mean KLD, its 99th percentile,
"same top"). The base runs first and its scored log-probabilities are kept in memory in float32
(scored tokens x vocabulary x 4 bytes: 210 MB for SmolLM2 on tests/data/apache-2.0.txt at ctx 128;
fp16 would add ~5e-5 of rounding to every KLD, more than int8x2 activations move a model).
Every model must tokenize the text identically (they are versions of one model).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import PyquantError


@dataclass
class CompareRow:
    model: str
    format: str
    size_mib: float
    file_bpw: float            # bits per weight of the decoder's linears in the checkpoint
    read_bpw: float            # ... as pyquant's kernels read them (AWQ / EXL2 are repacked at load)
    ppl: float
    kld_mean: float
    kld_p99: float
    same_top1: float           # fraction of scored positions whose argmax equals the base's
    prompt_tok_s: float        # the perplexity run's tokens per second (batched prefill)
    gen_tok_s: float           # 32 tokens generated one at a time
    peak_rss_mib: float | None  # the process's peak RSS while this model loaded and ran (Python, torch and
    #                             the base's kept log-probs included: what running it needs); None off Linux
    scored: int


def describe_format(path) -> str:
    from ..formats.detect import kind

    p = Path(path)
    k = kind(p)
    if k == "gguf":
        from ..formats.gguf import GGUFReader

        with GGUFReader(p) as r:
            types = {}
            for t in r.tensors.values():
                if len(t.shape) == 2 and t.name.startswith("blk."):
                    types[t.qtype.name] = types.get(t.qtype.name, 0) + t.n_elements
        return "gguf " + "/".join(sorted(types, key=types.get, reverse=True)[:2])
    if k in ("awq", "compressed-tensors"):
        import json

        from ..formats.awq.config import read_awq_config

        q = read_awq_config(p, json.loads((p / "config.json").read_text()))
        return f"{k} {q.version} g{q.group_size}"
    if k == "exl2":
        import json

        q = json.loads((p / "config.json").read_text()).get("quantization_config") or {}
        return f"exl2 {q.get('bits', '?')} bpw"
    return k


def materialize(spec: str) -> Path:
    """A model argument: a path or alias as it is, or a recipe `SRC:Q4_K_M` / `SRC:awq-g128` /
    `SRC:exl2-4.0` built once from SRC (any GGUF mixture name, AWQ group 32/64/128, EXL2 2-8 bpw) by
    `pyquant quantize` / `awq` / `exl2` into $PYQUANT_CACHE/compare/ and reused while SRC is unchanged."""
    import hashlib

    from ..formats.gguf.recipes import FTYPES, FTYPE_ALIASES
    from ..hub import cache_dir, resolve

    if Path(spec).exists() or ":" not in spec:
        return resolve(spec)
    src, recipe = spec.rsplit(":", 1)
    src_path = resolve(src)
    st = src_path.stat()
    key = hashlib.sha256(f"{src_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{recipe}".encode()).hexdigest()[:12]
    r = recipe.upper()
    if r in FTYPES or r in FTYPE_ALIASES:
        out, argv = f"{src_path.stem}-{r}-{key}.gguf", ["quantize", str(src_path), "{out}", r, "--quiet"]
    elif recipe.startswith("awq-g") and recipe[5:] in ("32", "64", "128"):
        out, argv = f"{src_path.stem}-{recipe}-{key}", ["awq", str(src_path), "{out}", "--group-size", recipe[5:]]
    elif recipe.startswith("exl2-"):
        try:
            bits = float(recipe[5:])
        except ValueError:
            bits = 0.0
        if not 2.0 <= bits <= 8.0:
            raise PyquantError(f"{spec}: EXL2 recipes are exl2-B with 2 <= B <= 8 bits per weight")
        out, argv = f"{src_path.stem}-{recipe}-{key}", ["exl2", str(src_path), "{out}", "--bits", str(bits)]
    else:
        raise PyquantError(f"{spec}: unknown recipe {recipe!r} (a GGUF type such as Q4_K_M, awq-g128, exl2-4.0)")
    target = cache_dir() / "compare" / out
    done = target.with_name(target.name + ".done")
    if not done.exists():
        from ..cli import main

        target.parent.mkdir(parents=True, exist_ok=True)
        if main([a.replace("{out}", str(target)) for a in argv]) != 0:
            raise PyquantError(f"{spec}: building it failed (see above)")
        done.touch()
    return target


def _size(path) -> int:
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.glob("*.safetensors"))


def _file_bpw(path) -> float:
    p = Path(path)
    if p.is_dir():
        from ..formats.hf.summary import summarize_directory

        s = summarize_directory(p)
        if s.get("exl2_layers"):
            layers = [e for e in s["exl2_layers"] if e["layer"] != "head"]
            return sum(e["bits_per_weight"] for e in layers) / max(len(layers), 1)
        return s.get("quantized_bits_per_weight") or 16.0
    from ..formats.gguf import GGUFReader

    with GGUFReader(p) as r:
        ts = [t for t in r.tensors.values() if len(t.shape) == 2 and t.name.startswith("blk.")]
        return 8.0 * sum(t.nbytes for t in ts) / max(sum(t.n_elements for t in ts), 1)


def _linear_bpw(model) -> float:
    bits = weights = 0
    for L in model.layers:
        for lin in (*L.qkv, L.wo, *L.gate_up, L.down):
            bits += 8 * lin.qt.nbytes
            weights += lin.out_features * lin.in_features
    return bits / weights if weights else 0.0


def compare(paths: list, text: str, ctx: int = 512, max_chunks: int | None = None, base=None,
            progress=None) -> list[CompareRow]:
    """Rows for `paths` (GGUF files / aliases / model directories / recipes such as `smollm2:Q4_K_M`,
    see materialize), measured against `base` (default: the first of them)."""
    from ..models import load
    from .memory import peak_rss_mib, reset_peak_rss
    from .perplexity import perplexity
    from .sampling import Sampler

    runs = ([base] if base is not None else []) + list(paths)
    base_lp: list[torch.Tensor] = []
    base_tokens = None
    rows = []
    first = ctx // 2
    for i, path in enumerate(runs):
        p = materialize(str(path))
        reset_peak_rss()
        m = load(p, max_seq_len=ctx)
        tokens = m.tokenizer.encode(text, parse_special=False)
        if base_tokens is None:
            base_tokens = tokens
        elif tokens != base_tokens:
            raise PyquantError(f"{p}: tokenizes the text differently from the base model: compare versions of "
                               f"one model")
        kls, same = [], []
        chunk = [0]

        def forward(ids, m=m, i=i):
            logits = m.forward(ids, 0, all_logits=True)
            lp = torch.log_softmax(logits[first:ctx - 1].float(), dim=-1)
            if i == 0:
                base_lp.append(lp)
            b = base_lp[chunk[0]]
            kls.append((b.exp() * (b - lp)).sum(-1).clamp(min=0))
            same.append(b.argmax(-1) == lp.argmax(-1))
            chunk[0] += 1
            return logits

        r = perplexity(m, text, ctx=ctx, max_chunks=max_chunks, forward=forward)
        kl = torch.cat(kls).double()
        t0 = time.perf_counter()
        from .generate import generate_tokens

        sampler = Sampler(temperature=0.0)
        n_gen = sum(1 for _ in generate_tokens(m, tokens[:8], 32, sampler))
        gen = n_gen / (time.perf_counter() - t0) if n_gen else 0.0
        row = CompareRow(model=str(path), format=describe_format(p), size_mib=_size(p) / 2**20,
                         file_bpw=_file_bpw(p), read_bpw=_linear_bpw(m), ppl=r.ppl, kld_mean=float(kl.mean()),
                         kld_p99=float(torch.quantile(kl, 0.99)), same_top1=float(torch.cat(same).double().mean()),
                         prompt_tok_s=r.n_chunks * r.ctx / r.seconds if r.seconds else 0.0, gen_tok_s=gen,
                         peak_rss_mib=peak_rss_mib(), scored=r.n_scored)
        if base is None or i > 0:
            rows.append(row)
        if progress:
            progress(row)
        del m, forward
    return rows


def as_dicts(rows) -> list[dict]:
    return [asdict(r) for r in rows]


def format_table(rows) -> str:
    head = f"{'model':<28} {'format':<22} {'MiB':>7} {'bpw':>6} {'read':>6} {'PPL':>9} {'KLD':>9} " \
           f"{'KLD p99':>9} {'same top':>8} {'pp t/s':>7} {'tg t/s':>7} {'peak MiB':>8}"
    lines = [head]
    for r in rows:
        name = r.model if len(r.model) <= 28 else "..." + r.model[-25:]
        lines.append(f"{name:<28} {r.format:<22} {r.size_mib:>7.1f} {r.file_bpw:>6.2f} {r.read_bpw:>6.2f} {r.ppl:>9.4f} "
                     f"{r.kld_mean:>9.5f} {r.kld_p99:>9.5f} {100 * r.same_top1:>7.1f}% {r.prompt_tok_s:>7.0f} "
                     f"{r.gen_tok_s:>7.0f} {'' if r.peak_rss_mib is None else f'{r.peak_rss_mib:.0f}':>8}")
    return "\n".join(lines)


def plot(rows, path) -> None:
    """PNG: KL divergence from the base against bits per weight (quality per bit), and generation speed
    against file size, one labelled point per model (needs matplotlib: pip install matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PyquantError("--png needs matplotlib (pip install matplotlib)") from None
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        label = Path(r.model).name or r.model
        if r.kld_mean > 0:          # the base itself (KLD 0) has no place on a log scale
            a.scatter(r.file_bpw, r.kld_mean)
            a.annotate(label, (r.file_bpw, r.kld_mean), fontsize=7)
        b.scatter(r.size_mib, r.gen_tok_s)
        b.annotate(label, (r.size_mib, r.gen_tok_s), fontsize=7)
    a.set(xlabel="bits per weight (decoder linears, as stored)", ylabel="mean KL divergence from the base",
          yscale="log", title="quality per bit")
    b.set(xlabel="size (MiB)", ylabel="generation tok/s", title="speed per size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
