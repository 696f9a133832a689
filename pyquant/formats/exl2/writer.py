"""Writes EXL2 linears and directories (ExLlamaV2's tensor names, packing and config keys), from a
float weight, a group layout and an act-order permutation, with ExLlamaV2's per-group scale search
(find_params, ../../../shared/specs/exl2.md B.5) and round-to-nearest (no GPTQ error feedback:
that is the converter's job). The inverse of layouts.py, which the tests hold it to."""
from __future__ import annotations

import math

import torch

from ..generic import int32_words, nibble_words


def layout(k: int, bits: list[int], props: list[float], group_size: dict) -> list[tuple[int, int]]:
    """ExLlamaV2's group layout (B.3): [(bits, rows)] in act-order, widths descending, the last group
    possibly shorter."""
    if list(bits) != sorted(bits, reverse=True):
        raise ValueError(f"bit widths must be listed in descending order, got {bits}")
    out, remaining = [], k
    for b, p in zip(bits, props):
        gs = group_size[b]
        n = math.ceil(min(k * p, remaining) / gs)
        for _ in range(n):
            rows = min(gs, remaining)
            if rows <= 0:
                break
            out.append((b, rows))
            remaining -= rows
    if remaining > 0:   # rounding left rows: the last width takes them
        b = bits[-1]
        while remaining > 0:
            rows = min(group_size[b], remaining)
            out.append((b, rows))
            remaining -= rows
    return out


def find_scale(w: torch.Tensor, bits: int):
    """One group's scale codes and q_scale_max (w: float32 [rows, Np]) and the fp16 scale the runtime
    will compute from them: (codes int64 [Np] 0..15, q_scale_max fp16 scalar, scale fp16 [Np])."""
    maxq, qzero = 2 ** bits - 1, 2 ** (bits - 1)
    xmax = w.abs().amax(0) + 1e-12
    base = xmax / (maxq / 2)
    smax = base.max()
    qs = torch.clamp(torch.round(torch.sqrt(base / smax) * 16), 1, 16)
    s0 = qs * qs / 256 * smax
    # 97 multipliers on [0.70, 1.20]; error = sum |Q(w) - w|^3.5 over the group, 16 multipliers at a time
    ps = 0.70 + 0.50 * torch.arange(97, dtype=torch.float32) / 96
    errs = []
    for c0 in range(0, 97, 16):
        s = s0[None, None, :] * ps[c0:c0 + 16, None, None]
        q = torch.clamp_(torch.round_(w[None] / s), -qzero, maxq - qzero)
        a = q.mul_(s).sub_(w[None]).abs_()
        errs.append((a * a * a * a.sqrt()).sum((1, 2)))        # |e|^3.5 without pow's exp/log
    best_p = float(ps[int(torch.argmin(torch.cat(errs)))])
    qsm = (smax * best_p).to(torch.float16)
    scale = (qs * qs).to(torch.float16) * (qsm / 256).to(torch.float16)
    return (qs - 1).to(torch.int64), qsm, scale


def pack_stream(q: torch.Tensor, bits: int) -> torch.Tensor:
    """uint values [rows, Np] -> int32 words [ceil(rows bits / 32), Np], each column a little-endian
    bitstream."""
    rows, np_ = q.shape
    allbits = ((q[:, None, :] >> torch.arange(bits)[None, :, None]) & 1).reshape(rows * bits, np_)
    pad = -allbits.shape[0] % 32
    if pad:
        allbits = torch.cat([allbits, torch.zeros(pad, np_, dtype=allbits.dtype)])
    return int32_words((allbits.view(-1, 32, np_) << torch.arange(32)[None, :, None]).sum(1))


def pack_linear(codes: torch.Tensor, scale_codes: torch.Tensor, q_scale_max: torch.Tensor, groups: list,
                perm: torch.Tensor) -> dict:
    """One Linear's EXL2 tensors (ExLlamaV2's names and packing) from its uint codes [K, Np] in
    act-order, scale codes [G, Np] 0..15, q_scale_max [G], groups [(bits, rows)] and perm [K]."""
    words, qgroups, qrow, row = [], [], 0, 0
    for bits, rows in groups:
        wq = pack_stream(codes[row:row + rows], bits)
        words.append(wq)
        qgroups += [bits, qrow]
        qrow += wq.shape[0]
        row += rows
    G, np_ = scale_codes.shape
    return {"q_weight": torch.cat(words), "q_groups": torch.tensor(qgroups, dtype=torch.int16),
            "q_scale": nibble_words(scale_codes.view(G, np_ // 8, 8)), "q_scale_max": q_scale_max.to(torch.float16),
            "q_invperm": torch.argsort(perm).to(torch.int32)}


def encode_linear(w: torch.Tensor, groups: list[tuple[int, int]], perm: torch.Tensor | None = None,
                  bias: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
    """w [N, K] float -> (EXL2 tensors by suffix, the fp16 reconstruction [N, K] they decode to)."""
    n, k = w.shape
    np_ = -(-n // 32) * 32
    perm = torch.arange(k) if perm is None else perm.to(torch.int64)
    wt = torch.zeros(k, np_)
    wt[:, :n] = w.t().float()[perm]
    codes = torch.empty(k, np_, dtype=torch.int64)
    scodes, qsms, recon = [], [], torch.empty(k, n, dtype=torch.float16)
    row = 0
    for bits, rows in groups:
        g = wt[row:row + rows]
        c, qsm, scale = find_scale(g, bits)
        qzero, maxq = 2 ** (bits - 1), 2 ** bits - 1
        q = torch.clamp(torch.round(g / scale.float()) + qzero, 0, maxq).to(torch.int64)
        q[:, n:] = qzero
        recon[row:row + rows] = ((q[:, :n] - qzero).float() * scale[:n].float()).to(torch.float16)
        codes[row:row + rows] = q
        scodes.append(c)
        qsms.append(qsm)
        row += rows
    out = pack_linear(codes, torch.stack(scodes), torch.stack(qsms), groups, perm)
    if bias is not None:
        out["bias"] = bias.to(torch.float16)
    w_fp16 = torch.empty_like(recon)
    w_fp16[perm] = recon
    return out, w_fp16.t().contiguous()


def write_directory(out_dir, config: dict, tensors: dict, bits: float, head_bits: int = 6, source_dir=None,
                    calibration: dict | None = None):
    """config.json (with ExLlamaV2's quantization_config), output.safetensors, tokenizer files."""
    from ..hf.checkpoint import write_directory as write

    q = {"quant_method": "exl2", "version": "0.2.7", "bits": float(bits), "head_bits": int(head_bits),
         "calibration": calibration or {"rows": 0, "length": 0, "dataset": "(none: round to nearest)"}}
    write(out_dir, config, q, tensors, "output.safetensors", source_dir)
