"""EXL2 conversion on a CPU: GPTQ with act-order on mixed-bit group layouts, a bit allocation that
meets a target bits per weight, layer by layer (../../shared/specs/exl2.md, B.7), in torch.

1. Measurement pass. The float model runs the calibration text layer by layer; per Linear its
   Hessian H = X^T X (q/k/v share one, gate/up one) is accumulated, and every candidate layout in
   OPTIONS is quantized with GPTQ; its error is the relative output error on the calibration inputs,
   tr(E H E^T) / tr(W H W^T) with E = W - Q(W) (no forward needed).
2. Allocation. Every Linear starts at the cheapest option; the upgrade with the largest error
   reduction per extra bit (weighted by the Linear's size) is taken until the budget, target bpw
   times the decoder's weights, is spent: a greedy on the convex hull of each Linear's (bits, error)
   points instead of ExLlamaV2's simulated annealing over block-level accuracies.
3. Quantization pass. The layers run again, now fed the quantized model's states (each layer sees
   the upstream quantization error), H is collected again and each Linear is quantized with GPTQ at
   its chosen layout and packed (formats/exl2/writer.py).

GPTQ (Frantar et al. 2022) here: rows of Wt = W.T in act-order (descending diag H), H damped by
0.12 mean(diag H) (ExLlamaV2's percdamp), the upper Cholesky factor of H^-1; per group, ExLlamaV2's
scale search on the current (error-compensated) rows, then row by row quantize, spread the error to
the group's later rows, and after the group to every later row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import PyquantError
from ..formats.exl2 import writer

# Candidate layouts: (bit widths, proportions, group size per width), cheapest first. Group sizes
# are multiples of 32 so every layout repacks exactly into ggml blocks (formats/exl2/reader.py).
OPTIONS = [
    ([3, 2], [0.25, 0.75], {3: 32, 2: 32}),
    ([3], [1.0], {3: 64}),
    ([4, 3], [0.5, 0.5], {4: 64, 3: 64}),
    ([4], [1.0], {4: 128}),
    ([4], [1.0], {4: 32}),
    ([5, 4], [0.5, 0.5], {5: 64, 4: 64}),
    ([5], [1.0], {5: 64}),
    ([6, 5], [0.5, 0.5], {6: 64, 5: 64}),
    ([6], [1.0], {6: 128}),
    ([8, 6], [0.1, 0.9], {8: 32, 6: 32}),
    ([8], [1.0], {8: 128}),
]
HEAD_OPTIONS = {2: ([3, 2], [0.25, 0.75], {3: 32, 2: 32}), 3: ([3], [1.0], {3: 64}), 4: ([4], [1.0], {4: 128}),
                5: ([5], [1.0], {5: 128}), 6: ([8, 6], [0.15, 0.85], {8: 128, 6: 128}), 8: ([8], [1.0], {8: 128})}


@dataclass
class Exl2Options:
    bits: float = 4.0
    head_bits: int = 6
    seq_len: int = 512
    max_blocks: int = 128
    damp: float = 0.12


def inverse_hessian(H: torch.Tensor, perm: torch.Tensor, damp: float = 0.12):
    """(upper Cholesky factor of the damped H^-1 in act-order, mask of dead input channels)."""
    Hp = H[perm][:, perm].clone()
    dead = torch.diagonal(Hp) == 0
    Hp[dead, dead] = 1.0
    Hp.diagonal().add_(damp * float(torch.diagonal(Hp).mean()))
    for _ in range(6):
        try:
            L = torch.linalg.cholesky(Hp)
            break
        except RuntimeError:      # not positive definite: more damping, as ExLlamaV2 retries
            Hp.diagonal().add_(damp * float(torch.diagonal(Hp).mean()))
    else:
        raise PyquantError("GPTQ: the Hessian stays singular after damping")
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True), dead


def gptq(w: torch.Tensor, H: torch.Tensor, groups: list, perm: torch.Tensor, damp: float = 0.12, prepared=None):
    """GPTQ of w [N, K] float32 with Hessian H [K, K] (input channels), rows of Wt in act-order `perm`,
    in `groups` [(bits, rows)] (prepared: inverse_hessian(H, perm, damp), shared by calls on one H).
    Returns (codes [K, Np] uint values, scale codes [G, Np], q_scale_max [G] fp16, scales [G, Np] fp16)."""
    n, k = w.shape
    np_ = -(-n // 32) * 32
    Wt = torch.zeros(k, np_)
    Wt[:, :n] = w.t()[perm]
    Hinv, dead = prepared if prepared is not None else inverse_hessian(H, perm, damp)
    Wt[dead] = 0
    codes, scodes, qsms, scales = torch.zeros(k, np_, dtype=torch.int64), [], [], []
    row = 0
    for bits, rows in groups:
        a, b = row, row + rows
        c, qsm, scale = writer.find_scale(Wt[a:b], bits)
        s = scale.float()
        qzero, maxq = 2 ** (bits - 1), 2 ** bits - 1
        err = torch.zeros(rows, np_)
        for r in range(a, b):
            x = Wt[r]
            q = torch.clamp(torch.round(x / s) + qzero, 0, maxq)
            codes[r] = q.to(torch.int64)
            e = (x - (q - qzero) * s) / Hinv[r, r]
            err[r - a] = e
            if r + 1 < b:
                Wt[r + 1:b] -= Hinv[r, r + 1:b, None] * e[None, :]
        if b < k:
            Wt[b:] -= Hinv[a:b, b:].t() @ err
        scodes.append(c)
        qsms.append(qsm)
        scales.append(scale)
        row = b
    codes[:, n:] = torch.tensor([2 ** (bits - 1) for bits, rows in groups for _ in range(rows)])[:, None]
    return codes, torch.stack(scodes), torch.stack(qsms), torch.stack(scales)


def reconstruct(codes, scales, groups, perm, n) -> torch.Tensor:
    """[N, K] float32: the exact products (q - 2^(b-1)) * scale, input channels un-permuted (what the
    EXL2 reader hands the kernels: formats/exl2/layouts.dequantize)."""
    from ..formats.exl2.layouts import Exl2Canonical, Group, dequantize

    zero = torch.cat([torch.full((rows,), 2 ** (bits - 1)) for bits, rows in groups])
    values = (codes[:, :n] - zero[:, None]).to(torch.int16)
    return dequantize(Exl2Canonical(values, scales[:, :n], [Group(b, 0, r, 0) for b, r in groups], perm),
                      torch.float32)


def option_bits(opt, n: int, k: int) -> float:
    from ..formats.exl2.layouts import Group, bits_per_weight

    groups = writer.layout(k, *opt)
    return bits_per_weight([Group(b, 0, r, 0) for b, r in groups], n, k) * n * k


def rel_error(w, wq, H) -> float:
    e = (w - wq)
    num = float(torch.einsum("nk,kl,nl->", e, H, e))
    den = float(torch.einsum("nk,kl,nl->", w, H, w))
    return num / max(den, 1e-30)


def allocate(cands: dict, budget: float) -> dict:
    """cands: linear -> [(bits, err)] per option index; returns linear -> option index, greedily
    taking the best error reduction per extra bit until the budget is spent."""
    choice = {name: min(range(len(c)), key=lambda i: c[i][0]) for name, c in cands.items()}
    spent = sum(cands[nm][i][0] for nm, i in choice.items())
    while True:
        best = None
        for nm, c in cands.items():
            b0, e0 = c[choice[nm]]
            for i, (b, e) in enumerate(c):
                if b > b0 and e < e0 and spent - b0 + b <= budget:
                    gain = (e0 - e) / (b - b0)
                    if best is None or gain > best[0]:
                        best = (gain, nm, i, b - b0)
        if best is None:
            return choice
        _, nm, i, db = best
        choice[nm] = i
        spent += db


ROLES = (("self_attn", "q_proj", "qkv"), ("self_attn", "k_proj", "qkv"), ("self_attn", "v_proj", "qkv"),
         ("self_attn", "o_proj", "o"), ("mlp", "gate_proj", "gate_up"), ("mlp", "up_proj", "gate_up"),
         ("mlp", "down_proj", "down"))


def _hessians(layer, x, rope) -> dict:
    """H = X^T X over every calibration token for each input of the layer (float64 accumulation)."""
    _, inp = layer.forward(x, rope, keep=True)
    out = {}
    for key, t in inp.items():
        t2 = t.reshape(-1, t.shape[-1]).double()
        out[key] = (t2.t() @ t2 / t2.shape[0]).float()
    return out


def option_names() -> list[str]:
    """ExLlamaV2-style descriptions of OPTIONS ("0.25:3b_32g/0.75:2b_32g"), the measurement's key."""
    return ["/".join(f"{p}:{b}b_{g[b]}g" for b, p in zip(bits, props)) for bits, props, g in OPTIONS]


