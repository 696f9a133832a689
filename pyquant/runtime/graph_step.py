"""The token step of a model on a CUDA device: its one forward captured in a CUDA graph, replayed per token.

A decoded token launches a few hundred small kernels (SmolLM2: 30 layers x ~15 ops); launched one by
one from Python, their launch cost exceeds their run time. The model's own `forward`, called with the
position as a device tensor (decoder.py: no shape depends on it, nothing is read back to the host),
is recorded once into a CUDA graph at the first token and replayed for every later one: one launch a
token. Nothing of the block is written again here; this file only holds the static inputs and the
capture. `PYQUANT_CUDA_GRAPH=0` runs every token eagerly instead (for comparisons); a capture that
fails (a kernel that synchronizes, say) warns once with the reason and falls back to eager tokens.
"""
from __future__ import annotations

import os
import warnings

import torch


def graph_wanted(model) -> tuple[bool, str]:
    """(whether the model's tokens should run as a CUDA graph, the reason)."""
    if model.device.type != "cuda":
        return False, f"the model is on {model.device}"
    if os.environ.get("PYQUANT_CUDA_GRAPH", "1") == "0":
        return False, "PYQUANT_CUDA_GRAPH=0"
    return True, "the model's forward, captured in a CUDA graph at the first token and replayed"


class GraphStep:
    """Static token / position tensors on the model's device, the graph recorded over them, and the
    logits tensor the graph writes."""

    def __init__(self, model):
        self.model = model
        dev = model.device
        self.token = torch.zeros(1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.graph = self.logits = None
        self.failed: str | None = None

    def _capture(self) -> None:
        """Warm up on a side stream (cuBLAS workspaces, Triton compilation, allocator pools: none of it
        may happen during capture), then record. The warm-up runs the real token at the real position
        (already in self.token / self.pos), so the KV entry it writes is the one the step writes anyway."""
        m = self.model
        side = torch.cuda.Stream(device=m.device)
        side.wait_stream(torch.cuda.current_stream(m.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                m._forward(self.token, self.pos, False)
        torch.cuda.current_stream(m.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = m._forward(self.token, self.pos, False)
        self.graph, self.logits = graph, logits

    def step(self, token: int, pos: int) -> torch.Tensor | None:
        """Logits [vocab] float32 on the CPU of `token` at `pos` (both checked on the host by
        TokenStep.step: the graph reads them on the device), or None where no graph could be
        captured (the caller runs the forward eagerly)."""
        if self.failed is not None:
            return None
        self.token.fill_(token)
        self.pos.fill_(pos)
        if self.graph is None:
            m = self.model
            try:
                self._capture()
            except Exception as e:   # e.g. an op that synchronizes or allocates outside the graph's pool
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"pyquant: {m.path}: the token step could not be captured in a CUDA graph "
                              f"({self.failed}); each token runs the forward eagerly", RuntimeWarning,
                              stacklevel=3)
                torch.cuda.synchronize(m.device)
                return None
        self.graph.replay()
        return self.logits.to("cpu", torch.float32)
