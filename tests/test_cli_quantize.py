"""`pyquant quantize`: llama.cpp's mixture rules, fallbacks, metadata, and bytes of real tensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pyquant
from pyquant.cli import main
from pyquant.formats.gguf import GGUFReader, GGUFValueType, GGUFWriter
from pyquant.formats.gguf.recipes import ModelInfo, _use_more_bits, plan_tensors, processing_order
from pyquant.qtypes import QType

Q = QType


def llama_tensors(n_layer: int, d: int, d_ff: int, d_kv: int, vocab: int, tied: bool):
    """name -> dims (ne0 first) of a llama-architecture model."""
    t = {"token_embd.weight": (d, vocab), "output_norm.weight": (d,)}
    if not tied:
        t["output.weight"] = (d, vocab)
    for i in range(n_layer):
        p = f"blk.{i}."
        t.update({p + "attn_norm.weight": (d,), p + "ffn_norm.weight": (d,), p + "attn_q.weight": (d, d),
                  p + "attn_k.weight": (d, d_kv), p + "attn_v.weight": (d, d_kv), p + "attn_output.weight": (d, d),
                  p + "ffn_gate.weight": (d, d_ff), p + "ffn_up.weight": (d, d_ff), p + "ffn_down.weight": (d_ff, d)})
    return t


LLAMA_8B = dict(n_layer=32, d=4096, d_ff=14336, d_kv=1024, vocab=128256, tied=False)
MODEL_8B = ModelInfo("llama", n_layer=32, n_head=32, n_head_kv=8)


def test_use_more_bits_layers():
    # llama.cpp's pattern for 32 layers: first 4, last 4, and every third in between from layer 6
    assert [i for i in range(32) if _use_more_bits(i, 32)] == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


def test_q4_k_m_on_llama_8b_shapes():
    plan = plan_tensors(llama_tensors(**LLAMA_8B), "Q4_K_M", MODEL_8B)
    more = {i for i in range(32) if _use_more_bits(i, 32)}
    assert plan["output.weight"] == Q.Q6_K
    assert plan["token_embd.weight"] == Q.Q4_K  # untied: the default type
    assert plan["output_norm.weight"] == Q.F32 and plan["blk.7.attn_norm.weight"] == Q.F32
    for i in range(32):
        hi = Q.Q6_K if i in more else Q.Q4_K
        assert plan[f"blk.{i}.attn_v.weight"] == hi, i
        assert plan[f"blk.{i}.ffn_down.weight"] == hi, i
        for n in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
            assert plan[f"blk.{i}.{n}.weight"] == Q.Q4_K
    assert list(plan) == processing_order(plan)


def test_k_s_and_q5_k_m_and_q6_k_and_legacy():
    t = llama_tensors(**LLAMA_8B)
    s = plan_tensors(t, "Q4_K_S", MODEL_8B)
    assert [s[f"blk.{i}.attn_v.weight"] for i in (0, 3, 4)] == [Q.Q5_K, Q.Q5_K, Q.Q4_K]
    assert [s[f"blk.{i}.ffn_down.weight"] for i in (0, 3, 4)] == [Q.Q5_K, Q.Q5_K, Q.Q4_K]
    m5 = plan_tensors(t, "Q5_K_M", MODEL_8B)
    assert m5["blk.0.ffn_down.weight"] == Q.Q6_K and m5["blk.4.ffn_down.weight"] == Q.Q5_K
    assert m5["output.weight"] == Q.Q6_K
    q6 = plan_tensors(t, "Q6_K", MODEL_8B)
    assert set(q6.values()) == {Q.Q6_K, Q.F32}
    q8 = plan_tensors(t, "Q8_0", MODEL_8B)
    assert set(q8.values()) == {Q.Q8_0, Q.F32}
    q4 = plan_tensors(t, "Q4_0", MODEL_8B)
    assert q4["output.weight"] == Q.Q6_K and q4["token_embd.weight"] == Q.Q4_0
    assert q4["blk.0.attn_v.weight"] == Q.Q4_0
    assert plan_tensors(t, "Q4_K_M", MODEL_8B, pure=True)["output.weight"] == Q.Q4_K


def test_fallbacks_for_rows_not_multiple_of_256():
    # SmolLM2-135M: d_model 576 = 2.25 * 256, tied embeddings, d_ff 1536 = 6 * 256
    t = llama_tensors(n_layer=30, d=576, d_ff=1536, d_kv=192, vocab=49152, tied=True)
    model = ModelInfo("llama", n_layer=30, n_head=9, n_head_kv=3)
    p = plan_tensors(t, "Q4_K_M", model)
    assert p["token_embd.weight"] == Q.Q8_0          # tied -> output rule Q6_K -> fallback Q8_0
    assert p["blk.5.attn_q.weight"] == Q.Q5_0        # Q4_K -> Q5_0 (ne0 576)
    assert p["blk.0.attn_v.weight"] == Q.Q8_0        # Q6_K -> Q8_0
    assert p["blk.4.attn_v.weight"] == Q.Q5_0
    assert p["blk.0.ffn_down.weight"] == Q.Q6_K      # ne0 1536 fits 256
    assert p["blk.4.ffn_down.weight"] == Q.Q4_K
    p5 = plan_tensors(t, "Q5_K_M", model)
    assert p5["blk.5.attn_q.weight"] == Q.Q5_1
    assert plan_tensors(t, "Q4_0", model)["token_embd.weight"] == Q.Q8_0
    odd = plan_tensors({"blk.0.attn_q.weight": (40, 40)}, "Q4_K_M", ModelInfo(n_layer=1))
    assert odd["blk.0.attn_q.weight"] == Q.F16       # no 32-block type fits either


def test_unknown_type_is_a_clear_error(capsys, tmp_path):
    assert main(["quantize", "nonexistent.gguf", str(tmp_path / "o.gguf"), "IQ2_XXS"]) == 2
    assert "IQ2_XXS" in capsys.readouterr().err


# ---------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def requantized(smollm2_path, tmp_path_factory):
    """SmolLM2 Q4_1 requantized through the CLI to Q4_K_M and Q8_0 (once per module)."""
    out = {}
    for ftype in ("Q4_K_M", "Q8_0"):
        path = tmp_path_factory.mktemp("rq") / f"smollm2-{ftype}.gguf"
        assert main(["quantize", str(smollm2_path), str(path), ftype, "--quiet", "-t", "2"]) == 0
        out[ftype] = path
    return out


@pytest.mark.parametrize("ftype,code", [("Q4_K_M", 15), ("Q8_0", 7)])
def test_real_model_metadata_and_types(smollm2_path, requantized, ftype, code):
    gguf = pytest.importorskip("gguf")
    from pyquant.cli.quantize import build_plan

    ours = gguf.GGUFReader(str(requantized[ftype]))  # the independent reader must accept it
    with GGUFReader(smollm2_path) as src:
        plan = build_plan(src, ftype)
        assert [t.name for t in ours.tensors] == list(plan)
        for t in ours.tensors:
            assert int(t.tensor_type) == int(plan[t.name]), t.name
            assert tuple(int(d) for d in t.shape) == src.tensors[t.name].dims
        with GGUFReader(requantized[ftype]) as r:
            assert r.metadata["general.file_type"] == code
            assert r.fields["general.file_type"].vtype == GGUFValueType.UINT32
            assert r.metadata["general.quantization_version"] == 2
            assert list(r.fields) == list(src.fields)  # same keys, same order
            for key, value in src.metadata.items():
                if key not in ("general.file_type", "general.quantization_version"):
                    assert np.array_equal(np.asarray(r.metadata[key], dtype=object),
                                          np.asarray(value, dtype=object)), key
    types = {t.tensor_type.name for t in ours.tensors}
    assert types == ({"Q5_0", "Q4_K", "Q6_K", "Q8_0", "F32"} if ftype == "Q4_K_M" else {"Q8_0", "F32"})


def test_real_model_bytes(smollm2_path, requantized):
    """Every tensor of the Q4_K_M file equals pyquant.quantize of the decoded source (or the source
    bytes when the type is unchanged); a sample also equals llama.cpp's own quantizer."""
    from pyquant.cli.quantize import tensor_floats

    with GGUFReader(smollm2_path) as src, GGUFReader(requantized["Q4_K_M"]) as out:
        for name, t in out.tensors.items():
            s = src.tensors[name]
            if t.qtype == s.qtype:
                assert np.array_equal(t.data, s.data), name
            elif name.startswith(("blk.0.", "blk.4.", "blk.29.")):  # every mixed type, a third of the time
                assert np.array_equal(t.data, pyquant.quantize(tensor_floats(s), t.qtype).numpy()), name