def load_measurement(path) -> dict:
    import json

    from ..errors import FormatError

    try:
        m = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as e:
        raise FormatError(path, f"cannot read the measurement: {e}") from None
    if not isinstance(m, dict) or m.get("options") != option_names() or not isinstance(m.get("linears"), dict):
        raise FormatError(path, "measurement was made with other candidate layouts (or is not one): measure again")
    return {k: [tuple(p) for p in v] for k, v in m["linears"].items()}


def convert(src, ids: torch.Tensor, opt: Exl2Options, progress=None, measurement: dict | None = None):
    """EXL2 tensors (HF names) of `src` (a float checkpoint: .config, .get(name), `name in src`), a
    report {linear: (option, bpw, relative output error, weights)} and the measurement {linear:
    [(bits, weighted error) per option]} (given: the measurement pass is skipped)."""
    from .calib import FloatLayer, layer_setup

    c = src.config
    cfg, rope = layer_setup(c, ids.shape[1])
    n_layers = c["num_hidden_layers"]
    emb = src.get("model.embed_tokens.weight")
    t0 = time.perf_counter()

    # 1. measurement: float states, every option of every linear
    cands = measurement or {}
    # the decoder linears' weights, from the config (loading each one to count it dequantized a
    # GGUF source's every linear once more)
    d, ffn, q, kv = c["hidden_size"], c["intermediate_size"], cfg["heads"] * cfg["head_dim"], \
        cfg["kv_heads"] * cfg["head_dim"]
    numel = n_layers * (2 * d * q + 2 * d * kv + 3 * d * ffn)
    x = F.embedding(ids, emb)
    for i in range(n_layers if measurement is None else 0):
        layer = FloatLayer(src.get, src.__contains__, f"model.layers.{i}", cfg)
        with torch.no_grad():
            H = _hessians(layer, x, rope)
            for sub, name, key in ROLES:
                w = layer.w[name]
                n, k = w.shape
                perm = torch.argsort(torch.diagonal(H[key]), descending=True)
                prep = inverse_hessian(H[key], perm, opt.damp)
                pts = []
                for o in OPTIONS:
                    groups = writer.layout(k, *o)
                    codes, _, _, sc = gptq(w, H[key], groups, perm, opt.damp, prep)
                    pts.append((option_bits(o, n, k), rel_error(w, reconstruct(codes, sc, groups, perm, n), H[key])))
                cands[f"model.layers.{i}.{sub}.{name}"] = [(b, e * n * k) for b, e in pts]
            x, _ = layer.forward(x, rope)
        if progress:
            progress("measure", i + 1, n_layers, time.perf_counter() - t0)
    missing = [f"model.layers.{i}.{sub}.{name}" for i in range(n_layers) for sub, name, _ in ROLES
               if f"model.layers.{i}.{sub}.{name}" not in cands]
    if missing:
        raise PyquantError(f"the measurement has no entry for {missing[0]} (another model?)")
    choice = allocate(cands, opt.bits * numel)

    # 3. quantization: quantized states, chosen options
    out = {"model.embed_tokens.weight": emb.half(), "model.norm.weight": src.get("model.norm.weight").half()}
    report = {}
    x = F.embedding(ids, emb)
    for i in range(n_layers):
        prefix = f"model.layers.{i}"
        layer = FloatLayer(src.get, src.__contains__, prefix, cfg)
        with torch.no_grad():
            H = _hessians(layer, x, rope)
            for sub, name, key in ROLES:
                full = f"{prefix}.{sub}.{name}"
                w = layer.w[name]
                n, k = w.shape
                o = OPTIONS[choice[full]]
                groups = writer.layout(k, *o)
                perm = torch.argsort(torch.diagonal(H[key]), descending=True)
                codes, scodes, qsms, sc = gptq(w, H[key], groups, perm, opt.damp)
                wq = reconstruct(codes, sc, groups, perm, n)
                report[full] = (o, option_bits(o, n, k) / (n * k), rel_error(w, wq, H[key]), n * k)
                out.update({f"{full}.{s}": v for s, v in writer.pack_linear(codes, scodes, qsms, groups, perm).items()})
                if layer.w[name + ".bias"] is not None:
                    out[f"{full}.bias"] = layer.w[name + ".bias"].half()
                layer.w[name] = wq                       # the next layers see the quantized model
            out[f"{prefix}.input_layernorm.weight"] = layer.w["ln1"].half()
            out[f"{prefix}.post_attention_layernorm.weight"] = layer.w["ln2"].half()
            for nrm in ("q_norm", "k_norm"):
                if layer.w[nrm] is not None:
                    out[f"{prefix}.self_attn.{nrm}.weight"] = layer.w[nrm].half()
            x, _ = layer.forward(x, rope)
        if progress:
            progress("quantize", i + 1, n_layers, time.perf_counter() - t0)
    # the head: GPTQ on the final normed states at head_bits
    head = src.get("lm_head.weight") if "lm_head.weight" in src else emb
    with torch.no_grad():
        h = torch.rms_norm(x, (x.shape[-1],), src.get("model.norm.weight").float(), cfg["eps"])
        h2 = h.reshape(-1, h.shape[-1]).double()
        Hh = (h2.t() @ h2 / h2.shape[0]).float()
        n, k = head.shape
        o = HEAD_OPTIONS[opt.head_bits]
        groups = writer.layout(k, *o)
        perm = torch.argsort(torch.diagonal(Hh), descending=True)
        codes, scodes, qsms, sc = gptq(head.float(), Hh, groups, perm, opt.damp)
        out.update({f"lm_head.{s}": v for s, v in writer.pack_linear(codes, scodes, qsms, groups, perm).items()})
        report["lm_head"] = (o, option_bits(o, n, k) / (n * k),
                             rel_error(head.float(), reconstruct(codes, sc, groups, perm, n), Hh), n * k)
    return out, report, cands
