"""`pyquant estimate`: will a model fit, and how fast will it generate, in each format.

Weight bytes per format come from the model's real tensor list and each type's block geometry:
GGUF mixtures through the same per-tensor rules as `pyquant quantize` (formats/gguf/recipes.py:
Q4_K_M keeps some tensors at Q6_K, 256-blocks fall back on narrow rows), AWQ int4 g128 as its
checkpoint stores it (4 bits + an fp16 scale and a 4-bit zero per 128, embeddings and head in F16),
EXL2 at a target bpw (decoder linears at that rate, head at 6 bits, embeddings in F16). The KV cache
is what pyquant allocates (float32 K and V for every layer, GQA-aware); the runtime overhead is
measured (~300 MB for torch and buffers). Generation speed is predicted from the bytes a token
reads per weight format over what this machine's kernels stream per second, measured in a short
probe of each format's M=1 matmul (not a datasheet: on a 2-core VM the 4-bit kernels are compute-
bound, well under the DRAM roofline), plus ~0.3 ms of per-token work outside the matmuls.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from ..errors import PyquantError
from ..qtypes import REGISTRY, QType

GGUF_FORMATS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "IQ4_XS", "Q3_K_M", "Q2_K")
EXL2_BITS = (2.5, 3.0, 4.0, 5.0, 6.0)
RUNTIME_OVERHEAD = 300 * 2**20          # import torch + buffers (tests bound peak RSS at weights + 300 MiB)
KV_BYTES = 4                            # pyquant's KV cache is float32
STEP_OVERHEAD_S = 0.3e-3                # a decoded token's time outside the matmuls (README)
# Datasheet memory bandwidth (GB/s) of common GPUs, by a substring of torch.cuda.get_device_name();
# a token's weights stream at ~75% of it in a good GEMV (what bench/gpu_check.sh holds the kernels to)
GPU_BANDWIDTH = {"h200": 4800, "h100": 3350, "a100": 2039, "l40s": 864, "a10": 600, "4090": 1008, "3090": 936,
                 "4080": 717, "3080": 760, "v100": 900, "t4": 320, "l4": 300}
GPU_EFFICIENCY = 0.75
# Roughly the quality ladder (higher first), for the recommendation
QUALITY = ["F16", "Q8_0", "Q6_K", "exl2-6.0", "Q5_K_M", "exl2-5.0", "Q4_K_M", "awq-g128", "IQ4_XS", "exl2-4.0",
           "Q4_0", "Q3_K_M", "exl2-3.0", "Q2_K", "exl2-2.5"]

# (layers, d_model, ffn, heads, kv heads, head_dim, vocab, tied, context) of common architectures
ARCHS = {
    ("llama", "8B"): (32, 4096, 14336, 32, 8, 128, 128256, False, 8192),
    ("llama", "70B"): (80, 8192, 28672, 64, 8, 128, 128256, False, 8192),
    ("qwen2", "7B"): (28, 3584, 18944, 28, 4, 128, 152064, False, 32768),
    ("qwen2", "32B"): (64, 5120, 27648, 40, 8, 128, 152064, False, 32768),
    ("qwen2", "72B"): (80, 8192, 29568, 64, 8, 128, 152064, False, 32768),
    ("mistral", "7B"): (32, 4096, 14336, 32, 8, 128, 32768, False, 32768),
    ("gemma3", "27B"): (62, 5376, 21504, 32, 16, 128, 262208, True, 131072),
}


@dataclass
class Shape:
    arch: str
    n_layer: int
    d: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    context: int

    def tensors(self) -> dict[str, tuple[int, ...]]:
        """GGUF tensor name -> dims as stored (ne0 first) of a Llama-family model of this shape."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        t = {"token_embd.weight": (self.d, self.vocab), "output_norm.weight": (self.d,)}
        if not self.tied:
            t["output.weight"] = (self.d, self.vocab)
        for i in range(self.n_layer):
            p = f"blk.{i}."
            t.update({p + "attn_norm.weight": (self.d,), p + "ffn_norm.weight": (self.d,),
                      p + "attn_q.weight": (self.d, q), p + "attn_k.weight": (self.d, kv),
                      p + "attn_v.weight": (self.d, kv), p + "attn_output.weight": (q, self.d),
                      p + "ffn_gate.weight": (self.d, self.ffn), p + "ffn_up.weight": (self.d, self.ffn),
                      p + "ffn_down.weight": (self.ffn, self.d)})
        return t


@dataclass
class Estimate:
    format: str
    weight_bytes: int
    kv_bytes: int
    total_bytes: int
    bits_per_weight: float
    fits: bool
    tok_s: float


