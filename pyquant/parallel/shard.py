"""Where the split falls (ShardPlan) and a weight source that hands each rank its slice (ShardedSource).

The model code asks the wrapped source for tensors by their usual GGUF names with its local
(per-rank) shapes and never learns it is split. Slices of output rows stay views of the file (a
rank touches only its own rows' pages); slices of input columns are copied once at load and the
file pages they came from dropped, so a rank's resident weights are ~1/N of the model.

Act-order weights (EXL2's in_perm): ffn_down is cut on its stored columns, and gate / up give this
rank exactly the channels those columns read, in that order (so the local down needs no gather).
attn_output's stored columns may read other ranks' heads: then every rank's attention output is
gathered first (one more exchange per layer) and the slice reads the channels it needs from it
(`input_index`).
"""
from __future__ import annotations

import dataclasses
import math
import re

import torch

from ..errors import PyquantError, UnsupportedQTypeError

# The largest column alignment tried first: a K-quant super-block (256) covers every format's block
# (GGUF 32 / 256, int4 groups 32-128, EXL2 groups); smaller ones only when the shape leaves no choice.
_ALIGNS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
_NAME = re.compile(r"blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.(weight|bias)$")
_VOCAB = ("token_embd.weight", "output.weight")


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    rank: int
    size: int
    kv_heads: range         # this rank's KV heads (its query heads: the groups that read them)
    q_heads: range
    ffn_columns: range      # ffn_down's stored input columns (= gate / up rows without act-order)
    vocab: range            # rows of the embedding and the output head
    vocab_sizes: tuple      # every rank's vocabulary share, in rank order (to gather the logits)
    q_sizes: tuple          # every rank's attention output width (its query heads x head_dim)

    @classmethod
    def make(cls, cfg, rank: int, size: int) -> "ShardPlan":
        if size < 1 or not 0 <= rank < size:
            raise PyquantError(f"tensor parallel: bad rank {rank} of {size}")
        g, hd = cfg.n_heads // cfg.n_kv_heads, cfg.head_dim
        kv = _kv_boundaries(cfg.n_kv_heads, g * hd, size, cfg.arch)
        ff = _column_boundaries(cfg.ffn_dim, size, cfg.arch)
        vb = [cfg.vocab_size * r // size for r in range(size + 1)]
        return cls(rank, size, range(kv[rank], kv[rank + 1]), range(kv[rank] * g, kv[rank + 1] * g),
                   range(ff[rank], ff[rank + 1]), range(vb[rank], vb[rank + 1]),
                   tuple(vb[r + 1] - vb[r] for r in range(size)),
                   tuple((kv[r + 1] - kv[r]) * g * hd for r in range(size)))

    def local_config(self, cfg):
        return dataclasses.replace(cfg, n_heads=len(self.q_heads), n_kv_heads=len(self.kv_heads),
                                   ffn_dim=len(self.ffn_columns))


def _nearest_increasing(candidates: list[int], targets: list[float]) -> list[int] | None:
    """For each target (ascending) the nearest candidate above the previous pick, or None."""
    picks, prev = [], 0
    for t in targets:
        options = [c for c in candidates if c > prev]
        if not options:
            return None
        prev = min(options, key=lambda c: (abs(c - t), c))
        picks.append(prev)
    return picks


def _kv_boundaries(n_kv: int, group_cols: int, size: int, arch: str) -> list[int]:
    """KV-head boundaries [0, .., n_kv]: whole GQA groups per rank, and attn_output's column cut
    (boundary * group_cols) on the widest alignment that allows a split."""
    if n_kv < size:
        raise PyquantError(f"tensor parallel: {arch} has {n_kv} KV heads, fewer than the {size} ranks "
                           "(each rank needs whole KV heads): use fewer ranks or a layer split")
    for a in _ALIGNS:
        step = a // math.gcd(a, group_cols)
        picks = _nearest_increasing([j for j in range(step, n_kv, step)],
                                    [n_kv * r / size for r in range(1, size)])
        if picks is not None or size == 1:
            return [0, *(picks or []), n_kv]
    raise AssertionError("alignment 1 always splits")


def _column_boundaries(total: int, size: int, arch: str) -> list[int]:
    for a in _ALIGNS:
        if total % a == 0 and total // a >= size:
            units = total // a
            return [round(units * r / size) * a for r in range(size + 1)]
    raise PyquantError(f"tensor parallel: {arch}'s feed-forward width {total} cannot be split over {size} ranks")


class ShardedSource:
    """A weight source (pyquant/formats/gguf/source.py describes the interface) that returns this
    rank's slice of every split tensor; anything else passes through unchanged."""

    def __init__(self, inner, cfg, plan: ShardPlan):
        self.inner, self.cfg, self.plan = inner, cfg, plan
        self._down: dict[int, object] = {}   # layer -> its full ffn_down (gate / up need its order)
        self._inputs: dict[str, torch.Tensor] = {}   # act-order attn_output -> the channels it reads

    def __getattr__(self, name):   # path, metadata, architecture, rope_style, tokenizer, close, ...
        return getattr(self.inner, name)

    def span(self, names):
        return None   # slices of back-to-back tensors are not back to back

    def release(self, t):
        self.inner.release(t)

    def has(self, name: str) -> bool:
        m = _NAME.match(name)
        if m and m.group(3) == "bias" and m.group(2) in ("attn_output", "ffn_down") and self.plan.rank != 0:
            return False   # the partial sums are all-reduced: the bias is added once, by rank 0
        return self.inner.has(name)

    # ---- what each split tensor's slice is ----------------------------------------------------
    def _full_shape(self, base: str) -> tuple[int, int]:
        c = self.cfg
        return {"attn_q": (c.q_dim, c.d_model), "attn_k": (c.kv_dim, c.d_model), "attn_v": (c.kv_dim, c.d_model),
                "attn_output": (c.d_model, c.q_dim), "ffn_gate": (c.ffn_dim, c.d_model),
                "ffn_up": (c.ffn_dim, c.d_model), "ffn_down": (c.d_model, c.ffn_dim)}[base]

    def _rows(self, base: str, layer: int):
        p, hd = self.plan, self.cfg.head_dim
        if base == "attn_q":
            return range(p.q_heads.start * hd, p.q_heads.stop * hd)
        if base in ("attn_k", "attn_v"):
            return range(p.kv_heads.start * hd, p.kv_heads.stop * hd)
        return self._ffn_channels(layer)   # ffn_gate, ffn_up

    def _ffn_channels(self, layer: int):
        k = self.plan.ffn_columns
        perm = self._full_down(layer).in_perm
        return k if perm is None else perm[k.start:k.stop].clone()

    def _full_down(self, layer: int):
        if layer not in self._down:
            c = self.cfg
            self._down[layer] = self.inner.qtensor(f"blk.{layer}.ffn_down.weight", (c.d_model, c.ffn_dim))
        return self._down[layer]

    def qtensor(self, name: str, shape):
        c, p = self.cfg, self.plan
        m = _NAME.match(name)
        if name in _VOCAB:
            out = self.inner.qtensor(name, (c.vocab_size, c.d_model)).take_rows(p.vocab)
        elif m is None:
            return self.inner.qtensor(name, shape)
        else:
            layer, base = int(m.group(1)), m.group(2)
            full = self._full_shape(base)
            if base == "ffn_down":
                qt = self._down.pop(layer, None) or self.inner.qtensor(name, full)
                out = self._columns(name, qt, p.ffn_columns, own_channels=None)
            elif base == "attn_output":   # input columns: this rank's query heads' outputs
                cols = self._rows("attn_q", layer)
                out = self._columns(name, self.inner.qtensor(name, full), cols, own_channels=cols)
            else:
                out = self.inner.qtensor(name, full).take_rows(self._rows(base, layer))
        if tuple(out.shape) != tuple(shape):
            raise PyquantError(f"tensor parallel: {name}: rank {p.rank}'s slice is {tuple(out.shape)}, "
                               f"the model expects {tuple(shape)}")
        return out

    def _columns(self, name: str, qt, cols: range, own_channels):
        """Stored columns `cols` of a row-parallel weight. own_channels: the input channels this rank
        holds (attn_output: its heads), which the columns must read, in any order; None: the caller
        feeds whatever the columns read (ffn_down: gate / up follow its order)."""
        try:
            out = qt.take_columns(cols.start, cols.stop)
        except UnsupportedQTypeError as e:
            raise PyquantError(f"{self.path}: tensor parallel over {self.plan.size} ranks would cut {name} "
                               f"inside a block ({e}); use another --tp or one process") from None
        if qt.in_perm is not None and own_channels is not None:
            read = qt.in_perm[cols.start:cols.stop].clone()
            if torch.equal(torch.sort(read).values, torch.arange(own_channels.start, own_channels.stop)):
                from ..qtensor import QTensor   # reads this rank's heads only: a local permutation

                out = QTensor(out.data, out.qtype, out.shape, out.scales, out.mins, out.group_size,
                              in_perm=read - own_channels.start)
            else:                               # reads other ranks' heads: gathered first
                self._inputs[name] = read
        self.release(qt.data)   # the copy is made: drop the file pages of the whole tensor
        return out

    def input_index(self, name: str):
        """For a row-parallel weight whose slice reads channels of other ranks (act-order
        attn_output): those channels, as indices into every rank's outputs concatenated; else None."""
        return self._inputs.get(name)

    def vector(self, name: str, length: int) -> torch.Tensor:
        m = _NAME.match(name)
        if m is None or m.group(3) != "bias" or m.group(2) in ("attn_output", "ffn_down"):
            return self.inner.vector(name, length)
        layer, base = int(m.group(1)), m.group(2)   # a column-parallel linear's bias: its rows
        rows = self._rows(base, layer)
        v = self.inner.vector(name, self._full_shape(base)[0])
        v = v[rows.start:rows.stop] if isinstance(rows, range) else v.index_select(0, rows)
        if v.numel() != length:
            raise PyquantError(f"tensor parallel: {name}: rank slice has {v.numel()} values, expected {length}")
        return v.contiguous()


def shard(source, cfg, tp):
    """(the rank's view of `source`, the rank's model config) for TensorParallel `tp`."""
    plan = ShardPlan.make(cfg, tp.rank, tp.size)
    return ShardedSource(source, cfg, plan), plan.local_config(cfg)
