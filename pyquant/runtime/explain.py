"""`model.explain()`: which path and which kernel run each phase of prefill and of a token step of a
loaded model, and why (the C++ step or the model's forward, the matmul path of every linear)."""
from __future__ import annotations

import torch

from ..kernels.cpu import rowops


def explain(m, prompt_tokens: int = 64) -> str:
    """The lines `DecoderModel.explain` prints, for model `m`."""
    from .._ext import _C
    from ..kernels.cpu.matmul import linear_path

    st = m._step
    act = _C.get_matmul_act()
    lines = [repr(m),
             f"activations: {act}{' (= int8x2)' if act == 'auto' else ''} (PYQUANT_MATMUL_ACT / --act); "
             f"threads: {_C.get_num_threads()}"]
    if m.device.type != "cpu":
        lines.append(f"device: {m.device} (weights, KV cache and every op of the forward; each linear "
                     "on the backend pyquant.dispatch picks, listed below)")
    c, full = m.config, m.full_config
    if m.tp is not None:
        gathered = sum(L.wo_input is not None for L in m.layers)
        lines.append(f"tensor parallel: rank {m.tp.rank} of {m.tp.size} ({m.tp.backend}) holds "
                     f"{c.n_heads}/{full.n_heads} query heads, {c.n_kv_heads}/{full.n_kv_heads} KV heads, "
                     f"{c.ffn_dim}/{full.ffn_dim} FFN channels, vocabulary rows {m.vocab_rows.start}.."
                     f"{m.vocab_rows.stop - 1}; a sum after each attn_output and ffn_down"
                     + (f"; {gathered} act-order attn_output gather every rank's heads first" if gathered else ""))
    if m.stage is not None:
        ls = m.stage
        lines.append(f"layer split: rank {ls.rank} of {ls.size} runs layers {ls.layers.start}..{ls.layers.stop - 1}"
                     f" of {full.n_layers}" + ("" if ls.first else "; receives the residual")
                     + ("; the head, logits sent to every rank" if ls.last else "; sends the residual on"))
    if st.native is not None:
        gov = st.native.governor()
        lines.append("token step: native (_C.LlmStep: one C++ call per token, one parallel region; "
                     f"steps so far on 1 thread / all: {gov['single']} / {gov['multi']})")
    elif st.graph is not None:
        how = (f"eager, the capture failed: {st.graph.failed}" if st.graph.failed else st.graph_reason)
        lines.append(f"token step: CUDA graph ({how})")
    else:
        lines.append(f"token step: python (the model's forward, one token at a time): {st.native_reason}"
                     + ("" if m.device.type == "cpu" else f"; no CUDA graph: {st.graph_reason}"))
    rows = ("pyquant's C++ row ops (kernels/cpu/rowops.py: RMSNorm, gated activation, causal attention, "
            "threaded)" if m.device.type == "cpu" and rowops.takes(torch.empty(0)) else "torch ops for attention/norms")
    lines.append(f"prefill of {prompt_tokens} tokens: {rows}, one matmul per linear")
    # linears grouped by (role, type, shape): one line each, with how many layers have it
    seen: dict = {}

    def add(role, lin):
        key = (role, lin.qt.qtype.name, lin.out_features, lin.in_features)
        seen.setdefault(key, [0, lin])[0] += 1

    for L in m.layers:
        for role, lins in (("attn_qkv", L.qkv), ("attn_output", [L.wo]), ("ffn_gate_up", L.gate_up),
                           ("ffn_down", [L.down])):
            for lin in lins:
                add(role, lin)
    if m.output is not None:
        add("output", m.output)
    for (role, tname, n, k), (count, lin) in seen.items():
        lines.append(f"  {role:12s} x{count:<3d} {tname:5s} [{n}x{k}]")
        lines.append(f"      step:    {linear_path(lin, 1)}")
        lines.append(f"      prefill: {linear_path(lin, prompt_tokens)}")
    return "\n".join(lines)
