"""Tensor parallelism (pyquant/parallel/): the split plan, block-boundary slicing of every weight
format, and real 2-process runs under gloo (spawned here as torchrun would) against one process."""
from __future__ import annotations

import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import torch

import pyquant
from child_process import child_env, child_python
from pyquant.errors import PyquantError
from pyquant.models.config import ModelConfig
from pyquant.parallel.shard import ShardPlan
from pyquant.qtensor import QTensor
from test_model import _write_tiny_model

CHILD = str(Path(__file__).with_name("tp_child.py"))


def _cfg(n_heads, n_kv, head_dim, ffn, vocab=1000, d=64):
    return ModelConfig("llama", 2, d, n_heads, n_kv, head_dim, ffn, vocab, 256, 1e-6, 1e4, head_dim, 1.0)


# ---------------------------------------------------------------- the plan
def test_plan_smollm2_shape():
    """SmolLM2: 9 query / 3 KV heads of 64 (192 attn_output columns per KV group), ffn 1536. Over 2
    ranks the head cut goes where attn_output's columns align widest (384 = 3 x 128), the FFN cut
    on a 256-column super-block, the vocabulary in halves."""
    cfg = _cfg(9, 3, 64, 1536, vocab=49152, d=576)
    p0, p1 = (ShardPlan.make(cfg, r, 2) for r in range(2))
    assert (p0.kv_heads, p1.kv_heads) == (range(0, 2), range(2, 3))
    assert (p0.q_heads, p1.q_heads) == (range(0, 6), range(6, 9))
    assert (p0.ffn_columns, p1.ffn_columns) == (range(0, 768), range(768, 1536))
    assert (p0.vocab, p1.vocab, p0.vocab_sizes) == (range(0, 24576), range(24576, 49152), (24576, 24576))
    local = p1.local_config(cfg)
    assert (local.n_heads, local.n_kv_heads, local.ffn_dim, local.vocab_size) == (3, 1, 768, 49152)


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_plan_llama8b_shape_covers_everything_once(size):
    cfg = _cfg(32, 8, 128, 14336, vocab=128256, d=4096)
    plans = [ShardPlan.make(cfg, r, size) for r in range(size)]
    for field, total in (("kv_heads", 8), ("q_heads", 32), ("ffn_columns", 14336), ("vocab", 128256)):
        got = [i for p in plans for i in getattr(p, field)]
        assert got == list(range(total)), field
    for p in plans:
        assert len(p.kv_heads) == 8 // size and len(p.ffn_columns) % 256 == 0
        assert p.ffn_columns.start % 256 == 0


def test_plan_refuses_more_ranks_than_kv_heads():
    with pytest.raises(PyquantError, match="3 KV heads, fewer than the 4 ranks"):
        ShardPlan.make(_cfg(9, 3, 64, 1536), 0, 4)


# ---------------------------------------------------------------- slicing every format
FORMATS = [("Q4_K", {}), ("Q6_K", {}), ("Q8_0", {}), ("Q4_1", {}), ("F16", {}), ("INT4", {"group_size": 64}),
           ("INT8", {})]


@pytest.mark.parametrize("fmt,kw", FORMATS, ids=[f for f, _ in FORMATS])
def test_take_rows_and_columns_equal_slices_of_the_dequantized_weight(fmt, kw):
    w = torch.randn(48, 1024, generator=torch.Generator().manual_seed(0))
    qt = QTensor.quantize(w, fmt, **kw)
    full = qt.dequantize()
    blk = qt.column_block
    assert torch.equal(qt.take_rows(range(8, 40)).dequantize(), full[8:40])
    idx = torch.tensor([5, 3, 47, 0])
    assert torch.equal(qt.take_rows(idx).dequantize(), full[idx])
    k0, k1 = 2 * blk if blk < 512 else 0, 1024 - (blk if blk < 512 else 0)
    assert torch.equal(qt.take_columns(k0, k1).dequantize(), full[:, k0:k1])


