"""AWQ (activation-aware weight quantization, Lin et al. 2023) on a CPU, in torch, one decoder layer at
a time. The algorithm is AutoAWQ 0.2.9's (../../shared/specs/awq.md, A.6), restated:

1. Run calibration text through the float model layer by layer; per layer keep the inputs of its
   linears. The next layer's input is this layer's float output (computed before quantizing it).
2. Scale search, per group (previous op -> linears -> module whose output is compared):
   input_layernorm -> q, k, v (attention output); v -> o when there is no GQA;
   post_attention_layernorm -> gate, up (MLP output); up -> down (down's output).
   With x_mean = mean |x| per input channel and w_mean = mean over rows of |w| / max|w| of its group,
   for alpha = i / 20: s = x_mean^alpha / (w_mean^(1 - alpha) + 1e-4), normalized by sqrt(max s * min s);
   the loss is the mean squared error of the compared output when each W is replaced by Q(W s) / s.
   The best s is folded in: the previous op's output channels are divided by s, the linears' input
   columns multiplied by s (the float model computes the same function).
3. Clip search for every linear but q and k: per output row and group, the clamp max|w| * (1 - i/20),
   i < 10, whose fake-quantized partial dot products with the inputs are closest to the original.
4. Round to nearest with that clamp (AWQ's asymmetric quantizer, fp16 scales) and pack.

Where AutoAWQ takes ~36 min on this 2-core machine kind for SmolLM2 (fp16 matmuls on a CPU, one
search forward per grid point over every calibration token), this runs the searches in float32 on a
subsample of the calibration tokens (`search_tokens` for the scale search, `clip_tokens` for the clip
search; statistics use them all) and the clip search as one batched matmul per shrink step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import PyquantError
from .calib import FloatLayer, layer_setup


@dataclass
class AWQOptions:
    group_size: int = 128
    version: str = "gemm"        # or "gemv_fast"
    search: bool = True          # False: round to nearest (the baseline AWQ is measured against)
    n_grid: int = 20
    max_shrink: float = 0.5
    seq_len: int = 512
    max_blocks: int = 128
    search_tokens: int = 2048    # tokens (whole sequences) each scale-search loss is measured on
    clip_tokens: int = 512
    duo_scaling: bool = True


# ---------------------------------------------------------------------------------- quantizer
def quant_params(w: torch.Tensor, g: int):
    """AWQ's asymmetric 4-bit parameters of w [N, K] per group of g: (scales fp16-rounded float32,
    zeros float32) [N, K/g]; scale = max(max - min, 1e-5) / 15, zero = clamp(-round(min / scale), 0, 15)."""
    n, k = w.shape
    wg = w.reshape(n, k // g, g)
    s = ((wg.amax(-1) - wg.amin(-1)).clamp(min=1e-5) / 15).half().float().clamp(min=2**-24)
    z = (-torch.round(wg.amin(-1) / s)).clamp(0, 15)
    return s, z


def _grouped_codes(w: torch.Tensor, g: int):
    """(codes q float [N, K/g, g] 0..15, scales, zeros [N, K/g]): q = clamp(round(w / s) + z, 0, 15)."""
    n, k = w.shape
    s, z = quant_params(w, g)
    q = (torch.round(w.reshape(n, k // g, g) / s[..., None]) + z[..., None]).clamp(0, 15)
    return q, s, z


def quantize_codes(w: torch.Tensor, g: int):
    """(codes uint8 [N, K], zeros uint8 [N, K/g], scales fp16 [N, K/g])."""
    q, s, z = _grouped_codes(w, g)
    return q.reshape(w.shape).to(torch.uint8), z.to(torch.uint8), s.half()


def fake_quant(w: torch.Tensor, g: int) -> torch.Tensor:
    """w through AWQ's quantizer and back: (q - z) * s, float32 [N, K]."""
    q, s, z = _grouped_codes(w, g)
    return ((q - z[..., None]) * s[..., None]).reshape(w.shape)