def test_real_model_bytes_match_llama_cpp(smollm2_path, requantized):
    from tests.oracle.ggml_oracle import OracleUnavailable, load

    from pyquant.cli.quantize import tensor_floats

    try:
        oracle = load()
    except OracleUnavailable as e:
        pytest.skip(f"llama.cpp oracle unavailable: {e}")
    with GGUFReader(smollm2_path) as src, GGUFReader(requantized["Q4_K_M"]) as out:
        for name in ("blk.0.ffn_down.weight", "blk.3.ffn_down.weight", "blk.1.attn_q.weight"):
            t = out.tensors[name]
            x = tensor_floats(src.tensors[name]).numpy()
            assert np.array_equal(t.data, oracle.quantize(int(t.qtype), x, t.row_bytes)), name


@pytest.mark.parametrize("src_type", [QType.F32, QType.F16, QType.BF16])
def test_float_sources(tmp_path, src_type):
    """F32/F16/BF16 GGUFs: quantized from their exact float values; 1-D tensors keep their type."""
    torch.manual_seed(0)
    dtype = {QType.F32: torch.float32, QType.F16: torch.float16, QType.BF16: torch.bfloat16}[src_type]
    w = GGUFWriter(tmp_path / "in.gguf")
    w.add_field("general.architecture", "llama")
    w.add_field("general.file_type", 0, GGUFValueType.UINT32)
    w.add_field("llama.block_count", 2, GGUFValueType.UINT32)
    w.add_field("llama.attention.head_count", 4, GGUFValueType.UINT32)
    w.add_field("llama.attention.head_count_kv", 4, GGUFValueType.UINT32)
    weights = {"token_embd.weight": torch.randn(64, 256), "output_norm.weight": torch.randn(256)}
    for i in range(2):
        weights[f"blk.{i}.attn_norm.weight"] = torch.randn(256)
        for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_gate"):
            weights[f"blk.{i}.{n}.weight"] = torch.randn(256, 256)
        weights[f"blk.{i}.ffn_down.weight"] = torch.randn(256, 512)
    for name, v in weights.items():
        v = v.to(dtype)
        w.add_tensor(name, v if src_type != QType.F32 else v.float(), src_type if v.dim() == 2 else QType.F32, v.shape)
        weights[name] = v
    w.write()
    assert main(["quantize", str(tmp_path / "in.gguf"), str(tmp_path / "out.gguf"), "Q4_K_M", "-q"]) == 0
    with GGUFReader(tmp_path / "out.gguf") as r:
        assert r.metadata["general.file_type"] == 15
        assert r.metadata["general.quantization_version"] == 2  # appended: the source had none
        types = {n: t.qtype for n, t in r.tensors.items()}
        assert types["token_embd.weight"] == Q.Q6_K      # tied, ne0 256
        # 2 layers: use_more_bits is true for layer 1 only (i >= 7*2//8)
        assert types["blk.1.attn_v.weight"] == Q.Q6_K and types["blk.1.ffn_down.weight"] == Q.Q6_K
        assert types["blk.0.attn_v.weight"] == Q.Q4_K and types["blk.0.ffn_down.weight"] == Q.Q4_K
        assert types["blk.0.attn_q.weight"] == Q.Q4_K and types["output_norm.weight"] == Q.F32
        for name, t in r.tensors.items():
            v = weights[name]
            if v.dim() == 1:
                assert np.array_equal(t.array(), v.float().numpy())
            else:
                assert np.array_equal(t.data, pyquant.quantize(v.float(), t.qtype).numpy()), name


