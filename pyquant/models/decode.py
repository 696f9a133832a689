"""One-token decode step with every buffer, view and kernel argument prepared once.

Two implementations: the C++ step (_C.LlmDecoder, csrc/cpu/llm_ops.cpp: one call per token, one
parallel region, measured 173-182 vs 113-119 tok/s for the Python step on SmolLM2 Q4_1 at 2
threads) used whenever the model fits it (build_native), and the Python/torch step below
(python_step), kept for architectures with their own norm/activation hooks and as the reference
the C++ step is tested against (tests/test_decode_native.py). PYQUANT_DECODE=python forces it.

Notes on the Python step:

A decoded token of a small model is ~30 layers x ~15 tiny ops, so the Python/torch dispatch cost
per op matters as much as the matmuls: no allocations in the loop, `out=` variants, views built once,
fused QKV / gate-up linears (one kernel call each) called through pre-bound raw-pointer arguments
(`GemvCall`), one in-place complex multiply doing the RoPE of Q and K together, one index_copy_
writing K and V into the cache.

Measured on the shared 2-core Zen 3 dev box (load average 2-10, so absolute numbers are pessimistic;
`pyquant bench smollm2 -t 2 --overhead --roofline` reproduces them). Everything but the matmuls,
per token (matmuls skipped, best of 3 x 32 steps):
- 3.3 ms: Linear.into (linear_into's Python checks) + per-step views and allocations;
- 2.8 ms: pre-bound GEMV calls (GemvCall);
- 1.33 ms: + one index_copy_ for K and V, softmax into a contiguous buffer, the embedding row decoded
  in place, per-layer K/V views made once;
- 1.05 ms: + RMSNorm as dot / mul / mul (torch.rms_norm is composite: 9 us per call, 61 calls);
- ~1.0 ms: + attention scale folded into baddbmm, residual adds done by the wo / down kernels
  (gains below this machine's noise; predicted ~0.1 ms from 90 fewer ops).
What remains is ~11 torch ops per layer at ~3 us each. The matmuls take the other ~85-90% of a step:
at 2 threads ~7 ms for 96 MB of weights, 45-55% of the measured DRAM roofline (23 GB/s while shared),
so generation speed is now the GEMV kernels' streaming efficiency, not Python.
torch's own ops run single-threaded inside a step (see decoder.torch_single_thread): with torch at 2
threads next to pyquant's pool, a [3, 3, T] softmax took 25 ms.
"""
from __future__ import annotations

import torch

from .decoder import DecoderModel, run_linears


class GemvCall:
    """`out = x @ W.T (+ b)` for fixed W, bias and out buffer: every argument of the _C kernel but the
    input pointer is computed once. Falls back to Linear.into for weights without a fused kernel.
    `GemvCall.enabled = False` skips the matmuls (bench's measure of everything else per token)."""

    enabled = True

    def __init__(self, linears: list, out: torch.Tensor, x_numel: int, nthreads: int = 0,
                 residual: torch.Tensor | None = None):
        """residual: a float32 [out_features] buffer the kernel adds as its bias (out = residual + x @ W.T),
        used when the weight has no bias of its own; `adds_residual` says whether that happened."""
        self.linears, self.out = linears, out
        self.args = None
        self.adds_residual = False
        if len(linears) == 1 and linears[0].dense is None and out.is_contiguous():
            lin = linears[0]
            call = getattr(lin.qt, "cpu_call", None)   # (_C fn, the weight's leading args) or None
            if call is not None:
                self.fn, head = call
                self.bias = lin.bias.contiguous() if lin.bias is not None else None
                b = self.bias
                if b is None and residual is not None and residual.is_contiguous() \
                        and residual.numel() == lin.out_features and residual.dtype == torch.float32:
                    b, self.adds_residual = residual, True
                self.x_slot = len(head)
                self.args = [*head, 0, x_numel * 4, "float32", 1, out.data_ptr(), out.nbytes,
                             b.data_ptr() if b is not None else 0, b.nbytes if b is not None else 0, nthreads]

    def __call__(self, x: torch.Tensor) -> None:
        if not GemvCall.enabled:
            return
        if self.args is None:
            run_linears(self.linears, x, self.out)
            return
        a = self.args
        a[self.x_slot] = x.data_ptr()   # x: contiguous float32 [1, in_features] (checked again in C++)
        self.fn(*a)