# ---------------------------------------------------------------------------------- searches
def search_scales(x: torch.Tensor, weights: list, inspect, ref: torch.Tensor, opt: AWQOptions) -> torch.Tensor:
    """The per-input-channel scale s of the linears `weights` (sharing input x) minimizing
    |inspect(Q(W s) / s ...) - ref|^2."""
    g = opt.group_size
    x_mean = x.abs().reshape(-1, x.shape[-1]).mean(0)
    w = torch.cat(weights, 0)
    wg = w.abs().reshape(-1, g)
    w_mean = (wg / wg.amax(1, keepdim=True).clamp(min=1e-12)).reshape(w.shape).mean(0)
    best, best_s = math.inf, None
    for i in range(opt.n_grid):
        a = i / opt.n_grid
        if opt.duo_scaling:
            s = (x_mean.pow(a) / (w_mean.pow(1 - a) + 1e-4)).clamp(min=1e-4)
        else:
            s = x_mean.pow(a).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        out = inspect([fake_quant(W * s, g) / s for W in weights])
        loss = float((ref - out).pow(2).mean())
        if loss < best:
            best, best_s = loss, s.clone()
    if best_s is None:
        raise PyquantError("AWQ scale search: every grid point gave a NaN loss (non-finite activations)")
    return best_s


def search_clip(w: torch.Tensor, x: torch.Tensor, opt: AWQOptions) -> torch.Tensor:
    """Per (row, group) clamp of w [N, K] whose fake-quantized group dot products with x [T, K] are
    closest to the original; returns max |w| [N, K/g]."""
    g = opt.group_size
    n, k = w.shape
    ng = k // g
    xg = x.reshape(-1, ng, g).permute(1, 0, 2)                      # [ng, T, g]
    best = torch.empty(n, ng)
    for r0 in range(0, n, 256):
        wg = w[r0:r0 + 256].reshape(-1, ng, g)                       # [n', ng, g]
        org_max = wg.abs().amax(-1)                                  # [n', ng]
        ref = torch.bmm(xg, wg.permute(1, 2, 0))                     # [ng, T, n']
        min_err = torch.full_like(org_max, math.inf)
        best_max = org_max.clone()
        for i in range(int(opt.max_shrink * opt.n_grid)):
            mx = org_max * (1 - i / opt.n_grid)
            cur = torch.maximum(torch.minimum(wg, mx[..., None]), -mx[..., None])
            q = fake_quant(cur.reshape(-1, k), g).reshape(-1, ng, g)
            err = (torch.bmm(xg, q.permute(1, 2, 0)) - ref).pow(2).mean(1).t()   # [n', ng]
            better = err < min_err
            min_err = torch.where(better, err, min_err)
            best_max = torch.where(better, mx, best_max)
        best[r0:r0 + 256] = best_max
    return best


