"""The token step: one decoded token per call, on the C++ executor when it can take the model.

`_C.LlmStep` (csrc/cpu/llm_ops.cpp) runs a whole token in one call and one parallel region
(measured 173-182 vs 113-119 tok/s for the former Python/torch step on SmolLM2 Q4_1 at 2 threads):
norms, the GEMVs through the matmul engine's own kernels (the same arithmetic as `_C.linear`,
in the same activation mode), RoPE, the KV write, GQA attention, SiLU*up, residuals, the head. It is
built from the model's layers and weights (build_native); when a model needs something it does not
do (an architecture's own norm or activation, a weight type it has no kernel for), `pyquant.load`
warns with the reason and every token goes through the model's own `forward` (one token at
`start_pos = pos`): the Python block is defined once, in decoder.py, for prefill, steps and tests.
PYQUANT_STEP=python forces that path.
"""
from __future__ import annotations

import math

import torch

from ..models.decoder import DecoderModel


class TokenStep:
    """The C++ step bound to one model: its input (x, the token's embedding) and output (logits)
    buffers, the embedding-row dequantizer, and the executor, or None with the reason why not."""

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.x = torch.empty((1, cfg.d_model))
        self.logits = torch.empty((1, cfg.vocab_size))
        # what the C++ head writes: the logits, or with tensor parallelism this rank's vocab share
        self.local_logits = self.logits if model.tp is None else torch.empty((1, len(model.vocab_rows)))
        self.partial = torch.empty(cfg.d_model)   # tensor parallel: a row-parallel linear's partial sum
        self.token = torch.zeros(1, dtype=torch.long)
        self._bind_embedding(model.embed)
        self.native, self.native_reason = build_native(self)
        from .graph_step import GraphStep, graph_wanted

        want, self.graph_reason = graph_wanted(model)   # on a CUDA device: the forward as a CUDA graph
        self.graph = GraphStep(model) if want and self.native is None else None
        if self.native is None and self.native_reason != "PYQUANT_STEP=python" and model.device.type == "cpu":
            import warnings

            warnings.warn(f"pyquant: {model.path}: the C++ token step cannot run this model "
                          f"({self.native_reason}); each token runs the model's forward instead (slower; "
                          "model.explain() says more)", RuntimeWarning, stacklevel=3)

    @property
    def mode(self) -> str:
        """"native" (the C++ step, _C.LlmStep), "cuda-graph" (the model's forward replayed as a CUDA
        graph, graph_step.py) or "python" (the model's forward, one token)."""
        if self.native is not None:
            return "native"
        return "cuda-graph" if self.graph is not None and self.graph.failed is None else "python"

    def _bind_embedding(self, embed) -> None:
        """Dequantize the one embedding row of the token straight from the file bytes into x (no gather,
        no allocation); types without a C++ dequantizer go through Embedding.__call__."""
        from .._ext import _C

        self.embed_row = self.embed_weight = None
        if embed is None:   # a layer split's later ranks receive the residual instead
            return
        qt = embed.qt
        if qt.qtype < 1000 and _C.has_dequantizer(int(qt.qtype)) and qt.interleave:
            # a tied output head stored row-interleaved: its _C.Weight gathers the row (~1 us)
            self.embed_weight = (qt.cpu_call, self.x.data_ptr(), self.x.nbytes)
        elif qt.qtype < 1000 and _C.has_dequantizer(int(qt.qtype)):
            rows = embed.rows
            self.embed_row = (_C.dequantize, int(qt.qtype), rows.data_ptr(), rows.shape[1], embed.n_rows,
                              self.x.data_ptr(), self.x.nbytes, embed.dim)

    def embed_into_x(self, token: int) -> None:
        e = self.embed_row
        if self.embed_weight is not None:
            w, x_ptr, x_nbytes = self.embed_weight
            row = token - self.model.embed.first
            if 0 <= row < w.n:
                w.dequantize_row(row, x_ptr, x_nbytes)
            else:   # tensor parallel: another rank holds the row
                self.x.zero_()
            return
        if e is None:
            self.token[0] = token
            self.x.copy_(self.model.embed(self.token))
            return
        dequantize, qtype, base, row_bytes, n_rows, x_ptr, x_nbytes, dim = e
        row = token - self.model.embed.first
        if 0 <= row < n_rows:   # the pointer arithmetic below trusts this check
            dequantize(qtype, base + row * row_bytes, row_bytes, x_ptr, x_nbytes, "float32", 1, dim, 1)
        else:                   # tensor parallel: another rank holds the row
            self.x.zero_()

    def step(self, token: int, pos: int) -> torch.Tensor:
        """Logits [vocab] (a buffer the next step reuses) of `token` at `pos`."""
        m, token = self.model, int(token)
        if self.native is not None or self.graph is not None:   # (the forward checks its own inputs)
            m.cache.check(pos, 1)
            if not 0 <= token < m.config.vocab_size:
                from ..errors import PyquantError

                raise PyquantError(f"step: token id {token} outside [0, {m.config.vocab_size})")
        if self.native is None:
            logits = None if self.graph is None else self.graph.step(token, int(pos))
            return m._forward([token], pos, False).to("cpu", torch.float32) if logits is None else logits
        if m.group is None:
            self.embed_into_x(token)
            self.native.step(pos)
            return self.logits[0]
        return self._parallel_step(token, pos)

    def _parallel_step(self, token: int, pos: int) -> torch.Tensor:
        """The step of a rank of a split model: the same C++ call, with the residual or the logits
        passed between ranks around it (the all-reduces happen inside it, LlmStep.set_reduce)."""
        m = self.model
        tp, st = m.tp, m.stage
        if st is not None and not st.first:
            st.receive_residual_into(self.x)
        else:
            self.embed_into_x(token)
        if tp is not None:
            tp.all_reduce(self.x)
        try:
            self.native.step(pos)
        except RuntimeError:
            m.group.raise_pending()   # a collective failed inside the step: say which and why
            raise
        if tp is not None:
            return m.vocab_logits(self.local_logits, self.logits)[0]
        if not st.last:
            st.send_residual(self.x)
        return st.share_logits(self.logits)[0]