class DecodeState:
    def __init__(self, model):
        cfg = model.config
        self.model = model
        d, qd, kvd, ff, hd = cfg.d_model, cfg.q_dim, cfg.kv_dim, cfg.ffn_dim, cfg.head_dim
        H, Hkv = cfg.n_heads, cfg.n_kv_heads
        g = H // Hkv
        T = model.max_seq_len
        self.x = torch.empty((1, d))
        self.x2 = torch.empty((1, d))    # residual stream after attention (see residual_in_kernel)
        self.tmp = torch.empty((1, d))
        self.qkv = torch.empty((1, qd + 2 * kvd))            # [q | k | v]
        self.attn = torch.empty((1, qd))
        self.gu = torch.empty((1, 2 * ff))                    # [gate | up]
        self.act = torch.empty((1, ff))
        self.logits = torch.empty((1, cfg.vocab_size))
        # flat: a step views the first Hkv*g*T values as a contiguous [Hkv, g, T] (out= kernels such as
        # _softmax.out assume contiguous outputs; a [:, :, :T] slice of a 3-D buffer is not)
        self.scores = torch.empty(Hkv * g * T)
        self.probs = torch.empty(Hkv * g * T)
        self.groups = (Hkv, g)
        self.gate, self.up = self.gu[:, :ff], self.gu[:, ff:]
        # Q heads h*g .. h*g+g-1 share KV head h: q viewed [Hkv, g, hd] feeds one bmm per KV head.
        self.q_grouped = self.qkv[0, :qd].view(Hkv, g, hd)
        self.attn_grouped = self.attn[0].view(Hkv, g, hd)
        # RoPE of Q and K at once: the first qd + kvd values are H + Hkv heads of hd.
        qk = self.qkv[0, :qd + kvd].view(H + Hkv, hd)[:, :cfg.rope_dim]
        self.qk_complex = torch.view_as_complex(qk.unflatten(-1, (cfg.rope_dim // 2, 2)))
        self.kv_new = self.qkv[0, qd:].view(2, Hkv, 1, hd)   # [k | v] -> cache layout [2, Hkv, 1, hd]
        self.pos = torch.zeros(1, dtype=torch.long)
        self.token = torch.zeros(1, dtype=torch.long)
        self.scale = model.attn_scale
        self.eps = cfg.norm_eps
        # Residual adds inside the kernels: wo writes x2 = x + Wo a (x passed as the kernel's bias),
        # down writes x = x2 + Wd a: no tmp buffer, no add_ (60 ops per SmolLM2 token). Only when
        # every wo / down qualifies (no bias of their own, a fused kernel); else out=tmp and add_.
        fused = [(GemvCall([L.wo], self.x2, qd, residual=self.x), GemvCall([L.down], self.x, ff, residual=self.x2))
                 for L in model.layers]
        self.residual_in_kernel = all(a.adds_residual and b.adds_residual for a, b in fused)
        if not self.residual_in_kernel:
            fused = [(GemvCall([L.wo], self.tmp, qd), GemvCall([L.down], self.tmp, ff)) for L in model.layers]
        self.layers = [(L, GemvCall(L.qkv, self.qkv, d), wo, GemvCall(L.gate_up, self.gu, d), down)
                       for L, (wo, down) in zip(model.layers, fused)]
        self.output = GemvCall([model.output], self.logits, d)
        self._bind_embedding(model.embed)
        self.h = torch.empty((1, d))
        self.inv_d = 1.0 / d
        # The model's own RMSNorm (not an architecture's override) takes a 3-op path: torch.rms_norm
        # is composite (~6 kernels, 9 us per call measured here, 0.56 ms of a token's 1.3 ms outside
        # the matmuls); one BLAS dot, a float, two multiplies measured ~4 us.
        self.plain_norm = type(model).norm is DecoderModel.norm
        self.native, self.native_reason = build_native(self)
        if self.native is None and self.native_reason != "PYQUANT_DECODE=python":
            import warnings

            warnings.warn(f"pyquant: {model.path}: the C++ decode step cannot run this model "
                          f"({self.native_reason}); using the Python step (slower; model.explain() says more)",
                          RuntimeWarning, stacklevel=3)

    @property
    def mode(self) -> str:
        """"native" (the C++ step, _C.LlmDecoder) or "python" (the torch ops below)."""
        return "native" if self.native is not None else "python"

    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm of x [1, d] into h: x * w / sqrt(mean(x^2) + eps), the sum in float64 as ggml does."""
        if not self.plain_norm:
            return self.model.norm(x, weight)
        flat = x[0]
        ss = float(torch.dot(flat, flat))
        h = torch.mul(x, weight, out=self.h)
        return h.mul_((ss * self.inv_d + self.eps) ** -0.5)

    def _bind_embedding(self, embed) -> None:
        """Decode the one embedding row of the token straight from the file bytes into x (no gather,
        no allocation); types without a C++ decoder go through Embedding.__call__."""
        from .._ext import _C

        qt = embed.qt
        self.embed_row = None
        if qt.qtype < 1000 and _C.has_decoder(int(qt.qtype)):
            rows = embed.rows
            self.embed_row = (_C.decode, int(qt.qtype), rows.data_ptr(), rows.shape[1], embed.vocab_size,
                              self.x.data_ptr(), self.x.nbytes, embed.dim)

    def embed_into_x(self, token: int) -> None:
        e = self.embed_row
        if e is None:
            self.token[0] = token
            self.x.copy_(self.model.embed(self.token))
            return
        decode, qtype, base, row_bytes, vocab, x_ptr, x_nbytes, dim = e
        if not 0 <= token < vocab:  # the pointer arithmetic below trusts this check
            from ..errors import PyquantError

            raise PyquantError(f"decode_step: token id {token} outside [0, {vocab})")
        decode(qtype, base + token * row_bytes, row_bytes, x_ptr, x_nbytes, "float32", 1, dim, 1)

    @property
    def runs_native(self) -> bool:
        return self.native is not None and GemvCall.enabled

    def step(self, token: int, pos: int) -> torch.Tensor:
        if self.runs_native:
            self.model.cache.check(pos, 1)
            self.embed_into_x(int(token))
            self.native.step(pos)
            return self.logits[0]
        return self.python_step(token, pos)

    def python_step(self, token: int, pos: int) -> torch.Tensor:
        m = self.model
        m.cache.check(pos, 1)
        T = pos + 1
        self.pos[0] = pos
        x, x2, tmp = self.x, self.x2, self.tmp
        self.embed_into_x(int(token))
        in_kernel = self.residual_in_kernel
        freqs = m.rope[pos]
        n = self.groups[0] * self.groups[1] * T
        scores = self.scores[:n].view(*self.groups, T)
        probs = self.probs[:n].view(*self.groups, T)
        layer_kv, layer_k, layer_v = m.cache.layer_kv, m.cache.layer_k, m.cache.layer_v
        softmax_out = torch.ops.aten._softmax.out
        norm, act_into = self.norm, m.mlp_activation_into
        for i, (L, qkv, wo, gate_up, down) in enumerate(self.layers):
            qkv(norm(x, L.attn_norm))
            self.qk_complex.mul_(freqs)
            layer_kv[i].index_copy_(2, self.pos, self.kv_new)                  # [2, Hkv, Tmax, hd]
            # scores = scale * q @ K^T in one call (beta=0: the old contents are ignored)
            torch.baddbmm(scores, self.q_grouped, layer_k[i][:, :T].transpose(1, 2), beta=0.0,
                          alpha=self.scale, out=scores)                          # [Hkv, g, T]
            softmax_out(scores, -1, False, out=probs)
            torch.bmm(probs, layer_v[i][:, :T], out=self.attn_grouped)          # [Hkv, g, hd]
            wo(self.attn)
            if in_kernel:
                gate_up(norm(x2, L.ffn_norm))                                 # x2 = x + Wo attn
                act_into(self.gate, self.up, self.act)
                down(self.act)                                                # x = x2 + Wd act
            else:
                x.add_(tmp)
                gate_up(norm(x, L.ffn_norm))
                act_into(self.gate, self.up, self.act)
                down(self.act)
                x.add_(tmp)
        self.output(norm(x, m.output_norm))
        return self.logits[0]


def build_native(st: DecodeState):
    """(the C++ decode step (_C.LlmDecoder, csrc/cpu/llm_ops.cpp) for this model, None) or (None, why
    not) when the model needs something only the Python step does: an architecture overriding the
    norm or the MLP activation, weights without a GGUF CPU kernel (int4 / int8 QTensors), or
    PYQUANT_DECODE=python.

    Measured numbers: llm_ops.cpp's header."""
    import os

    from .._ext import _C

    m, cfg = st.model, st.model.config
    if os.environ.get("PYQUANT_DECODE", "").lower() == "python":
        return None, "PYQUANT_DECODE=python"
    if not hasattr(_C, "LlmDecoder"):
        return None, "this build of pyquant._C has no LlmDecoder"
    cls = type(m)
    if not st.plain_norm:
        return None, f"{cls.__name__} overrides the norm"
    if cls.mlp_activation_into is not DecoderModel.mlp_activation_into:
        return None, f"{cls.__name__} overrides the MLP activation"
    kv = m.cache.kv
    if kv.dtype != torch.float32 or not kv.is_contiguous() or not m.rope.is_contiguous():
        return None, "the KV cache or RoPE table is not contiguous float32"
    linears = [("output", -1, [m.output])]
    for i, L in enumerate(m.layers):
        linears += [("qkv", i, L.qkv), ("wo", i, [L.wo]), ("gate_up", i, L.gate_up), ("down", i, [L.down])]
    args = []
    for slot, i, lins in linears:
        for lin in lins:
            if lin.dense is not None:
                w, qtype = lin.dense, 0
                if w.dtype != torch.float32 or not w.is_contiguous():
                    return None, f"{lin.name}: float weight not contiguous float32"
            else:
                w, qtype = lin.qt.data, int(lin.qt.qtype)
                if qtype >= 1000:
                    return None, f"{lin.name}: {lin.qt.qtype.name} weights have no kernel in the C++ step"
                if w.device.type != "cpu" or not w.is_contiguous():
                    return None, f"{lin.name}: weight not a contiguous CPU tensor"
            b = lin.bias
            if b is not None:
                b = b.contiguous().to(torch.float32)
            args.append((slot, i, qtype, w, lin.out_features, lin.in_features, b))
    dec = _C.LlmDecoder(cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.rope_dim,
                        cfg.ffn_dim, cfg.vocab_size, m.max_seq_len, float(cfg.norm_eps), float(m.attn_scale))
    keep = []   # every tensor whose pointer the decoder holds
    try:
        for slot, i, qtype, w, n, k, b in args:
            dec.add_linear(slot, i, qtype, w.data_ptr(), w.nbytes, n, k,
                           b.data_ptr() if b is not None else 0, b.nbytes if b is not None else 0)
            keep += [w] + ([b] if b is not None else [])
        norms = [m.output_norm] + [t for L in m.layers for t in (L.attn_norm, L.ffn_norm)]
        norms = [t.contiguous().to(torch.float32) for t in norms]
        keep += norms
        dec.set_norm("output", -1, norms[0].data_ptr(), norms[0].nbytes)
        for i in range(cfg.n_layers):
            a, f = norms[1 + 2 * i], norms[2 + 2 * i]
            dec.set_norm("attn", i, a.data_ptr(), a.nbytes)
            dec.set_norm("ffn", i, f.data_ptr(), f.nbytes)
        dec.set_buffers(kv.data_ptr(), kv.nbytes, m.rope.data_ptr(), m.rope.nbytes, st.x.data_ptr(), st.x.nbytes,
                        st.logits.data_ptr(), st.logits.nbytes)
        keep += [kv, m.rope, st.x, st.logits]   # alive as long as the decoder even if the model rebinds them
        dec.finalize(0)
    except Exception as e:   # a layout this step does not handle (e.g. a type without a CPU kernel)
        return None, f"{type(e).__name__}: {e}"
    st.native_keep = keep
    return dec, None