@pytest.mark.parametrize("fmt", ["Q4_K", "Q8_0", "INT4"])
def test_take_columns_refuses_a_cut_inside_a_block(fmt):
    qt = QTensor.quantize(torch.randn(8, 512), fmt, group_size=128)
    with pytest.raises(pyquant.errors.UnsupportedQTypeError, match="block boundaries"):
        qt.take_columns(0, qt.column_block // 2 + 8)


class _Rank:
    """A TensorParallel stand-in for loading one rank's slice in this process (no collective runs
    while loading)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size


def test_split_that_would_cut_a_block_is_refused(tmp_path):
    """4 heads of 16 over 4 ranks: attn_output (Q8_0, 32-column blocks) would be cut every 16 columns."""
    from pyquant.models import ARCHITECTURES, _import_families, open_source

    path = _write_tiny_model(tmp_path / "m.gguf", "llama", biases=False)
    _import_families()
    src = open_source(path)
    # the tiny model has 2 KV heads: 4 ranks are refused by the plan itself
    with pytest.raises(PyquantError, match="2 KV heads, fewer than the 4 ranks"):
        ARCHITECTURES["llama"](src, src.tokenizer(), 32, tp=_Rank(0, 4))


def test_cut_inside_block_named(tmp_path, monkeypatch):
    """An FFN width of 96 with ffn_down in 32-column blocks splits fine over 3 ranks; force the plan
    to 16-column alignment and the load names the tensor and the block."""
    from pyquant.models import ARCHITECTURES, _import_families, open_source
    from pyquant.parallel import shard

    path = _write_tiny_model(tmp_path / "m.gguf", "llama", biases=False)
    _import_families()
    monkeypatch.setattr(shard, "_ALIGNS", (16, 1))
    src = open_source(path)
    with pytest.raises(PyquantError, match=r"would cut blk\.0\.(attn_output|ffn_down)\.weight inside a block"):
        ARCHITECTURES["llama"](src, src.tokenizer(), 32, tp=_Rank(0, 2))


# ---------------------------------------------------------------- 2 processes under gloo
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(model, tmp_path, size=2, extra=(), env=None, timeout=240):
    port = _free_port()
    procs, outs = [], []
    for r in range(size):
        out = tmp_path / f"rank{r}.pt"
        outs.append(out)
        e = child_env(RANK=str(r), WORLD_SIZE=str(size), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1", **(env or {}))
        procs.append(subprocess.Popen(child_python(CHILD, str(model), str(out), *extra), env=e,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        results.append((p.returncode, so, se))
    return results, outs


def _reference(model, float_act: bool):
    from pyquant._ext import _C
    from tp_child import IDS

    before = _C.get_matmul_act()
    _C.set_matmul_act("float" if float_act else before)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = pyquant.load(model, max_seq_len=64)
        ids = [i % m.config.vocab_size for i in IDS]
        prefill = m.forward(ids, 0, all_logits=True).clone()
        steps = torch.stack([m.step(t, len(ids) + p).clone() for p, t in enumerate(ids[:6])])
        greedy = m.generate(ids, max_new_tokens=12, temperature=0)
    finally:
        _C.set_matmul_act(before)
    return prefill, steps, greedy


def _rel(a, b):
    return float(((a.double() - b.double()).norm(dim=-1) / b.double().norm(dim=-1)).max())


def _check_against_one_process(model, tmp_path, float_act, bound, extra=()):
    env = {"PYQUANT_MATMUL_ACT": "float"} if float_act else {}
    results, outs = _run_ranks(model, tmp_path, env=env, extra=extra)
    for rc, so, se in results:
        assert rc == 0, se[-3000:]
    ranks = [torch.load(o) for o in outs]
    prefill, steps, greedy = _reference(model, float_act)
    for r in ranks:
        assert r["mode"] == "native"                     # the C++ step runs on every rank
        if bound == 0:                                   # the same bits
            assert torch.equal(r["prefill"], prefill) and torch.equal(r["steps"], steps)
        assert _rel(r["prefill"], prefill) <= bound, _rel(r["prefill"], prefill)
        assert _rel(r["steps"], steps) <= bound, _rel(r["steps"], steps)
        assert r["greedy"] == greedy
    # every rank returns the same full logits and draws the same sampled tokens
    assert torch.equal(ranks[0]["prefill"], ranks[1]["prefill"])
    assert torch.equal(ranks[0]["steps"], ranks[1]["steps"])
    assert ranks[0]["sampled"] == ranks[1]["sampled"]
    return ranks


# Float activations: the split changes only the order of float32 sums (each rank's partial dot
# products, then their sum): relative error a few ulps x sqrt(K). int8x2 (default): the same int8
# blocks are formed (cuts fall on block boundaries), but a residual that differs in its last bit
# can move a later layer's int8 rounding by one step: ~1e-3 relative at most on these models.
@pytest.mark.parametrize("float_act,bound", [(True, 1e-5), (False, 2e-3)], ids=["float", "int8x2"])
@pytest.mark.parametrize("arch,kw", [("qwen2", dict(biases=True)), ("llama", dict(biases=False, tied=True)),
                                     ("gemma3", dict(biases=False, tied=True, qk_norm=True, post_norms=True,
                                                     softcap=30.0, n_layers=6, sliding_window=8))],
                         ids=["qwen2-bias", "llama-tied", "gemma3"])
def test_two_ranks_equal_one_process_tiny(tmp_path, arch, kw, float_act, bound):
    path = _write_tiny_model(tmp_path / f"{arch}.gguf", arch, **kw)
    ranks = _check_against_one_process(path, tmp_path, float_act, bound)
    assert [r["heads"] for r in ranks] == [2, 2] and [r["ffn"] for r in ranks] == [64, 32]
    assert [r["vocab_rows"] for r in ranks] == [(0, 128), (128, 256)]
    assert "tensor parallel: rank 1 of 2 (gloo) holds 2/4 query heads, 1/2 KV heads, 32/96 FFN" in ranks[1]["explain"]


@pytest.mark.parametrize("mode", [(), ("--split", "1")], ids=["tp1", "split1"])
def test_one_rank_equals_one_process_exactly(tmp_path, mode):
    """torchrun with one process: the sharded load and the step's hooks alone change nothing."""
    path = _write_tiny_model(tmp_path / "m.gguf", "qwen2", biases=True)
    results, outs = _run_ranks(path, tmp_path, size=1, extra=mode)
    assert results[0][0] == 0, results[0][2][-3000:]
    r = torch.load(outs[0])
    prefill, steps, greedy = _reference(path, False)
    assert torch.equal(r["prefill"], prefill) and torch.equal(r["steps"], steps) and r["greedy"] == greedy


def test_two_ranks_equal_one_process_smollm2(smollm2_path, tmp_path):
    ranks = _check_against_one_process(smollm2_path, tmp_path, False, 2e-3)
    assert [r["heads"] for r in ranks] == [6, 3]


@pytest.mark.parametrize("mode", [(), ("--split", "0.5,0.5")], ids=["tp", "split"])
def test_a_dying_rank_makes_the_other_raise_not_hang(tmp_path, mode):
    path = _write_tiny_model(tmp_path / "m.gguf", "llama", biases=False)
    t0 = time.monotonic()
    results, _ = _run_ranks(path, tmp_path, extra=("--die-after-load", *mode), env={"PYQUANT_TP_TIMEOUT": "30"},
                            timeout=120)
    assert time.monotonic() - t0 < 100
    (rc0, _, err0), (rc1, _, _) = results
    assert rc1 == 3
    assert rc0 != 0 and "PyquantError" in err0 and "a collective failed" in err0, err0[-2000:]


# ---------------------------------------------------------------- layer split
def test_layer_ranges():
    from pyquant.parallel.pipeline import layer_ranges

    assert layer_ranges([0.5, 0.5], 30) == [range(0, 15), range(15, 30)]
    assert layer_ranges([1, 1, 1], 7) == [range(0, 2), range(2, 5), range(5, 7)]
    assert layer_ranges([0.99, 0.01], 4) == [range(0, 3), range(3, 4)]    # every rank gets a layer
    assert layer_ranges([0.01, 0.99], 4) == [range(0, 1), range(1, 4)]
    with pytest.raises(PyquantError, match="3 ranks but the model has 2 layers"):
        layer_ranges([1, 1, 1], 2)
    with pytest.raises(PyquantError, match="positive"):
        layer_ranges([0.5, 0], 8)


@pytest.mark.parametrize("arch,kw", [("qwen2", dict(biases=True)),
                                     ("gemma3", dict(biases=False, tied=True, qk_norm=True, post_norms=True,
                                                     softcap=30.0, n_layers=7, sliding_window=5))],
                         ids=["qwen2-bias", "gemma3"])
def test_layer_split_equals_one_process_exactly(tmp_path, arch, kw):
    """Each rank runs whole layers with the same kernels: the logits are the same bits."""
    path = _write_tiny_model(tmp_path / f"{arch}.gguf", arch, **kw)
    ranks = _check_against_one_process(path, tmp_path, False, 0, extra=("--split", "0.5,0.5"))
    n = kw.get("n_layers", 2)
    assert [r["layers"] for r in ranks] == [round(n / 2), n - round(n / 2)]
    assert f"layer split: rank 1 of 2 runs layers {round(n / 2)}..{n - 1} of {n}; receives" in ranks[1]["explain"]


def test_layer_split_smollm2(smollm2_path, tmp_path):
    ranks = _check_against_one_process(smollm2_path, tmp_path, False, 0, extra=("--split", "0.3,0.7"))
    assert [r["layers"] for r in ranks] == [9, 21]


def test_torchrun_cli_prints_once_and_matches_one_process(tmp_path):
    path = _write_tiny_model(tmp_path / "m.gguf", "qwen2", biases=True)
    args = ["run", str(path), "-p", "hello", "-n", "12", "--temp", "0", "--quiet", "-t", "1"]
    one = subprocess.run(child_python("-m", "pyquant", *args), capture_output=True, text=True, env=child_env(),
                         timeout=120)
    assert one.returncode == 0, one.stderr
    # cwd: torchrun starts `python -m pyquant` without -P, which puts the working directory first on
    # sys.path; in a clean clone the source tree's pyquant (no compiled _C) must not shadow the installed one
    two = subprocess.run(child_python("-m", "torch.distributed.run", "--nproc-per-node", "2",
                                      "--master-port", str(_free_port()), "-m", "pyquant", *args, "--tp", "2"),
                         capture_output=True, text=True, env=child_env(OMP_NUM_THREADS="1"), timeout=180,
                         cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout == one.stdout   # rank 0 alone prints, the same text
    split = subprocess.run(child_python("-m", "torch.distributed.run", "--nproc-per-node", "2",
                                        "--master-port", str(_free_port()), "-m", "pyquant", *args,
                                        "--split", "0.5,0.5"),
                           capture_output=True, text=True, env=child_env(OMP_NUM_THREADS="1"), timeout=180,
                           cwd=tmp_path)
    assert split.returncode == 0, split.stderr[-3000:]
    assert split.stdout == one.stdout


def test_tp_without_a_process_group_says_how_to_start(monkeypatch, tmp_path):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    path = _write_tiny_model(tmp_path / "m.gguf", "llama", biases=False)
    with pytest.raises(PyquantError, match="torchrun"):
        pyquant.load(path, tp=2)


# ---------------------------------------------------------------- every weight format
def _awq_dir(tmp_path):
    pytest.importorskip("transformers")
    from hf_models import awq_from_float, float_model

    model = float_model(tmp_path / "f", "qwen2")
    awq_from_float(model, tmp_path / "awq", tmp_path / "f", "gemm", 32)
    return tmp_path / "awq"


def _exl2_dir(tmp_path):
    pytest.importorskip("transformers")
    from hf_models import exl2_from_float, float_model

    model = float_model(tmp_path / "f", "llama")
    exl2_from_float(model, tmp_path / "e", tmp_path / "f")
    return tmp_path / "e"


@pytest.mark.parametrize("make", [_awq_dir, _exl2_dir], ids=["awq", "exl2"])
@pytest.mark.parametrize("mode", ["tp", "split"])
def test_hf_formats_split_over_two_ranks(tmp_path, make, mode):
    """AWQ int4 groups and EXL2's act-order mixed-bit layers. EXL2's attn_output columns read heads
    of both ranks in act-order: every rank's attention output is gathered before it (checked)."""
    d = make(tmp_path)
    if mode == "tp":
        ranks = _check_against_one_process(d, tmp_path, True, 1e-5)
        assert all(r["wo_gathered"] == (2 if make is _exl2_dir else 0) for r in ranks)
    else:
        _check_against_one_process(d, tmp_path, False, 0, extra=("--split", "0.5,0.5"))