# Type counts of SmolLM2-135M (30 layers, d 576, d_ff 1536, 9 heads / 3 KV heads, tied embedding)
# per file type, worked out by hand from llama_tensor_get_type_impl (see the comments).
SMOLLM2_MIXES = {
    # attn_v: first 2 -> Q5_K -> Q5_1, rest Q4_K -> Q5_0; ffn_down: layer 0 Q5_K, rest Q4_K;
    # attn_output Q4_K -> Q5_0; q/k/gate/up Q3_K -> Q4_0
    "Q3_K_M": {"Q4_0": 120, "Q5_0": 58, "Q4_K": 29, "Q5_1": 2, "Q5_K": 1, "Q8_0": 1},
    # attn_v/attn_output/ffn_down -> Q3_K (attn_v falls back to Q4_0), the rest Q2_K -> Q4_0
    "Q2_K": {"Q4_0": 180, "Q3_K": 30, "Q8_0": 1},
    # attn_v: first 4 Q5_K -> Q5_1; ffn_down: first n/8 = 3 layers Q5_K
    "Q4_K_S": {"Q5_0": 176, "Q4_K": 27, "Q5_1": 4, "Q5_K": 3, "Q8_0": 1},
    # n_gqa = 3 < 4: attn_v not bumped; ffn_down: first 3 layers Q5_K
    "IQ4_XS": {"IQ4_NL": 180, "IQ4_XS": 27, "Q5_K": 3, "Q8_0": 1},
    "Q6_K": {"Q8_0": 181, "Q6_K": 30},
    "Q4_0": {"Q4_0": 210, "Q8_0": 1},
}


@pytest.mark.parametrize("ftype", SMOLLM2_MIXES)
def test_smollm2_shaped_mixes(ftype):
    t = llama_tensors(n_layer=30, d=576, d_ff=1536, d_kv=192, vocab=49152, tied=True)
    plan = plan_tensors(t, ftype, ModelInfo("llama", n_layer=30, n_head=9, n_head_kv=3))
    counts: dict[str, int] = {}
    for qt in plan.values():
        if qt != Q.F32:
            counts[qt.name] = counts.get(qt.name, 0) + 1
    assert counts == SMOLLM2_MIXES[ftype]