def shape_of(path=None, params: str | None = None, arch: str = "llama") -> tuple[Shape, dict | None]:
    """(Shape, the GGUF file's real tensor dims or None) of a GGUF file, a model directory, or a
    named size of a common architecture (`params` "8B", "70B", ...)."""
    if params is not None:
        key = (arch, params.upper())
        if key not in ARCHS:
            raise PyquantError(f"no table entry for {arch} {params} (known: "
                               f"{', '.join(f'{a} {p}' for a, p in ARCHS)})")
        return Shape(arch, *ARCHS[key]), None
    from ..models import open_source

    src = open_source(path)
    try:
        from ..models.config import read_config

        vocab = src.metadata.get(f"{src.architecture}.vocab_size")
        if vocab is None:
            vocab = len(src.reader.metadata.get("tokenizer.ggml.tokens", [])) if hasattr(src, "reader") else 0
        c = read_config(src.metadata, src.architecture, int(vocab or 0), src.path)
        real = None
        if hasattr(src, "reader"):   # a GGUF file: its real tensor list and types
            ts = src.reader.tensors.values()
            real = ({t.name: tuple(t.dims) for t in ts}, {t.name: t.qtype for t in ts})
        tied = not src.has("output.weight")
        return Shape(c.arch, c.n_layers, c.d_model, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size,
                     tied, c.context_length), real
    finally:
        src.close()


def _ggml_bytes(qt: QType, dims) -> int:
    info = REGISTRY[qt]
    n = math.prod(dims)
    return n // info.block_size * info.type_size


def format_bytes(shape: Shape, fmt: str, real=None) -> tuple[int, dict]:
    """(weight bytes, bytes a decoded token reads by kernel family) of the model in `fmt`."""
    from ..formats.gguf.recipes import FTYPES, ModelInfo, plan_tensors

    tensors = real[0] if real else shape.tensors()
    if fmt in FTYPES:
        model = ModelInfo(arch=shape.arch, n_layer=shape.n_layer, n_head=shape.heads, n_head_kv=shape.kv_heads)
        plan = plan_tensors(tensors, fmt, model, source_types=real[1] if real else None)
        total, per_token = 0, {}
        for name, qt in plan.items():
            b = _ggml_bytes(qt, tensors[name])
            total += b
            if name == "token_embd.weight":
                if shape.tied:
                    per_token[qt.name] = per_token.get(qt.name, 0) + b
                continue
            if len(tensors[name]) == 2:
                per_token[qt.name] = per_token.get(qt.name, 0) + b
        return total, per_token
    linears = sum(math.prod(d) for n, d in tensors.items() if n.startswith("blk.") and len(d) == 2)
    small = sum(math.prod(d) for n, d in tensors.items() if len(d) == 1) * 4
    embd = shape.vocab * shape.d
    head = 0 if shape.tied else embd
    if fmt == "awq-g128":
        lin_b = linears // 2 + linears // 128 * 2 + linears // 256     # codes, fp16 scales, 4-bit zeros
        return lin_b + 2 * (embd + head) + small, {"int4": lin_b, "F16": 2 * (head or embd)}
    if fmt.startswith("exl2-"):
        bpw = float(fmt.split("-")[1])
        lin_b = int(linears * bpw / 8)
        head_b = int(shape.vocab * shape.d * 6.3 / 8)                   # head_bits 6: [8, 6] layouts
        return lin_b + head_b + 2 * embd + small, {"exl2": lin_b, "exl2-head": head_b}
    raise PyquantError(f"unknown format {fmt!r}")


