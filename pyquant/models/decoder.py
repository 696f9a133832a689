"""The pre-norm decoder-only transformer shared by the Llama family (llama, mistral, qwen2, ...).

An architecture file subclasses DecoderModel and sets class attributes / overrides the small hooks
(rope_style, norm, activation); nothing here branches on the architecture name.

The block is written once, in `forward(ids, start_pos)`: prefill, perplexity, the reference the
tests hold the C++ step to, and every token when that step cannot take the model.
`step(token, pos)` runs the C++ executor of the same layers and weights (pyquant/runtime/step.py).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import PyquantError
from ..kernels.cpu import rowops
from ..runtime.kv_cache import KVCache
from .config import read_config
from .rope import apply_rope_, neox_to_normal_rows, rope_table
from .weights import Embedding, Linear, fused_linear


def _head_qtensor(qt, release=None):
    """The output head as the model reads it. A float head (AWQ and EXL2 checkpoints keep lm_head in
    fp16: SmolLM2's is 56 MB, half of what a token reads) stays float unless PYQUANT_HEAD_TYPE names a
    ggml type (e.g. Q8_0) to quantize it to at load: opt-in, since it moves the logits (the README's
    "AWQ: the output head" has the measured KL and speed). A quantized head is kept as it is."""
    import os

    want = os.environ.get("PYQUANT_HEAD_TYPE", "").strip()
    if not want or qt.qtype.name not in ("F16", "BF16", "F32"):
        return qt
    from ..errors import UnsupportedQTypeError
    from ..qtensor import QTensor
    from ..qtypes import qtype

    n, parts = qt.shape[0], []
    try:   # 4096 rows at a time: a whole 49152-row head in float32 would be a 113 MB transient
        for r0 in range(0, n, 4096):
            rows = qt.take_rows(range(r0, min(n, r0 + 4096)))
            parts.append(QTensor.quantize(rows.dequantize(torch.float32), qtype(want)).data)
            if release is not None:   # the float rows' file pages (the embedding re-reads what it needs)
                release(rows.data)
    except UnsupportedQTypeError as e:
        raise PyquantError(f"PYQUANT_HEAD_TYPE={want}: {e}") from None
    return QTensor(torch.cat(parts), want, qt.shape)


@dataclass
class Layer:
    attn_norm: torch.Tensor   # [d]
    qkv: list                 # Linear(s) producing [q | k | v]: [S, q_dim + 2 kv_dim]
    wo: Linear                # [q_dim] -> [d]
    ffn_norm: torch.Tensor    # [d]
    gate_up: list             # Linear(s) producing [gate | up]: [S, 2 ffn]
    down: Linear              # [ffn] -> [d]
    q_norm: torch.Tensor | None = None   # [head_dim]: RMSNorm of each Q / K head before RoPE (qk_norm)
    k_norm: torch.Tensor | None = None
    attn_post_norm: torch.Tensor | None = None   # [d]: RMSNorm of the attention / FFN output before the
    ffn_post_norm: torch.Tensor | None = None    # residual add (post_norms)
    wo_input: torch.Tensor | None = None   # tensor parallel, act-order wo: the channels of all ranks'
    #                                        attention outputs (gathered) its columns read
    window: int = 0          # sliding window of this layer (0: every position)
    local: bool = False      # a sliding-window layer of an interleaved family: its own RoPE base


def run_linears(linears: list, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Fill out [S, sum(n_i)] from one or several Linears (several when quant types differ)."""
    if len(linears) == 1:
        return linears[0].into(x, out)
    off = 0
    for lin in linears:
        n = lin.out_features
        out[:, off:off + n].copy_(lin(x))
        off += n
    return out


class torch_single_thread:
    """Runs torch's own ops on one thread inside a forward / token step. pyquant's kernels have their
    own thread pool; letting torch's OpenMP pool spin up between kernel calls made a [3, 3, T]
    softmax take 25 ms instead of 11 us on a loaded 2-core machine (threads fighting for cores),
    and the small attention / norm ops of one step gain nothing from threads."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.before != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.before != 1:
            torch.set_num_threads(self.before)


class DecoderModel:
    # Named differences between families (set by each file in arch/):
    rope_style = "normal"   # "normal" (adjacent pairs) or "neox" (halves), as ggml names them
    qk_norm = False         # RMSNorm over each Q and K head (weights attn_q_norm / attn_k_norm) before RoPE
    embed_scale = False     # token embeddings multiplied by sqrt(d_model)
    post_norms = False      # attn_post_norm / ffn_post_norm on each sublayer's output before its residual add
    swa_pattern = 0         # n > 0: layer i is global when (i + 1) % n == 0, else it uses the sliding window
    local_rope_base = None  # RoPE base of the sliding-window layers (None: the model's rope.freq_base)
    mlp_act = "silu"        # the gated MLP's activation: "silu" (SwiGLU) or "gelu_tanh" (GeGLU, tanh approximation)

    def __init__(self, source, tokenizer, max_seq_len: int | None = None, tp=None, split=None, device=None):
        """source: where the weights and hyper-parameters come from, in GGUF names whatever the
        format (pyquant/formats/gguf/source.py describes the interface); tokenizer: its Tokenizer;
        tp: a pyquant.parallel.TensorParallel to hold only this rank's slice of every layer;
        split: a pyquant.parallel.LayerSplit to hold only this rank's layers (None, None: all);
        device: where the weights, the KV cache and every op of the forward live (None: the CPU)."""
        self.device = torch.device("cpu" if device is None else device)
        if self.device.type != "cpu" and (tp is not None or split is not None):
            raise PyquantError(f"device={self.device}: tensor parallelism and layer splits run on the CPU only")
        self.path = source.path
        self.tokenizer = tokenizer
        cfg = read_config(source.metadata, source.architecture, tokenizer.n_vocab, source.path)
        self.full_config, self.tp = cfg, tp
        if tp is not None:   # from here on the config and the source are this rank's
            from ..parallel.shard import shard

            source, cfg = shard(source, cfg, tp)
        self.config = cfg
        if tp is not None and split is not None:
            raise PyquantError("tensor parallelism and a layer split together are not supported: pick one")
        self.stage = split
        first, last = split is None or split.first, split is None or split.last
        layer_ids = split.assign(cfg.n_layers) if split is not None else range(cfg.n_layers)
        # rows of the vocabulary this process holds (tensor parallel: its share)
        self.plan = source.plan if tp is not None else None   # the tensor-parallel split (shard.py)
        self.vocab_rows = self.plan.vocab if tp is not None else range(cfg.vocab_size)
        if max_seq_len is not None and (isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int)
                                        or max_seq_len <= 0):
            raise PyquantError(f"max_seq_len must be a positive integer (or None: min(context, 4096)), "
                               f"got {max_seq_len!r}")
        self.max_seq_len = min(cfg.context_length, max_seq_len or 4096)
        self.sampling_defaults = getattr(source, "sampling_defaults", None)   # generation_config.json
        # a source may hold Q/K rows in another RoPE order than the family's GGUF files (HF: "neox")
        self.qk_row_order = source.rope_style or self.rope_style
        n_rows = len(self.vocab_rows)
        self.embed = self.output_norm = self.output = None   # layer split: the first / last rank's
        if first:
            self.embed = Embedding(source.qtensor("token_embd.weight", (n_rows, cfg.d_model)),
                                   self.vocab_rows.start, cfg.vocab_size)
        self.layers = [self._load_layer(source, i) for i in layer_ids]
        if last:
            self.output_norm = source.vector("output_norm.weight", cfg.d_model)
            # No output.weight: the output projection is tied to the token embedding.
            out_name = "output.weight" if source.has("output.weight") else "token_embd.weight"
            self.output = Linear(_head_qtensor(source.qtensor(out_name, (n_rows, cfg.d_model)),
                                               getattr(source, "release", None)), name=out_name)
        factors = None
        if source.has("rope_freqs.weight"):
            factors = source.vector("rope_freqs.weight", cfg.rope_dim // 2)
        self.rope = rope_table(self.max_seq_len, cfg.rope_dim, cfg.rope_base, cfg.rope_linear_scale, factors)
        self.rope_local = self.rope
        if self.local_rope_base is not None:
            self.rope_local = rope_table(self.max_seq_len, cfg.rope_dim, self.local_rope_base)
        self.attn_scale = self.attention_scale()
        from ..kernels.cpu.packing import pack_step_weights
        from ..runtime.step import TokenStep

        # One model, one KV cache and one set of step buffers: calls from several Python threads are
        # serialized (a generation holds the lock from its prefill to its last token, so each
        # thread's text equals a single-threaded run). Unserialized, two steps reset each other's
        # barriers mid-token: hangs and segfaults (issue #15).
        self.lock = threading.RLock()
        from ..runtime.memory import trim_heap

        trim_heap()   # the readers' freed scratch back to the OS before the packed copy is faulted in
        if self.device.type == "cpu":
            self.packed_nbytes = pack_step_weights(self, source.release)   # before TokenStep binds pointers
        else:
            self.packed_nbytes = 0
            self._move_to(self.device)
        self.cache = KVCache(len(self.layers), cfg.n_kv_heads, cfg.head_dim, self.max_seq_len, device=self.device)
        self._step = TokenStep(self)

    # ------------------------------------------------------------------ loading
    def _qk_row_perms(self):
        """Q and K row permutations making the stored rows' RoPE pairing adjacent (or None)."""
        cfg = self.config
        if self.qk_row_order == "normal":
            return None, None
        if self.qk_row_order == "neox":
            return (neox_to_normal_rows(cfg.n_heads, cfg.head_dim, cfg.rope_dim),
                    neox_to_normal_rows(cfg.n_kv_heads, cfg.head_dim, cfg.rope_dim))
        raise PyquantError(f"unknown rope_style {self.qk_row_order!r}")

    def _load_layer(self, source, i: int) -> Layer:
        cfg, p = self.config, f"blk.{i}."

        def bias(name, n):
            full = p + name + ".bias"
            return source.vector(full, n) if source.has(full) else None

        d, qd, kvd, ff = cfg.d_model, cfg.q_dim, cfg.kv_dim, cfg.ffn_dim
        perm_q, perm_k = self._qk_row_perms()
        bq, bk, bv = bias("attn_q", qd), bias("attn_k", kvd), bias("attn_v", kvd)
        if perm_q is not None:
            bq = bq[perm_q] if bq is not None else None
            bk = bk[perm_k] if bk is not None else None
        qkv = fused_linear(source, [p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"],
                           [(qd, d), (kvd, d), (kvd, d)], [bq, bk, bv], p + "attn_qkv",
                           row_perms=[perm_q, perm_k, None])
        wo = Linear(source.qtensor(p + "attn_output.weight", (d, qd)), bias("attn_output", d),
                    p + "attn_output.weight")
        wo_input = source.input_index(p + "attn_output.weight") if hasattr(source, "input_index") else None
        gate_up = fused_linear(source, [p + "ffn_gate.weight", p + "ffn_up.weight"], [(ff, d), (ff, d)],
                               [bias("ffn_gate", ff), bias("ffn_up", ff)], p + "ffn_gate_up")
        down = Linear(source.qtensor(p + "ffn_down.weight", (d, ff)), bias("ffn_down", d),
                      p + "ffn_down.weight")
        q_norm = k_norm = None
        if self.qk_norm:
            # one [head_dim] weight shared by every head, in the head's (possibly permuted) row order
            q_norm = source.vector(p + "attn_q_norm.weight", cfg.head_dim)
            k_norm = source.vector(p + "attn_k_norm.weight", cfg.head_dim)
            if perm_q is not None:
                within = perm_q[:cfg.head_dim]
                q_norm, k_norm = q_norm[within].contiguous(), k_norm[within].contiguous()
        post = (None, None)
        if self.post_norms:
            post = (source.vector(p + "post_attention_norm.weight", d),
                    source.vector(p + "post_ffw_norm.weight", d))
        local = self.swa_pattern > 0 and (i + 1) % self.swa_pattern != 0
        window = cfg.sliding_window if (local or self.swa_pattern == 0) else 0
        return Layer(source.vector(p + "attn_norm.weight", d), qkv, wo,
                     source.vector(p + "ffn_norm.weight", d), gate_up, down, q_norm, k_norm, *post,
                     wo_input=wo_input, window=window, local=local)

    def _move_to(self, device: torch.device) -> None:
        """Every weight (in its own format: QTensor.to), norm, bias and table onto `device`, once at
        load. The forward then runs there: its linears through pyquant.dispatch, which picks the
        kernels serving that device (CUDA, Triton, the torch reference), everything else torch ops."""
        def mv(t):
            return None if t is None else t.to(device)

        def lin(x):
            x.qt, x.bias, x.dense = x.qt.to(device), mv(x.bias), mv(x.dense)

        for L in self.layers:
            for x in (*L.qkv, L.wo, *L.gate_up, L.down):
                lin(x)
            for f in ("attn_norm", "ffn_norm", "q_norm", "k_norm", "attn_post_norm", "ffn_post_norm"):
                setattr(L, f, mv(getattr(L, f)))
        tied = (self.output is not None and self.embed is not None
                and self.embed.qt.data.data_ptr() == self.output.qt.data.data_ptr()
                and self.embed.qt.qtype == self.output.qt.qtype)
        if self.output is not None:
            lin(self.output)
            self.output_norm = mv(self.output_norm)
        if self.embed is not None:   # a tied embedding shares the head's uploaded bytes, as on the CPU
            qt = self.output.qt if tied else self.embed.qt.to(device)
            self.embed = Embedding(qt, self.embed.first, self.embed.vocab_size)
        local_is_global = self.rope_local is self.rope
        self.rope = mv(self.rope)
        self.rope_local = self.rope if local_is_global else mv(self.rope_local)

    # ------------------------------------------------------------------ hooks
    def attention_scale(self) -> float:
        """Multiplier of q.k: 1/sqrt(head_dim)."""
        return 1.0 / math.sqrt(self.config.head_dim)

    # norm, mlp_activation and attention run pyquant's threaded row ops on CPU float32 tensors
    # (kernels/cpu/rowops.py: the token step's own vector math), torch ops anywhere else.
    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and rowops.takes(x):
            return rowops.rms_norm(x, weight, self.config.norm_eps)
        return torch.rms_norm(x, (x.shape[-1],), weight, self.config.norm_eps)

    def mlp_activation(self, gate_up: torch.Tensor) -> torch.Tensor:
        """[S, 2 ffn] -> [S, ffn]: act(gate) * up, act by `mlp_act`."""
        if rowops.takes(gate_up) and gate_up.is_contiguous():
            return rowops.act_mul(gate_up, self.mlp_act)
        gate, up = gate_up.chunk(2, dim=-1)
        if self.mlp_act == "gelu_tanh":
            return F.gelu(gate, approximate="tanh") * up
        return F.silu(gate) * up

    # ------------------------------------------------------------------ parallel
    # Identities in one process; with `tp` or `stage` the places a split model meets its other ranks.
    @property
    def group(self):
        """The pyquant.parallel group this model is split over (tensor parallel or layer split), or None."""
        return self.tp if self.tp is not None else self.stage

    def reduce(self, partial: torch.Tensor) -> torch.Tensor:
        """A row-parallel linear's (attn_output, ffn_down) partial sum -> the sum over ranks."""
        return partial if self.tp is None else self.tp.all_reduce(partial)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[S, d] residual stream entering the first layer (a layer split's later ranks: received)."""
        if self.stage is not None and not self.stage.first:
            return self.stage.receive_residual((ids.numel(), self.config.d_model))
        x = self.embed(ids.to(self.device))   # tensor parallel: zero rows for the ids another rank holds
        if self.tp is not None:
            x = self.tp.all_reduce(x)
        return x * math.sqrt(self.config.d_model) if self.embed_scale else x

    def head(self, x: torch.Tensor, all_logits: bool) -> torch.Tensor:
        """Output norm and projection of the last layer's residual x [S, d] -> logits [S or 1, vocab]
        (a layer split: every rank but the last sends x on and receives the last rank's logits)."""
        st, rows = self.stage, x.shape[0] if all_logits else 1
        if st is not None and not st.last:
            st.send_residual(x)
            return st.share_logits(x.new_empty((rows, self.config.vocab_size)))
        x = self.norm(x if all_logits else x[-1:], self.output_norm)
        logits = self.vocab_logits(self.output(x.contiguous()))
        if self.config.final_logit_softcap:
            c = self.config.final_logit_softcap
            logits = torch.tanh(logits / c) * c
        return logits if st is None else st.share_logits(logits)

    def vocab_logits(self, local: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """This rank's logits [S, its vocab share] -> [S, vocab] (into `out` when given)."""
        if self.tp is None:
            return local
        if out is None:
            out = local.new_empty((local.shape[0], self.config.vocab_size))
        return self.tp.gather_rows(local, self.plan.vocab_sizes, out)

    # ------------------------------------------------------------------ forward
    @property
    def weight_nbytes(self) -> int:
        """Bytes of weights one decoded token reads (every linear once + one embedding row)."""
        lins = [self.output] if self.output is not None else []
        for L in self.layers:
            lins += [*L.qkv, L.wo, *L.gate_up, L.down]
        row = self.embed.qt.nbytes // self.embed.qt.shape[0] if self.embed is not None else 0
        return sum(lin.nbytes for lin in lins) + row

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start_pos: int,
                  window: int = 0) -> torch.Tensor:
        """q [S, H, hd] at positions start_pos.., k/v [Hkv, T, hd] (T = start_pos + S) -> [S, H*hd].
        Grouped-query: the g = H/Hkv query heads sharing a KV head become one [g*S, hd] matrix.
        start_pos may be a device tensor (the CUDA-graph step: T is the whole cache, masked)."""
        if rowops.takes(q) and not torch.is_tensor(start_pos):
            return rowops.attention(q, k, v, start_pos, window, self.attn_scale)
        S, H, hd = q.shape
        Hkv, T, _ = k.shape
        g = H // Hkv
        qg = q.view(S, Hkv, g, hd).permute(1, 2, 0, 3).reshape(Hkv, g * S, hd)
        scores = torch.bmm(qg, k.transpose(1, 2)).mul_(self.attn_scale)  # [Hkv, g*S, T]
        W = window
        if S > 1 or (W and T > W) or torch.is_tensor(start_pos):
            qpos = (torch.arange(S, device=q.device) + start_pos).repeat(g)   # [g*S]
            kpos = torch.arange(T, device=q.device)[None, :]
            masked = kpos > qpos[:, None]                                     # [g*S, T] causal
            if W:                                                             # and the last W only
                masked |= kpos <= qpos[:, None] - W
            scores.masked_fill_(masked, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = torch.bmm(probs, v)                                             # [Hkv, g*S, hd]
        return out.view(Hkv, g, S, hd).permute(2, 0, 1, 3).reshape(S, H * hd)

    def forward(self, ids, start_pos: int = 0, all_logits: bool = False) -> torch.Tensor:
        """Logits for `ids` (1-D) placed at positions start_pos..; fills the KV cache.
        Returns [S, vocab] when all_logits else [vocab] for the last position: float32 on the CPU
        whatever the model's device (sampling and perplexity run there); on the shape-only "meta"
        device, a meta tensor."""
        with self.lock, torch_single_thread():
            out = self._forward(ids, start_pos, all_logits)
            return out if out.is_meta else out.to("cpu", torch.float32)

    def _forward(self, ids, start_pos: int, all_logits: bool) -> torch.Tensor:
        """start_pos: an int, or (the CUDA-graph token step, runtime/graph_step.py) a one-element long
        tensor on the model's device with ids one token there, checked by the caller: then no shape
        depends on the position (the RoPE rows, the KV write and the attention mask read it on the
        device, attention spans the whole cache) and no device value is read here, so the call can
        be captured once and replayed for every token."""
        cfg = self.config
        if torch.is_tensor(start_pos):
            S, T = 1, self.max_seq_len
            freqs, local_freqs = self.rope[start_pos], self.rope_local[start_pos]
        else:
            ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
            S = ids.numel()
            if S == 0:
                raise PyquantError("forward: no tokens")
            if int(ids.min()) < 0 or int(ids.max()) >= cfg.vocab_size:
                raise PyquantError(f"forward: token ids must be in [0, {cfg.vocab_size})")
            self.cache.check(start_pos, S)
            T = start_pos + S
            freqs, local_freqs = self.rope[start_pos:T], self.rope_local[start_pos:T]
        qd, kvd = cfg.q_dim, cfg.kv_dim
        x = self.embed_tokens(ids)                                        # [S, d]
        qkv = torch.empty((S, qd + 2 * kvd), device=self.device)
        gu = torch.empty((S, 2 * cfg.ffn_dim), device=self.device)
        for i, L in enumerate(self.layers):
            run_linears(L.qkv, self.norm(x, L.attn_norm), qkv)            # [S, qd + 2 kvd]
            q = qkv[:, :qd].view(S, cfg.n_heads, cfg.head_dim)
            k = qkv[:, qd:qd + kvd].view(S, cfg.n_kv_heads, cfg.head_dim)
            v = qkv[:, qd + kvd:].view(S, cfg.n_kv_heads, cfg.head_dim)
            if L.q_norm is not None:
                q.copy_(torch.rms_norm(q, (cfg.head_dim,), L.q_norm, cfg.norm_eps))
                k.copy_(torch.rms_norm(k, (cfg.head_dim,), L.k_norm, cfg.norm_eps))
            f = local_freqs if L.local else freqs
            apply_rope_(q, f, cfg.rope_dim)
            apply_rope_(k, f, cfg.rope_dim)
            self.cache.write(i, start_pos, k, v)
            K, V = self.cache.read(i, T)                                  # [Hkv, T, hd]
            a = self.attention(q, K, V, start_pos, L.window)
            if L.wo_input is not None:   # act-order wo over tensor-parallel ranks: all heads first
                q_sizes = self.plan.q_sizes
                a = self.tp.gather_rows(a, q_sizes, a.new_empty((S, sum(q_sizes))))[:, L.wo_input]
            o = self.reduce(L.wo(a))
            x = x + (o if L.attn_post_norm is None else self.norm(o, L.attn_post_norm))
            run_linears(L.gate_up, self.norm(x, L.ffn_norm), gu)          # [S, 2 ffn]
            f = self.reduce(L.down(self.mlp_activation(gu)))
            x = x + (f if L.ffn_post_norm is None else self.norm(f, L.ffn_post_norm))
        logits = self.head(x, all_logits)
        return logits if all_logits else logits[0]

    def step(self, token: int, pos: int) -> torch.Tensor:
        """Logits [vocab] for one token at position `pos` (the KV cache holds 0..pos-1).
        The returned tensor is a buffer reused by the next step."""
        with self.lock:
            if self._step.native is not None:   # no torch op inside: torch's threads need no pinning
                return self._step.step(token, pos)
            with torch_single_thread():
                return self._step.step(token, pos)

    # ------------------------------------------------------------------ generation
    def generate(self, prompt, max_new_tokens: int | None = None, stream: bool = False, **sampling):
        """Completion of `prompt` (text or token ids): text, or a generator of text pieces if stream.
        Keyword arguments and defaults as `pyquant.runtime.generate.generate` (temperature, top_k,
        top_p, seed, repeat_penalty, repeat_last_n, stop, stats, ...): greedy, at most 128 tokens."""
        from ..runtime.generate import generate

        return generate(self, prompt, max_new_tokens=max_new_tokens, stream=stream, **sampling)

    def explain(self, prompt_tokens: int = 64) -> str:
        """Which path and which kernel run each phase of prefill and of a token step, and why."""
        from ..runtime.explain import explain

        return explain(self, prompt_tokens)

    def __repr__(self):
        c = self.config
        return (f"{type(self).__name__}({c.arch}: {c.n_layers} layers, d={c.d_model}, heads={c.n_heads}/"
                f"{c.n_kv_heads}, ffn={c.ffn_dim}, vocab={c.vocab_size}, rope={self.rope_style})")

