"""This process's place in a tensor-parallel group and the collectives a split model runs.

Processes come from torchrun (`torchrun --nproc-per-node 2 -m pyquant run MODEL --tp 2`), which
sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, or from the caller's own
`torch.distributed.init_process_group`. Backends: gloo for CPU tensors, NCCL for CUDA ones. The
runner computes on the CPU today (device="cuda" is issue #8's open work), so its group needs gloo:
"gloo", or "cpu:gloo,cuda:nccl" beside CUDA work of the caller's own.

Collectives. NCCL's all-reduce is used as it is. Gloo's measured 1.35 ms for a 576-float
all-reduce between two processes on the 2-core AMD EPYC VM, against 0.17 ms for exchanging the
same tensors with isend/irecv (bench/bench_parallel.py): a token step makes 2 per layer, so on
gloo the sum is an exchange of every rank's partial with every other (one round of W-1 messages
each way) and a sum in rank order: the same bits on every rank, whatever the arrival order.

Every collective has a timeout (PYQUANT_TP_TIMEOUT seconds, default 120): a rank that dies makes
the others raise instead of waiting forever (gloo also notices a closed peer connection at once).
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch

from ..errors import PyquantError


def _timeout() -> timedelta:
    raw = os.environ.get("PYQUANT_TP_TIMEOUT", "120")
    try:
        seconds = float(raw)
        if not seconds > 0:
            raise ValueError
    except ValueError:
        raise PyquantError(f"PYQUANT_TP_TIMEOUT must be a positive number of seconds, got {raw!r}") from None
    return timedelta(seconds=seconds)


def init_from_env(backend: str | None = None) -> None:
    """Join the process group torchrun described in the environment (once; a no-op when the caller
    already initialised one). backend: "gloo" (default) or "cpu:gloo,cuda:nccl"."""
    import torch.distributed as dist

    if not dist.is_available():
        raise PyquantError("tensor parallelism needs torch.distributed, absent from this torch build")
    if dist.is_initialized():
        return
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise PyquantError(f"tensor parallelism: no process group and {', '.join(missing)} not set; start "
                           "the processes with torchrun (torchrun --nproc-per-node N -m pyquant run MODEL "
                           "--tp N ...) or call torch.distributed.init_process_group first")
    dist.init_process_group(backend or "gloo", timeout=_timeout())
    import atexit

    # gloo's threads abort the interpreter at exit ("terminate called without an active exception")
    # when the group is still up
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


class ProcessGroup:
    """The ranks a model is split over (the default group, or `group`): what tensor parallelism
    and the layer split (pipeline.py) share."""

    def __init__(self, size: int | None = None, group=None, what: str = "--tp"):
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            init_from_env()
        self.dist, self.group = dist, group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        if size is not None and size != self.size:
            raise PyquantError(f"{what} asks for {size} processes but the process group has {self.size} "
                               f"(torchrun --nproc-per-node must match)")
        self.backend = str(dist.get_backend(group))
        if "gloo" not in self.backend:
            raise PyquantError(f"{what}: the process group's backend is {self.backend!r}, but pyquant's runner "
                               "computes on the CPU: initialise it with 'gloo' (or 'cpu:gloo,cuda:nccl')")
        self.error: BaseException | None = None   # what a collective inside the C++ step raised

    def _peer(self, r: int) -> int:
        """Rank r of this group as a global rank (what isend / irecv take)."""
        return r if self.group is None else self.dist.get_global_rank(self.group, r)

    def _p2p(self, fn):
        """fn() (communication), its failure turned into a PyquantError that says what happened."""
        try:
            return fn()
        except Exception as e:
            raise self._failed(e) from e

    def _failed(self, e: BaseException) -> PyquantError:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return PyquantError(f"{type(self).__name__} rank {self.rank}/{self.size}: a collective failed "
                            f"({type(e).__name__}: {first}); another rank has probably exited: see its output")

    def _hook(self, fn):
        """fn as a callback of the C++ step: a failure is kept for raise_pending() (the step only
        learns that the hook raised, and finishes its token before raising)."""
        def hook():
            try:
                fn()
            except Exception as e:
                self.error = e
                raise
        return hook

    def raise_pending(self) -> None:
        e, self.error = self.error, None
        if isinstance(e, PyquantError):
            raise e
        if e is not None:
            raise self._failed(e) from e

    def common_seed(self) -> int:
        """One random seed, the same on every rank (rank 0's): sampling must draw the same token
        everywhere or the ranks' KV caches diverge."""
        t = torch.tensor([torch.seed() % 2**62], dtype=torch.int64)
        if self.size > 1:
            self._p2p(lambda: self.dist.broadcast(t, 0, group=self.group))
        return int(t)

    def __repr__(self):
        return f"{type(self).__name__}(rank {self.rank} of {self.size}, {self.backend})"


class TensorParallel(ProcessGroup):
    """Tensor parallelism's collectives: the partial sums' all-reduce, the logits' gather."""

    def __init__(self, size: int | None = None, group=None):
        super().__init__(size, group, "--tp")
        self._parts: dict = {}   # (shape, dtype) -> per-rank receive buffers, reused every step

    def _exchange(self, t: torch.Tensor) -> list:
        """Every rank's `t`, in rank order (this rank's is `t` itself): one round of isend / irecv."""
        key = (tuple(t.shape), t.dtype)
        if key not in self._parts:
            self._parts[key] = [torch.empty_like(t) for _ in range(self.size)]
        parts = self._parts[key]
        ops = []
        for r in range(self.size):
            if r != self.rank:
                ops.append(self.dist.P2POp(self.dist.irecv, parts[r], self._peer(r), self.group))
                ops.append(self.dist.P2POp(self.dist.isend, t, self._peer(r), self.group))
        for req in self.dist.batch_isend_irecv(ops) if ops else ():
            req.wait()
        parts[self.rank] = t
        return parts

    def _sum(self, t: torch.Tensor) -> None:
        """CPU tensors (gloo): the exchange and a sum in rank order (module docstring); CUDA tensors
        (NCCL, in a "cpu:gloo,cuda:nccl" group): its own all-reduce."""
        if t.is_cuda:
            self.dist.all_reduce(t, group=self.group)
            return
        parts = self._exchange(t.clone())
        t.copy_(parts[0])
        for p in parts[1:]:
            t.add_(p)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` (contiguous) over the ranks, in place; the same bits on every rank."""
        if self.size > 1:
            self._p2p(lambda: self._sum(t))
        return t

    def reduce_hook(self, buf: torch.Tensor):
        """The C++ step's hook: all-reduces `buf`."""
        return self._hook(lambda: self.all_reduce(buf))

    def gather_hook(self, buf: torch.Tensor, sizes: list[int]):
        """The C++ step's attention gather: buf [sum(sizes)] holds this rank's part at its offset;
        the hook fills the others' parts, keeping a failure for raise_pending()."""
        off = sum(sizes[:self.rank])
        local, full = buf[off:off + sizes[self.rank]].view(1, -1), buf.view(1, -1)
        return self._hook(lambda: self.gather_rows(local, sizes, full))

    def gather_rows(self, local: torch.Tensor, sizes: list[int], out: torch.Tensor) -> torch.Tensor:
        """Columns of `out` [S, sum(sizes)] from every rank's `local` [S, sizes[rank]] (the vocabulary
        split of the logits): padded to the largest share, gathered, unpadded."""
        if self.size == 1:
            return out.copy_(local)
        S, width = local.shape[0], max(sizes)
        pad = local.new_zeros((S, width))
        pad[:, :local.shape[1]] = local

        def gather():
            if not pad.is_cuda:
                return self._exchange(pad)
            parts = [local.new_empty((S, width)) for _ in range(self.size)]
            self.dist.all_gather(parts, pad, group=self.group)
            return parts

        off = 0
        for part, n in zip(self._p2p(gather), sizes):
            out[:, off:off + n] = part[:, :n]
            off += n
        return out
