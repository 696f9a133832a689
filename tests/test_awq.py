"""AWQ: the readers against the producers' own packers (bit-exact), the writer (byte-exact), the
runner against transformers' float forward, the quantizer, and bad input."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import pyquant
from pyquant.errors import FormatError
from pyquant.formats.awq import layouts, writer
from pyquant.formats.awq.config import AWQConfig, read_awq_config
from pyquant.formats.awq.reader import AWQLinears

DATA = Path(__file__).parent / "data" / "awq"
N, K = 32, 256


class _Tensors(dict):
    def get(self, name):
        return self[name]


@pytest.fixture(scope="module")
def autoawq():
    return load_file(str(DATA / "autoawq.safetensors"))


@pytest.fixture(scope="module")
def compressed():
    return load_file(str(DATA / "compressed.safetensors"))


# ------------------------------------------------------------------ dequantization, bit for bit
@pytest.mark.parametrize("version", ["gemm", "gemv", "gemv_fast"])
@pytest.mark.parametrize("g", [32, 64, 128])
def test_autoawq_layouts_dequantize_bit_exact(autoawq, version, g):
    """AutoAWQ 0.2.9's WQLinear_*.from_linear wrote these tensors; pyquant's fp16 dequantization of
    them equals the producer's (gemm: its own dequantize_gemm) bit for bit."""
    r = AWQLinears(_Tensors(autoawq), AWQConfig("awq", version, 4, g, True), "fixtures")
    qt = r.qtensor(f"{version}.g{g}", N, K)
    assert qt.qtype is pyquant.QType.INT4 and qt.group_size == g
    assert torch.equal(qt.dequantize(torch.float16), autoawq[f"{version}.g{g}.expected"])
    assert torch.equal(pyquant.dequantize(qt, dtype=torch.float16), autoawq[f"{version}.g{g}.expected"])


@pytest.mark.parametrize("case,gs,zp", [("pack_quantized.group64.asym", 64, True),
                                        ("pack_quantized.group128.sym", 128, False),
                                        ("pack_quantized.channel256.asym", -1, True)])
def test_compressed_tensors_dequantize_bit_exact(compressed, case, gs, zp):
    r = AWQLinears(_Tensors(compressed), AWQConfig("compressed-tensors", "pack-quantized", 4, gs, zp), "fx")
    qt = r.qtensor(case, N, K)
    assert torch.equal(qt.dequantize(torch.bfloat16), compressed[case + ".expected"])


@pytest.mark.parametrize("g", [32, 64, 128])
def test_writer_bytes_equal_autoawq(autoawq, g):
    """pack(unpack(x)) reproduces AutoAWQ's gemm and gemv_fast tensors byte for byte."""
    w = layouts.Where("fx", "p")
    c = layouts.unpack_gemm(w, N, K, g, *(autoawq[f"gemm.g{g}.{n}"] for n in ("qweight", "qzeros", "scales")))
    zeros = torch.round(-c.mins / c.scales).to(torch.uint8)
    qw, qz, sc = writer.pack_gemm(c.codes, zeros, c.scales.half())
    assert torch.equal(qw, autoawq[f"gemm.g{g}.qweight"]) and torch.equal(qz, autoawq[f"gemm.g{g}.qzeros"])
    assert torch.equal(sc, autoawq[f"gemm.g{g}.scales"])
    qw, sc, qz = writer.pack_gemv_fast(c.codes, zeros, c.scales.half(), g)
    assert torch.equal(qw, autoawq[f"gemv_fast.g{g}.qweight"])
    assert torch.equal(sc, autoawq[f"gemv_fast.g{g}.scales"])
    assert torch.equal(qz, autoawq[f"gemv_fast.g{g}.qzeros"])


def test_awq_qtensor_runs_every_kernel_path(autoawq):
    """An AWQ linear is an int4 QTensor: the dispatcher's kernels (M = 1 and a batch) match the
    float matmul of its dequantized weight."""
    r = AWQLinears(_Tensors(autoawq), AWQConfig("awq", "gemm", 4, 64, True), "fixtures")
    qt = r.qtensor("gemm.g64", N, K)
    w = qt.dequantize(torch.float64)
    for m in (1, 5):
        x = torch.randn(m, K)
        y = pyquant.qmatmul(x, qt).double()
        ref = x.double() @ w.t()
        assert float((y - ref).norm() / ref.norm()) < 2e-3   # int8x2 activations: ~1e-5 of float