def kernel_speeds(families, n: int = 4096, k: int = 4096) -> dict[str, float]:
    """Bytes per second each kernel family streams at M = 1 on this machine (the runner's direct CPU
    path), on a weight of 4096 rows of the model's own row length k (capped at 4096: the row length
    sets how each kernel's work is split), cold: rotated through copies filling ~256 MB, ~0.25 s per
    family."""
    import torch

    import os

    from ..kernels.cpu.interleave import supports
    from ..qtensor import QTensor

    stand_in = {"int4": ("int4", None), "exl2": ("Q4_0", None), "exl2-head": ("Q8_0", None)}
    out = {}
    g = torch.Generator().manual_seed(0)
    from ..kernels.cpu.matmul import linear_into

    n, k = 4096, min(k, 4096) // 256 * 256 or 256
    w = torch.randn(n, k, generator=g)
    x = torch.randn(1, k, generator=g)
    y = torch.empty(1, n)

    for fam in families:
        qname = stand_in.get(fam, (fam, None))[0]
        try:
            qt = QTensor.quantize(w, qname, group_size=128)
        except Exception:
            continue
        if supports(qt.qtype, qt.shape) and os.environ.get("PYQUANT_INTERLEAVE", "1") != "0":
            qt = qt.interleaved()   # the layout the runner packs this family into
        n_copies = max(2, min(64, (256 << 20) // max(qt.nbytes, 1)))
        copies = [qt] + [QTensor(qt.data.clone(), qt.qtype, qt.shape, None if qt.scales is None else qt.scales.clone(),
                                 None if qt.mins is None else qt.mins.clone(), qt.group_size,
                                 interleave=qt.interleave)
                         for _ in range(n_copies - 1)]
        linear_into(x, copies[0], y)
        t0, calls = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.25:
            linear_into(x, copies[calls % len(copies)], y)
            calls += 1
        out[fam] = copies[0].nbytes * calls / (time.perf_counter() - t0)
    return out


def memory_budget(device: str) -> tuple[str, int]:
    """('cpu'|'cuda', bytes available): given ("cpu:64GB", "cuda:24GB") or detected (MemAvailable,
    free VRAM)."""
    kind, _, size = device.partition(":")
    if kind not in ("cpu", "cuda"):
        raise PyquantError(f"--device {device!r}: cpu, cuda, cpu:64GB or cuda:24GB")
    if size:
        s = size.strip().upper().rstrip("B")
        mult = {"G": 2**30, "M": 2**20, "T": 2**40}.get(s[-1:], None)
        try:
            return kind, int(float(s[:-1] if mult else s) * (mult or 1))
        except ValueError:
            raise PyquantError(f"--device {device!r}: cannot read the size {size!r}") from None
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise PyquantError("--device cuda: no CUDA device here (name a size: cuda:24GB)")
        return kind, int(torch.cuda.mem_get_info()[0])
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return kind, int(line.split()[1]) * 1024
    raise PyquantError("cannot read the available memory (name it: cpu:16GB)")


def gpu_bandwidth(name: str | None) -> tuple[str, float] | None:
    """(table key, bytes/s) of a GPU named `name` (or the one torch sees), or None if unknown."""
    if name is None:
        try:
            import torch

            name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        except Exception:
            name = None
    if not name:
        return None
    low = name.lower().replace(" ", "")
    for key, gbs in sorted(GPU_BANDWIDTH.items(), key=lambda kv: -len(kv[0])):
        if key in low:
            return key, gbs * 1e9
    return None


def estimate(shape: Shape, ctx: int, device: str = "cpu", real=None, measure_speed: bool = True,
             formats=None, gpu: str | None = None) -> tuple[list[Estimate], dict]:
    kind, avail = memory_budget(device)
    formats = list(formats or (*GGUF_FORMATS, "awq-g128", *(f"exl2-{b}" for b in EXL2_BITS)))
    kv = ctx * shape.n_layer * shape.kv_heads * shape.head_dim * 2 * KV_BYTES
    params = sum(math.prod(d) for d in (real[0] if real else shape.tensors()).values())
    rows, per = [], {}
    for fmt in formats:
        total, per_token = format_bytes(shape, fmt, real)
        per[fmt] = per_token
        rows.append(Estimate(fmt, total, kv, total + kv + RUNTIME_OVERHEAD, 8 * total / params,
                             total + kv + RUNTIME_OVERHEAD <= avail, 0.0))
    speeds = {}
    gpu_bw = gpu_bandwidth(gpu) if kind == "cuda" else None
    if gpu_bw is not None:
        for r in rows:
            r.tok_s = 1.0 / (sum(per[r.format].values()) / (GPU_EFFICIENCY * gpu_bw[1]) + STEP_OVERHEAD_S)
    if measure_speed and kind == "cpu":
        speeds = kernel_speeds(sorted({f for p in per.values() for f in p}), shape.ffn, shape.d)
        for r in rows:
            t = sum(b / speeds[f] for f, b in per[r.format].items() if f in speeds) + STEP_OVERHEAD_S
            r.tok_s = 1.0 / t
    return rows, {"device": kind, "available_bytes": avail, "kv_bytes": kv, "parameters": params,
                  "speeds_GB_s": {k: v / 1e9 for k, v in speeds.items()},
                  "gpu": None if gpu_bw is None else {"card": gpu_bw[0], "GB_s": gpu_bw[1] / 1e9,
                                                      "efficiency": GPU_EFFICIENCY}}


def recommend(rows: list[Estimate]) -> tuple[str | None, str]:
    fitting = {r.format for r in rows if r.fits}
    best = next((f for f in QUALITY if f in fitting), None)
    if best is None:
        return None, "nothing fits: a smaller context (--ctx), more memory, or a smaller model"
    if best in ("Q3_K_M", "exl2-3.0", "Q2_K", "exl2-2.5"):
        return best, f"only sub-4-bit formats fit ({best}): expect degraded reasoning; measure it with pyquant compare"
    return best, f"{best}: the highest-quality format that fits with this context"


def as_dicts(rows):
    return [asdict(r) for r in rows]
