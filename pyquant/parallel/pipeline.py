"""Layer split (pipeline): each rank holds a contiguous run of the layers, for when the link between
devices or hosts is too slow for tensor parallelism (one transfer of the residual per rank boundary
per step instead of two all-reduces per layer).

    torchrun --nproc-per-node 2 -m pyquant run MODEL --split 0.5,0.5 ...

Rank 0 embeds the tokens; every rank runs its layers on the residual it receives and sends the
result on; the last rank applies the output norm and head and sends the logits to every rank, so
that each one samples the same token (same seed) and keeps its own KV cache in step.
"""
from __future__ import annotations

import torch

from ..errors import PyquantError
from .group import ProcessGroup


def layer_ranges(fractions: list[float], n_layers: int) -> list[range]:
    """Contiguous layer ranges in proportion to `fractions` (each rank at least one layer)."""
    if not fractions or any(not f > 0 for f in fractions):
        raise PyquantError(f"--split: fractions must be positive, got {fractions}")
    if len(fractions) > n_layers:
        raise PyquantError(f"--split: {len(fractions)} ranks but the model has {n_layers} layers")
    total = sum(fractions)
    bounds, acc = [0], 0.0
    for i, f in enumerate(fractions[:-1]):
        acc += f
        b = round(n_layers * acc / total)
        bounds.append(min(max(b, bounds[-1] + 1), n_layers - (len(fractions) - 1 - i)))
    bounds.append(n_layers)
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


class LayerSplit(ProcessGroup):
    """This rank's layers and its two neighbours."""

    def __init__(self, fractions: list[float], group=None):
        super().__init__(len(fractions), group, what="--split")
        self.fractions = list(fractions)
        self.first, self.last = self.rank == 0, self.rank == self.size - 1
        self.layers = range(0)   # set by the model once it knows its layer count

    def assign(self, n_layers: int) -> range:
        self.layers = layer_ranges(self.fractions, n_layers)[self.rank]
        return self.layers

    def receive_residual(self, shape) -> torch.Tensor:
        return self.receive_residual_into(torch.empty(shape))

    def receive_residual_into(self, x: torch.Tensor) -> torch.Tensor:
        """The previous rank's residual stream, into x (the C++ step's input buffer)."""
        self._p2p(lambda: self.dist.recv(x, self._peer(self.rank - 1), group=self.group))
        return x

    def send_residual(self, x: torch.Tensor) -> None:
        x = x.contiguous()
        self._p2p(lambda: self.dist.send(x, self._peer(self.rank + 1), group=self.group))

    def share_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The last rank's logits, on every rank (in place; sent to each other rank directly)."""
        if self.size == 1:
            return logits
        logits = logits.contiguous()
        if self.last:
            ops = [self.dist.P2POp(self.dist.isend, logits, self._peer(r), self.group) for r in range(self.size - 1)]
            self._p2p(lambda: [req.wait() for req in self.dist.batch_isend_irecv(ops)])
        else:
            self._p2p(lambda: self.dist.recv(logits, self._peer(self.size - 1), group=self.group))
        return logits

    def __repr__(self):
        return f"LayerSplit(rank {self.rank} of {self.size}, layers {self.layers.start}..{self.layers.stop - 1})"