# ------------------------------------------------------------------ the runner
def _hf(tmp_path, family, version="gemm", g=32, outliers=False):
    from hf_models import awq_from_float, float_model

    src = tmp_path / f"{family}-float"
    model = float_model(src, family, outliers=outliers)
    out = tmp_path / f"{family}-awq-{version}"
    oracle = awq_from_float(model, out, src, version, g)
    return src, out, model, oracle


@pytest.mark.parametrize("family,version", [("llama", "gemm"), ("qwen2", "gemm"), ("mistral", "gemv_fast")])
def test_awq_directory_runs_like_transformers(tmp_path, family, version, float_activations):
    """pyquant.load(AWQ dir): logits within 1e-4 (relative) of transformers' float forward of the same
    dequantized weights at every position (float activations), and 16 equal greedy tokens."""
    pytest.importorskip("transformers")
    _, d, _, oracle = _hf(tmp_path, family, version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = pyquant.load(d, max_seq_len=64)
    assert m._step.mode == "native"
    assert m.layers[0].qkv[0].qt.qtype is pyquant.QType.INT4 and len(m.layers[0].qkv) == 1
    ids = [1, 5, 9, 33, 70, 100, 200, 250, 7, 8, 90, 91, 92, 93, 94, 95]
    with torch.no_grad():
        ref = oracle(torch.tensor([ids])).logits[0].double()
    got = m.forward(ids, 0, all_logits=True).double()
    assert float(((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-4
    # 16 greedy tokens: pyquant's generate (C++ step) against transformers' greedy loop
    prompt = ids[:6]
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(16):
            seq.append(int(oracle(torch.tensor([seq])).logits[0, -1].argmax()))
    from pyquant.runtime.generate import generate_tokens
    from pyquant.runtime.sampling import Sampler

    m.tokenizer.eog_ids = frozenset()       # 16 tokens whatever they are
    out = list(generate_tokens(m, prompt, 16, Sampler(temperature=0.0, repeat_penalty=1.0)))
    assert out == seq[len(prompt):]


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_float_directory_runs(tmp_path, family, float_activations):
    """A float Hugging Face directory (F16 weights read as stored; qwen3's QK-norm from q_norm /
    k_norm) against transformers' forward of the same weights."""
    pytest.importorskip("transformers")
    from hf_models import float_model

    model = float_model(tmp_path / "f", family).float()
    m = pyquant.load(tmp_path / "f", max_seq_len=32)
    ids = [1, 2, 3, 50, 60]
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].double()
    got = m.forward(ids, 0, all_logits=True).double()
    assert float(((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 1e-4
    assert m.tokenizer.decode(m.tokenizer.encode("the cat sat")) == "the cat sat"


# ------------------------------------------------------------------ the quantizer
def test_awq_search_beats_round_to_nearest(tmp_path):
    """On a model with outlier activation channels, `pyquant awq`'s searches give logits closer to
    the float model's than round-to-nearest at the same group size (mean KL over 24 positions), and
    its output loads and runs (AutoAWQ gemm layout)."""
    pytest.importorskip("transformers")
    from hf_models import float_model

    from pyquant.cli import main

    src = tmp_path / "float"
    model = float_model(src, "llama", seed=3, outliers=True).float()
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat. Paris is the capital of France. " * 200)
    args = ["--group-size", "32", "--calib", str(calib), "--seq-len", "64", "--blocks", "8"]
    assert main(["awq", str(src), str(tmp_path / "awq"), *args]) == 0
    assert main(["awq", str(src), str(tmp_path / "rtn"), *args, "--no-search"]) == 0
    cfg = json.loads((tmp_path / "awq" / "config.json").read_text())["quantization_config"]
    assert cfg == {"bits": 4, "group_size": 32, "modules_to_not_convert": None, "quant_method": "awq",
                   "version": "gemm", "zero_point": True}
    ids = list(range(3, 300, 12))[:24]
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)

    def kl(d):
        m = pyquant.load(d, max_seq_len=64)
        got = torch.log_softmax(m.forward(ids, 0, all_logits=True).double(), -1)
        return float((ref.exp() * (ref - got)).sum(-1).mean())

    kl_awq, kl_rtn = kl(tmp_path / "awq"), kl(tmp_path / "rtn")
    print(f"mean KL to float: awq {kl_awq:.3e}, round-to-nearest {kl_rtn:.3e}")
    assert kl_awq < 0.8 * kl_rtn, (kl_awq, kl_rtn)


def test_quantizer_math_matches_autoawq_formula():
    """quantize_codes is AWQ's pseudo-quantizer: scale = (max - min) / 15 (fp16), zero =
    -round(min / scale), codes round(w / scale) + zero, all clamped to 0..15."""
    from pyquant.quantizers.awq import fake_quant, quantize_codes

    w = torch.tensor([[-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0] * 4])
    codes, zeros, scales = quantize_codes(w, 32)
    s = torch.tensor(4.0 / 15).half()
    assert scales.item() == s.item() and zeros.item() == 4
    assert codes[0, :8].tolist() == torch.clamp(torch.round(w[0, :8] / s.float()) + 4, 0, 15).int().tolist()
    assert torch.allclose(fake_quant(w, 32), (codes.float() - 4) * s.float())


# ------------------------------------------------------------------ what a directory is, bad input
def _write_config(d, **q):
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 1,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 320}
    if q:
        cfg["quantization_config"] = q
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("what,setup,expect", [
    ("gptq", lambda d: (_write_config(d, quant_method="gptq", bits=4, group_size=128, desc_act=True),
                        save_file({"model.layers.0.mlp.up_proj.qweight": torch.zeros(16, 256, dtype=torch.int32),
                                   "model.layers.0.mlp.up_proj.g_idx": torch.zeros(128, dtype=torch.int32)},
                                  str(d / "model.safetensors"))), "GPTQ"),
    ("exl2", lambda d: (_write_config(d),
                        save_file({"model.layers.0.mlp.up_proj.q_weight": torch.zeros(4, 4, dtype=torch.int32),
                                   "model.layers.0.mlp.up_proj.q_groups": torch.zeros(2, dtype=torch.int16)},
                                  str(d / "model.safetensors"))), "EXL2"),
    ("bnb", lambda d: _write_config(d, quant_method="bitsandbytes", load_in_4bit=True), "bitsandbytes"),
    ("float", lambda d: (_write_config(d), save_file({"lm_head.weight": torch.zeros(2, 2)},
                                                     str(d / "model.safetensors"))), "unquantized float"),
])
def test_not_awq_names_the_real_format(tmp_path, what, setup, expect):
    d = tmp_path / what
    setup(d)
    with pytest.raises(FormatError, match=expect):
        read_awq_config(d, json.loads((d / "config.json").read_text()))


def test_gguf_where_a_directory_is_expected(tmp_path, smollm2_path):
    with pytest.raises(FormatError, match="a GGUF file"):
        read_awq_config(smollm2_path, {})


def test_pickled_checkpoint_refused_never_unpickled(tmp_path):
    d = tmp_path / "bin"
    _write_config(d, quant_method="awq", bits=4, group_size=128, version="gemm", zero_point=True)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04 this would be a pickle")
    with pytest.raises(FormatError, match="safetensors only"):
        pyquant.load(d)


@pytest.fixture
def awq_dir(tmp_path):
    pytest.importorskip("transformers")
    _, d, _, _ = _hf(tmp_path, "llama")
    return d


def _forge(d, name, value):
    from hf_models import forge_tensor

    forge_tensor(d / "model.safetensors", name, value)


@pytest.mark.parametrize("name,value,message", [
    ("model.layers.0.mlp.up_proj.qweight", torch.zeros(128, 16, dtype=torch.int32), r"up_proj.qweight.*shape"),
    ("model.layers.0.mlp.up_proj.qweight", torch.zeros(128, 32, dtype=torch.int64), r"up_proj.qweight.*dtype"),
    ("model.layers.0.mlp.up_proj.scales", torch.full((4, 256), float("nan"), dtype=torch.float16),
     r"up_proj.scales.*NaN"),
    ("model.layers.0.mlp.up_proj.qzeros", None, r"up_proj.qzeros.*missing"),
    ("model.layers.1.input_layernorm.weight", torch.zeros(7, dtype=torch.float16), r"input_layernorm.*shape"),
])
def test_forged_awq_tensors_raise_format_error(awq_dir, name, value, message):
    _forge(awq_dir, name, value)
    with pytest.raises(FormatError, match=message):
        pyquant.load(awq_dir)


@pytest.mark.parametrize("field,value,message", [
    ("version", "marlin", "marlin"), ("version", "gemx", "unknown"), ("bits", 3, "bits = 3"),
    ("group_size", 48, "group_size = 48"), ("zero_point", False, "zero_point"),
])
def test_bad_quantization_config(awq_dir, field, value, message):
    cfg = json.loads((awq_dir / "config.json").read_text())
    cfg["quantization_config"][field] = value
    (awq_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match=message):
        pyquant.load(awq_dir)


def test_legacy_quant_config_json(awq_dir):
    """Older AutoAWQ / TheBloke repos: quant_config.json with w_bit / q_group_size, version upper-case."""
    cfg = json.loads((awq_dir / "config.json").read_text())
    q = cfg.pop("quantization_config")
    (awq_dir / "config.json").write_text(json.dumps(cfg))
    (awq_dir / "quant_config.json").write_text(json.dumps(
        {"zero_point": True, "q_group_size": q["group_size"], "w_bit": 4, "version": "GEMM"}))
    m = pyquant.load(awq_dir, max_seq_len=16)
    assert m.layers[0].down.qt.qtype is pyquant.QType.INT4


def test_info_describes_an_awq_directory(awq_dir, capsys):
    from pyquant.cli import main

    assert main(["info", str(awq_dir)]) == 0
    out = capsys.readouterr().out
    assert "awq gemm, 4-bit, group 32, zero point" in out
    assert "quantized 14 linears" in out and "lm_head (F16)" in out


# ------------------------------------------------------------------ a real model: SmolLM2 as AWQ
@pytest.fixture(scope="module")
def smollm2_awq(tmp_path_factory, smollm2_path):
    """SmolLM2 (its Q4_1 GGUF as the float model) written as an AutoAWQ gemm checkpoint, group 64,
    round to nearest (`pyquant awq --no-search`: ~20 s; the searches are tested on a tiny model)."""
    from pyquant.cli import main

    d = tmp_path_factory.mktemp("smollm2-awq")
    assert main(["awq", str(smollm2_path), str(d), "--group-size", "64", "--no-search"]) == 0
    return d


def test_smollm2_awq_answers_and_tokenizes_like_the_gguf(smollm2_awq, smollm2_path):
    m = pyquant.load(smollm2_awq, max_seq_len=64)
    assert m._step.mode == "native"
    assert "Paris" in m.generate("The capital of France is", max_new_tokens=8)
    g = pyquant.load(smollm2_path, max_seq_len=64)
    for text in ("The capital of France is", "Hello, world! 1234 éè <|im_start|>user\nhi"):
        assert m.tokenizer.encode(text) == g.tokenizer.encode(text)
        assert m.tokenizer.encode(text, parse_special=True) == g.tokenizer.encode(text, parse_special=True)
    assert m.tokenizer.eog_ids == g.tokenizer.eog_ids and m.tokenizer.chat_template == g.tokenizer.chat_template


def test_smollm2_awq_peak_rss_within_packed_weights_plus_300mb(smollm2_awq):
    from child_process import peak_rss_of_a_generation

    peak = peak_rss_of_a_generation(smollm2_awq)
    packed = sum(f.stat().st_size for f in smollm2_awq.glob("*.safetensors"))
    print(f"peak RSS {peak / 1e6:.0f} MB, packed weights {packed / 1e6:.0f} MB")
    # measured 407e6 bytes = packed 114e6 + 293e6 (import torch alone: 229e6)
    assert peak < packed + 300 * 2**20


def test_generation_config_sets_the_sampling_defaults(awq_dir):
    """A directory's generation_config.json is the model's default sampling (explicit arguments win);
    GGUF models keep pyquant's greedy default."""
    from pyquant.runtime.sampling import DEFAULTS, SamplingDefaults, sampler_for

    (awq_dir / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.1,
         "max_new_tokens": 7, "eos_token_id": [1]}))
    m = pyquant.load(awq_dir, max_seq_len=32)
    assert m.sampling_defaults == SamplingDefaults(0.6, 20, 0.9, 1.1, DEFAULTS.repeat_last_n, 7)
    s = sampler_for(m, top_k=3)
    assert (s.temperature, s.top_k, s.top_p) == (0.6, 3, 0.9)
    assert sampler_for(m, temperature=0.0).temperature == 0.0
    from pyquant.runtime.generate import GenerationStats

    st = GenerationStats()
    m.tokenizer.eog_ids = frozenset()
    m.generate([5, 6, 7], seed=1, stats=st)
    assert st.generated_tokens == 7                    # its max_new_tokens
    assert SamplingDefaults.from_generation_config({"temperature": 0.6}).temperature == 0.0  # no do_sample
    assert SamplingDefaults.from_generation_config({"top_p": "x", "top_k": -1}) == DEFAULTS


def _truncate(d):
    p = d / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _huge_header(d):
    p = d / "model.safetensors"
    b = p.read_bytes()
    p.write_bytes((10**12).to_bytes(8, "little") + b[8:])


@pytest.mark.parametrize("case,cfg,files,message", [
    ("string", {"hidden_size": "abc"}, None, "is not an integer"),
    ("fraction", {"num_attention_heads": 4.5}, None, "is not an integer"),
    ("vocab", {"vocab_size": 10**12}, None, r"vocab_size = 1000000000000 but 'model.embed_tokens.weight'"),
    ("truncated", None, _truncate, r"model.safetensors: not a valid safetensors file"),
    ("header", None, _huge_header, r"model.safetensors: not a valid safetensors file"),
])
def test_forged_directories_raise_format_error(tmp_path, case, cfg, files, message):
    """A forged config.json or safetensors header is a FormatError naming the file and field, never a
    ValueError, a MemoryError from a forged size, or a crash."""
    pytest.importorskip("transformers")
    from hf_models import float_model

    d = tmp_path / case
    float_model(d, "llama")
    if cfg:
        c = json.loads((d / "config.json").read_text())
        c.update(cfg)
        (d / "config.json").write_text(json.dumps(c))
    if files:
        files(d)
    with pytest.raises(FormatError, match=message):
        pyquant.load(d, max_seq_len=16)


def test_head_type_quantizes_a_float_head_at_load(awq_dir, monkeypatch, float_activations):
    """PYQUANT_HEAD_TYPE=Q8_0: the fp16 lm_head becomes Q8_0 at load (the quantized linears stay as
    they are); the logits move by what Q8_0 rounding allows: each head weight within half a step of
    its block's 1/127 of max, so a relative error of order 2^-8 in each logit's dot product."""
    ids = [1, 5, 9, 33, 70, 100, 7, 8]
    base = pyquant.load(awq_dir, max_seq_len=16)
    assert base.output.qt.qtype.name == "F16"
    ref = base.forward(ids, 0, all_logits=True).double()
    monkeypatch.setenv("PYQUANT_HEAD_TYPE", "Q8_0")
    m = pyquant.load(awq_dir, max_seq_len=16)
    assert m.output.qt.qtype.name == "Q8_0" and m.layers[0].down.qt.qtype is pyquant.QType.INT4
    got = m.forward(ids, 0, all_logits=True).double()
    assert 0 < float(((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max()) < 2 ** -6
    monkeypatch.setenv("PYQUANT_HEAD_TYPE", "Q9_9")
    with pytest.raises(pyquant.PyquantError, match="PYQUANT_HEAD_TYPE=Q9_9"):
        pyquant.load(awq_dir, max_seq_len=16)