def build_native(st: TokenStep):
    """(the C++ token step (_C.LlmStep, csrc/cpu/llm_ops.cpp) for this model, None) or (None, why
    not) when the model needs something only the model's forward does: an architecture overriding the
    norm or the MLP activation, a weight format without a CPU kernel, or PYQUANT_STEP=python.

    Measured numbers: llm_ops.cpp's header."""
    import os

    from .._ext import _C
    from ..dispatch import linear_backend

    m, cfg = st.model, st.model.config
    if os.environ.get("PYQUANT_STEP", "").lower() == "python":
        return None, "PYQUANT_STEP=python"
    if m.device.type != "cpu":
        return None, f"the model is on {m.device}: each token runs the forward there"
    if not hasattr(_C, "LlmStep"):
        return None, "this build of pyquant._C has no LlmStep"
    cls = type(m)
    if cls.norm is not DecoderModel.norm:
        return None, f"{cls.__name__} overrides the norm"
    if cls.mlp_activation is not DecoderModel.mlp_activation:
        return None, f"{cls.__name__} overrides the MLP activation"
    if cls.mlp_act not in ("silu", "gelu_tanh"):
        return None, f"{cls.__name__}.mlp_act = {cls.mlp_act!r} is not in the C++ step"
    kv = m.cache.kv
    if kv.dtype != torch.float32 or not kv.is_contiguous() or not m.rope.is_contiguous():
        return None, "the KV cache or RoPE table is not contiguous float32"
    dec = _C.LlmStep(len(m.layers), cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.rope_dim,
                        cfg.ffn_dim, len(m.vocab_rows), m.max_seq_len, float(cfg.norm_eps), float(m.attn_scale))
    # the named options of the block (decoder.py), each mirrored by the executor
    dec.set_activation(cls.mlp_act)
    if cls.embed_scale:
        dec.set_embed_scale(math.sqrt(cfg.d_model))
    if cfg.final_logit_softcap:
        dec.set_logit_softcap(cfg.final_logit_softcap)
    if cfg.sliding_window:
        dec.set_sliding_window(cfg.sliding_window)
    for i, L in enumerate(m.layers):
        dec.set_layer(i, L.window, L.local)

    # Every tensor goes in as a buffer (tensor.numpy(): same memory); the step holds a reference
    # to each for its own lifetime and takes sizes from the buffers themselves.
    def buf(t):
        return t.contiguous().to(torch.float32).numpy() if t.is_floating_point() else t.contiguous().numpy()

    if m.stage is not None:   # a layer split: embedding scale on the first rank, head on the last
        dec.set_stage(m.stage.first, m.stage.last)
    linears = [("output", -1, [m.output])] if m.output is not None else []
    for i, L in enumerate(m.layers):
        linears += [("qkv", i, L.qkv), ("wo", i, [L.wo]), ("gate_up", i, L.gate_up), ("down", i, [L.down])]
    try:
        for slot, i, lins in linears:
            for lin in lins:
                bias = None if lin.bias is None else buf(lin.bias)
                if lin.dense is not None:       # float weights: float32 rows, type F32
                    weight = _C.Weight(0, buf(lin.dense), lin.out_features, lin.in_features)
                else:
                    weight = lin.qt.cpu_call    # the _C.Weight the model's matmuls use: one per weight
                    if weight is None:
                        return None, f"{lin.name}: no CPU kernel for {lin.qt.qtype.name} here"
                    if linear_backend(lin.qt.qtype, "cpu", 1) != "cpu-direct":   # PYQUANT_BACKEND / _DISABLE
                        return None, (f"{lin.name}: the dispatcher gives its M=1 matmul to the "
                                      f"{linear_backend(lin.qt.qtype, 'cpu', 1)} backend, not the CPU kernels")
                dec.add_linear(slot, i, weight, bias)
            perms = [lin.qt.in_perm if lin.dense is None else None for lin in lins]
            if perms[0] is not None:   # act-order weights (EXL2): the slot gathers its input once
                if not all(p is not None and torch.equal(p, perms[0]) for p in perms):
                    return None, f"{slot} {i}: its linears read their input in different orders"
                dec.set_input_perm(slot, i, buf(perms[0]))
            elif any(p is not None for p in perms):
                return None, f"{slot} {i}: its linears read their input in different orders"
        if m.output_norm is not None:
            dec.set_norm("output", -1, buf(m.output_norm))
        for i, L in enumerate(m.layers):
            dec.set_norm("attn", i, buf(L.attn_norm))
            dec.set_norm("ffn", i, buf(L.ffn_norm))
            for which, t in (("q", L.q_norm), ("k", L.k_norm), ("attn_post", L.attn_post_norm),
                             ("ffn_post", L.ffn_post_norm)):
                if t is not None:
                    dec.set_norm(which, i, buf(t))
        if m.rope_local is not m.rope:
            dec.set_local_rope(buf(m.rope_local))
        dec.set_buffers(kv.numpy(), m.rope.numpy(), st.x.numpy(), st.local_logits.numpy())
        if m.tp is not None:   # each row-parallel linear's partial sum is all-reduced, then added
            dec.set_reduce(m.tp.reduce_hook(st.partial), st.partial.numpy())
            gathered = [(i, L.wo_input) for i, L in enumerate(m.layers) if L.wo_input is not None]
            if gathered:         # act-order wo reading other ranks' heads: every rank's attention first
                q_sizes = m.plan.q_sizes
                full = st.attn_full = torch.empty(sum(q_sizes))
                dec.set_attn_gather(m.tp.gather_hook(full, q_sizes), full.numpy(),
                                    sum(q_sizes[:m.tp.rank]), full.numel())
                for i, index in gathered:
                    dec.set_attn_input(i, buf(index))
        dec.finalize(0)
    except Exception as e:   # a layout this step does not handle (e.g. a type without a CPU kernel)
        return None, f"{type(e).__name__}: {e}"
    return dec, None
