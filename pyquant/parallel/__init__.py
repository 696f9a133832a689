"""Tensor parallelism over torch.distributed: one model, its layers split across processes.

Megatron's split, on the quantized bytes (no format learns about it):

- Q/K/V by output rows in whole KV-head groups (a rank's query heads read only its KV heads), gate
  and up by output rows; each rank's attention and MLP run on its heads / channels alone;
- o_proj (attn_output) and down_proj (ffn_down) by input columns, cut only on the boundaries of the
  weight format's blocks (a GGUF block or super-block, an int4 group): each rank's product is a
  partial sum, and one all-reduce per row-parallel linear makes it whole;
- the embedding and the output head by vocabulary rows: a token's embedding row lives on one rank
  (an all-reduce of the others' zeros), the logits are gathered.

`shard.py` plans the split and wraps a weight source so the model (pyquant/models/decoder.py)
receives its rank's slice under the usual tensor names; `group.py` holds the process group and
the collectives. The model's forward and the C++ token step (LlmStep.set_reduce) call the
same three hooks: reduce after a row-parallel linear, embed, gather the logits.

`pipeline.py` is the other split: whole layers per rank (--split), the residual passed on.
"""
from .group import ProcessGroup, TensorParallel, init_from_env
from .pipeline import LayerSplit

__all__ = ["LayerSplit", "ProcessGroup", "TensorParallel", "init_from_env"]