def _clamp_rows(w: torch.Tensor, mx: torch.Tensor, g: int) -> torch.Tensor:
    n, k = w.shape
    wg = w.reshape(n, k // g, g)
    return torch.maximum(torch.minimum(wg, mx[..., None]), -mx[..., None]).reshape(n, k)


def quantize_layer(layer: FloatLayer, x: torch.Tensor, inp: dict, rope, opt: AWQOptions) -> None:
    """Scale and clip searches on one layer's float weights (in place), given its input x [B, T, d]
    and the inputs of its linears over every calibration token (inp, for the statistics)."""
    W, g = layer.w, opt.group_size
    per = max(1, opt.search_tokens // x.shape[1])
    xs = x[:per]                                                     # whole sequences: attention is causal
    _, sub = layer.forward(xs, rope, keep=True)

    # input_layernorm -> q, k, v, measured on the attention output (o_proj applied)
    ref = layer.lin("o_proj", layer.attention(sub["qkv"], rope))
    s = search_scales(inp["qkv"], [W["q_proj"], W["k_proj"], W["v_proj"]],
                      lambda ws: layer.lin("o_proj", layer.attention(sub["qkv"], rope, *ws)), ref, opt)
    W["ln1"] /= s
    for n in ("q_proj", "k_proj", "v_proj"):
        W[n] *= s
    # v -> o, only without grouped-query attention (v's rows then map one to one onto o's columns)
    if W["v_proj"].shape == W["o_proj"].shape:
        ref = layer.lin("o_proj", sub["o"])
        s = search_scales(inp["o"], [W["o_proj"]], lambda ws: layer.lin("o_proj", sub["o"], ws[0]), ref, opt)
        W["v_proj"] /= s[:, None]
        if W["v_proj.bias"] is not None:
            W["v_proj.bias"] /= s
        W["o_proj"] *= s
    # post_attention_layernorm -> gate, up, measured on the MLP output
    h2 = sub["gate_up"]
    ref = layer.lin("down_proj", layer.mlp_hidden(h2))
    s = search_scales(inp["gate_up"], [W["gate_proj"], W["up_proj"]],
                      lambda ws: layer.lin("down_proj", layer.mlp_hidden(h2, *ws)), ref, opt)
    W["ln2"] /= s
    W["gate_proj"] *= s
    W["up_proj"] *= s
    # up -> down
    _, sub = layer.forward(xs, rope, keep=True)                     # inputs after the scalings above
    ref = layer.lin("down_proj", sub["down"])
    s = search_scales(inp["down"], [W["down_proj"]], lambda ws: layer.lin("down_proj", sub["down"], ws[0]),
                      ref, opt)
    W["up_proj"] /= s[:, None]
    if W["up_proj.bias"] is not None:
        W["up_proj.bias"] /= s
    W["down_proj"] *= s

    # clip search on the scaled model's inputs (q and k are left alone: their errors are softmaxed)
    _, sub = layer.forward(xs, rope, keep=True)
    gen = torch.Generator().manual_seed(0)
    for names, key in ((("o_proj",), "o"), (("v_proj",), "qkv"), (("gate_proj", "up_proj"), "gate_up"),
                       (("down_proj",), "down")):
        feats = sub[key].reshape(-1, sub[key].shape[-1])
        idx = torch.randperm(feats.shape[0], generator=gen)[:opt.clip_tokens]
        for n in names:
            W[n] = _clamp_rows(W[n], search_clip(W[n], feats[idx], opt), g)


# ---------------------------------------------------------------------------------- driver
def quantize_model(src, ids: torch.Tensor, opt: AWQOptions, progress=None) -> dict:
    """AWQ of every decoder-layer linear of `src` (config dict .config, float tensors by HF name
    .get(name), `name in src`). Returns the checkpoint's tensors (HF names): gemm / gemv_fast packed
    linears, the rest (scaled norms, embeddings, lm_head) in fp16."""
    from ..formats.awq import writer

    c = src.config
    cfg, rope = layer_setup(c, ids.shape[1])
    g = opt.group_size
    for k in (c["hidden_size"], c["intermediate_size"], cfg["heads"] * cfg["head_dim"]):
        if k % g:
            raise PyquantError(f"AWQ: in_features {k} is not a multiple of group_size {g}")
    out = {}
    emb = src.get("model.embed_tokens.weight")
    x = F.embedding(ids, emb)
    out["model.embed_tokens.weight"] = emb.half()
    if "lm_head.weight" in src and not c.get("tie_word_embeddings", False):
        out["lm_head.weight"] = src.get("lm_head.weight").half()
    out["model.norm.weight"] = src.get("model.norm.weight").half()
    n_layers = c["num_hidden_layers"]
    t0 = time.perf_counter()
    for i in range(n_layers):
        prefix = f"model.layers.{i}"
        layer = FloatLayer(src.get, src.__contains__, prefix, cfg)
        with torch.no_grad():
            x_next, inp = layer.forward(x, rope, keep=opt.search)   # the float output feeds the next layer
            if opt.search:
                quantize_layer(layer, x, inp, rope, opt)
            del inp
        W = layer.w
        out[f"{prefix}.input_layernorm.weight"] = W["ln1"].half()
        out[f"{prefix}.post_attention_layernorm.weight"] = W["ln2"].half()
        for n in ("q_norm", "k_norm"):
            if W[n] is not None:
                out[f"{prefix}.self_attn.{n}.weight"] = W[n].half()
        for n in FloatLayer.LINEARS:
            mod = f"{prefix}.{'self_attn' if n[0] in 'qkvo' else 'mlp'}.{n}"
            codes, zeros, scales = quantize_codes(W[n], g)
            if opt.version == "gemm":
                qw, qz, sc = writer.pack_gemm(codes, zeros, scales)
            else:
                qw, sc, qz = writer.pack_gemv_fast(codes, zeros, scales, g)
            out.update({f"{mod}.qweight": qw, f"{mod}.qzeros": qz, f"{mod}.scales": sc})
            if W[n + ".bias"] is not None:
                out[f"{mod}.bias"] = W[n + ".bias"].half()
        x = x_next
        if progress is not None:
            progress(i + 1, n_layers, time.perf_counter() - t0)
    return out
